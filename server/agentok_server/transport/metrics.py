"""Prometheus metrics of one replica, served on a loopback port (AGENTOK_METRICS_PORT) by prometheus_client.

RPCs carry go-grpc-prometheus's names and labels (grpc_server_started_total, grpc_server_handled_total,
grpc_server_handling_seconds), so dashboards made for gRPC servers work unchanged; the rest are
agentok_*. No series is labelled with an owner, a chat or a model name: those are tenants' values, unbounded
in number, and an operator's dashboard should not list tenants.

Metrics implements domain/metrics.py's Observer (what runs, model calls and key checks report) and is told
of every RPC by transport/interceptor.py. The gauges read the domain's state when scraped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ..domain.metrics import ModelCall, ModelCallOutcome, RunOutcome

# Where the metrics endpoint listens: loopback only, like the gRPC port by default (see the README's trust
# boundaries). Metrics hold no secret, but they tell how busy a replica is and which methods are called.
METRICS_HOST = "127.0.0.1"

# A model call takes from a fraction of a second to minutes (long completions, retries with backoff).
MODEL_CALL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class Method:
    """A gRPC method as its labels name it: `/agentok.v1.ChatService/GetChat` is (agentok.v1.ChatService,
    GetChat); `kind` is unary, server_stream, client_stream or bidi_stream."""

    service: str
    name: str
    kind: str

    @classmethod
    def parse(cls, full: str, kind: str) -> Method:
        service, _, name = full.lstrip("/").rpartition("/")
        return cls(service or "unknown", name or full, kind)


class Metrics:
    def __init__(self) -> None:
        # A registry of its own (not prometheus_client's global one): tests build several apps in one process.
        self.registry = CollectorRegistry()
        r = self.registry
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)
        rpc = ["grpc_service", "grpc_method", "grpc_type"]
        self.rpc_started = Counter("grpc_server_started", "RPCs started on the server.", rpc, registry=r)
        self.rpc_handled = Counter(
            "grpc_server_handled", "RPCs completed on the server, by status code.", [*rpc, "grpc_code"], registry=r
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from an RPC's start to its status (a WatchChat stream: how long it stayed open).",
            rpc,
            registry=r,
        )
        self.runs_started = Counter(
            "agentok_runs_started",
            "Runs that began executing here: new (SendMessage) or resumed (rebuilt from the journal).",
            ["how"],
            registry=r,
        )
        self.runs_ended = Counter(
            "agentok_runs_ended", "Runs whose execution here ended, by outcome.", ["outcome"], registry=r
        )
        self.runs_active = Gauge("agentok_runs_active", "Runs executing on this replica now.", registry=r)
        self.chats_waiting = Gauge(
            "agentok_chats_waiting_for_input",
            "Runs on this replica waiting for an answer (a person's, or a client's tool results).",
            registry=r,
        )
        self.watch_streams = Gauge("agentok_watch_streams_open", "Open WatchChat streams on this replica.", registry=r)
        self.model_calls = Counter(
            "agentok_model_calls",
            "Model (chat completion) calls, by outcome; a call's retries are part of it.",
            ["outcome"],
            registry=r,
        )
        self.model_seconds = Histogram(
            "agentok_model_call_seconds",
            "Time of a model call, its retries included.",
            buckets=MODEL_CALL_BUCKETS,
            registry=r,
        )
        self.model_retries = Counter(
            "agentok_model_call_retries",
            "Attempts of model calls after their first (transient failures).",
            registry=r,
        )
        self.model_tokens = Counter(
            "agentok_model_tokens",
            "Tokens the providers reported (their `usage`), by kind: prompt or completion.",
            ["kind"],
            registry=r,
        )
        # By model too: a flow's llm_config names any model it likes, so the label is bounded (BoundedLabel).
        self.model_tokens_by_model = Counter(
            "agentok_model_tokens_by_model",
            "Tokens the providers reported, by kind (prompt or completion) and model: the first "
            f"{MAX_MODEL_LABELS} model names this process saw, every later one counted as {OTHER_MODEL!r}.",
            ["kind", "model"],
            registry=r,
        )
        self._models = BoundedLabel(MAX_MODEL_LABELS)
        self.lease_takeovers = Counter(
            "agentok_lease_takeovers",
            "Runs this replica obtained the lease of and rebuilt from their journal (at start-up, or from a "
            "replica that stopped renewing).",
            registry=r,
        )
        self.key_lookups = Counter(
            "agentok_key_lookups",
            "API key checks, by whether the key cache answered (hit) or the database (miss).",
            ["cache"],
            registry=r,
        )
        # Every label value exists from the start, at 0: a rate over a series that appears later misses its
        # first increase.
        for how in ("new", "resumed"):
            self.runs_started.labels(how)
        for outcome in RunOutcome:
            self.runs_ended.labels(outcome.value)
        for call in ModelCallOutcome:
            self.model_calls.labels(call.value)
        for kind in ("prompt", "completion"):
            self.model_tokens.labels(kind)
        for cache in ("hit", "miss"):
            self.key_lookups.labels(cache)

    def watch(
        self, *, runs_active: Callable[[], int], chats_waiting: Callable[[], int], watch_streams: Callable[[], int]
    ) -> None:
        """The gauges' sources, read at each scrape (on the endpoint's thread: they must read copies)."""
        self.runs_active.set_function(runs_active)
        self.chats_waiting.set_function(chats_waiting)
        self.watch_streams.set_function(watch_streams)

    # -- RPCs (transport/interceptor.py) ------------------------------------------------------------------

    def rpc_began(self, method: Method) -> None:
        self.rpc_started.labels(method.service, method.name, method.kind).inc()

    def rpc_ended(self, method: Method, code: str, seconds: float) -> None:
        self.rpc_handled.labels(method.service, method.name, method.kind, code).inc()
        self.rpc_seconds.labels(method.service, method.name, method.kind).observe(seconds)

    # -- domain/metrics.py Observer -----------------------------------------------------------------------

    def run_started(self, *, resumed: bool) -> None:
        self.runs_started.labels("resumed" if resumed else "new").inc()

    def run_ended(self, outcome: RunOutcome) -> None:
        self.runs_ended.labels(outcome.value).inc()

    def lease_taken_over(self) -> None:
        self.lease_takeovers.inc()

    def key_looked_up(self, *, cached: bool) -> None:
        self.key_lookups.labels("hit" if cached else "miss").inc()

    def model_called(self, call: ModelCall) -> None:
        self.model_calls.labels(call.outcome.value).inc()
        self.model_seconds.observe(call.seconds)
        if call.retries:
            self.model_retries.inc(call.retries)
        model = self._models.value(call.model)
        for kind, count in (("prompt", call.prompt_tokens), ("completion", call.completion_tokens)):
            if count:
                self.model_tokens.labels(kind).inc(count)
                self.model_tokens_by_model.labels(kind, model).inc(count)


# Distinct model names that get a label of their own; a name is cut to MAX_MODEL_LABEL_CHARS.
MAX_MODEL_LABELS = 20
MAX_MODEL_LABEL_CHARS = 100
OTHER_MODEL = "other"


class BoundedLabel:
    """A label whose values come from tenants: the first `limit` distinct ones are kept, later ones become
    OTHER_MODEL, so no tenant can grow the series count (and the endpoint's size) without bound. Called on
    the event loop only."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def value(self, raw: str) -> str:
        name = raw[:MAX_MODEL_LABEL_CHARS] or "unknown"
        if name in self._seen:
            return name
        if len(self._seen) >= self._limit or name == OTHER_MODEL:
            return OTHER_MODEL
        self._seen.add(name)
        return name


class MetricsEndpoint:
    """prometheus_client's HTTP server (a daemon thread) on METRICS_HOST:port."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @classmethod
    def start(cls, metrics: Metrics, port: int) -> MetricsEndpoint:
        """Raises OSError when the port cannot be bound (app.py names the setting)."""
        server, thread = start_http_server(port, addr=METRICS_HOST, registry=metrics.registry)
        return cls(server, thread)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
