"""Wires settings, storage, domain and transport into one runnable gRPC server."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agentok.v1 import api_key_service_pb2_grpc, chat_service_pb2_grpc, flow_service_pb2_grpc, tool_service_pb2_grpc

from .domain.chats import ChatService
from .domain.events import EventHub
from .domain.flows import FlowService
from .domain.idempotency import Idempotency
from .domain.keys import KeyService
from .domain.peer_events import PeerEvents
from .domain.runs import RunManager
from .domain.tools import ToolService
from .engine.code_execution import CodeExecutor
from .engine.egress import EgressPolicy
from .engine.http_tool import HttpToolCaller
from .engine.llm import LlmClient
from .engine.python_tool import PythonToolRunner
from .engine.tool_execution import ToolExecutor
from .settings import Settings
from .storage import schema
from .storage.delta_relay import DELTA_CHANNEL, NotifyDeltaRelay
from .storage.listener import ChangeListener
from .storage.repository import Repository, make_engine
from .transport.authz_http import CHECK_SECRET_NAME, AuthzHttpServer, CheckPolicy, new_check_secret
from .transport.edge_identity import CLOCK_ALLOWANCE_SECONDS, EdgeIdentity
from .transport.interceptor import ObservingInterceptor
from .transport.metrics import METRICS_HOST, Metrics, MetricsEndpoint
from .transport.reflection import add_reflection
from .transport.request_log import IdentifyingAuthenticator, RequestLog
from .transport.rpc import add_servicer
from .transport.servicers import ApiKeyServicer, ChatServicer, FlowServicer, ToolServicer

log = logging.getLogger(__name__)


class PortInUse(Exception):
    """A port the server needs cannot be bound; the message names the setting that moves it."""


@dataclass
class App:
    settings: Settings
    repo: Repository
    keys: KeyService
    chats: ChatService
    flows: FlowService
    tools: ToolService
    runs: RunManager
    hub: EventHub
    llm: LlmClient
    tool_runner: ToolExecutor
    edge: EdgeIdentity
    # What Envoy proves itself with to the key check (see transport/authz_http.py).
    check_secret: str
    peers: PeerEvents
    metrics: Metrics
    request_log: RequestLog
    # What the gRPC health service reports: Envoy's health checks take a replica out of rotation when it
    # is NOT_SERVING (its database unreachable, or it is shutting down).
    health: health.aio.HealthServicer = field(default_factory=health.aio.HealthServicer)
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: bool = False

    async def set_serving(self, serving: bool) -> None:
        serving = serving and not self._stopping
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", status)

    async def stop_serving(self) -> None:
        """Shutdown: NOT_SERVING from now on, whatever the lease rounds find, so Envoy drains this replica."""
        self._stopping = True
        await self.set_serving(False)

    async def start_background(self) -> None:
        """The lease keeper, and (on PostgreSQL) the listener for what other replicas commit."""
        keeper = self.runs.keep_leases(on_round=self.set_serving)
        self._background.append(asyncio.create_task(keeper, name="lease-keeper"))
        if self.repo.notifies:
            name = f"agentok {self.repo.replica_id}"
            listener = ChangeListener(
                self.settings.effective_database_url,
                self.peers.changed,
                self.peers.reconnected,
                name=name,
                on_delta=self.peers.delta,
                delta_channel=DELTA_CHANNEL,
            )
            # Message deltas to the other replicas' watchers (domain/deltas.py).
            relay = NotifyDeltaRelay(self.settings.effective_database_url, self.repo.replica_id, name)
            self.hub.relay = relay
            self._background.append(asyncio.create_task(relay.run(), name="delta-relay"))
            self._background.append(asyncio.create_task(listener.run(), name="change-listener"))
            self._background.append(asyncio.create_task(self.peers.run(), name="peer-events"))
            await asyncio.wait_for(listener.connected.wait(), timeout=30)

    async def close(self) -> None:
        self.hub.close_all()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.runs.shutdown()
        await self.llm.aclose()
        await self.tool_runner.aclose()
        await self.repo.dispose()
        self.request_log.close()


async def open_repository(settings: Settings) -> Repository:
    """The configured database; raises SchemaOutOfDate (saying what to run) unless its schema is current."""
    repo = Repository(make_engine(settings.usable_database_url()), replica_id=settings.effective_replica_id)
    try:
        await schema.check(repo.engine)
    except BaseException:
        await repo.dispose()
        raise
    return repo


async def build_app(settings: Settings) -> App:
    repo = await open_repository(settings)
    edge_secret = await repo.server_secret("edge-identity", lambda: secrets.token_hex(32))
    check_secret = await repo.server_secret(CHECK_SECRET_NAME, new_check_secret)
    hub = EventHub()
    metrics = Metrics()
    egress = EgressPolicy(settings.egress_allowed_hosts, server_urls=[settings.llm_base_url])
    llm = LlmClient(
        timeout=settings.llm_timeout_seconds,
        attempts=settings.llm_attempts,
        deadline=settings.llm_call_deadline_seconds,
        egress=egress,
        observer=metrics,
    )
    executor = CodeExecutor(
        timeout_seconds=settings.code_execution_timeout_seconds, output_limit=settings.code_execution_output_limit
    )
    tool_runner = ToolExecutor(
        HttpToolCaller(egress, timeout=settings.tool_timeout_seconds, response_limit=settings.tool_response_limit),
        PythonToolRunner(
            timeout_seconds=settings.code_execution_timeout_seconds,
            output_limit=settings.code_execution_output_limit,
        ),
        python_enabled=settings.code_execution_enabled,
        concurrency=settings.tool_concurrency,
    )
    runs = RunManager(repo, hub, llm, settings, executor=executor, tools=tool_runner, observer=metrics)
    metrics.watch(
        runs_active=lambda: len(runs.runs()), chats_waiting=runs.waiting_count, watch_streams=hub.watcher_count
    )
    return App(
        settings=settings,
        repo=repo,
        keys=KeyService(repo, cache_seconds=settings.key_cache_seconds, observer=metrics),
        chats=ChatService.from_settings(repo, hub, runs, settings),
        flows=FlowService(repo, egress=egress, code_execution=settings.code_execution_enabled),
        tools=ToolService(repo, egress=egress),
        runs=runs,
        hub=hub,
        llm=llm,
        tool_runner=tool_runner,
        # Valid for the whole of the route's time: it is made when the headers arrive and read once the body
        # has (a slow upload), plus an allowance for clocks that differ between hosts.
        edge=EdgeIdentity(
            bytes.fromhex(edge_secret), ttl_seconds=settings.route_timeout_seconds + CLOCK_ALLOWANCE_SECONDS
        ),
        check_secret=check_secret,
        peers=PeerEvents(repo, hub, runs),
        metrics=metrics,
        request_log=RequestLog("text" if settings.log_format == "text" else "json"),
    )


# Envoy refuses request headers over 16 KiB and adds a few of its own (the signed identity, the REST path):
# whatever it forwards must fit, or gRPC refuses it with a RESOURCE_EXHAUSTED that names internal headers.
MAX_METADATA_BYTES = 64 * 1024
# Calls that arrived but that the application has not picked up yet: beyond grpc's default soft limit of
# 1,000, grpc cancels them at random (a burst of 1,600 watchers lost a few percent as CANCELLED). The
# event loop picks each up within moments, so a deep queue costs only memory; Envoy's stream limits bound it.
MAX_PENDING_CALLS = 50_000


def server_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_CALLS),
        # grpc turns SO_REUSEPORT on by default: a second server on the same port would bind as well and
        # silently share the calls. Off, the second one fails to bind and says which setting moves it.
        ("grpc.so_reuseport", 0),
    ]


async def create_server(app: App, address: str) -> tuple[grpc.aio.Server, int]:
    """Builds the server and binds it; port 0 picks a free port (tests)."""
    # Every call is timed, counted by method and code, and logged once it ends.
    server = grpc.aio.server(
        options=server_options(), interceptors=[ObservingInterceptor(app.metrics, app.request_log)]
    )
    # Notes each call's owner for its log line.
    auth = IdentifyingAuthenticator(app.keys, app.edge) if app.settings.auth_enabled else None
    idempotency = Idempotency(app.repo)
    add_servicer(
        chat_service_pb2_grpc.add_ChatServiceServicer_to_server, ChatServicer(app.chats, idempotency, auth), server
    )
    add_servicer(
        flow_service_pb2_grpc.add_FlowServiceServicer_to_server, FlowServicer(app.flows, idempotency, auth), server
    )
    add_servicer(
        tool_service_pb2_grpc.add_ToolServiceServicer_to_server, ToolServicer(app.tools, idempotency, auth), server
    )
    add_servicer(api_key_service_pb2_grpc.add_ApiKeyServiceServicer_to_server, ApiKeyServicer(app.keys, auth), server)
    add_reflection(server, auth)
    await app.set_serving(True)
    health_pb2_grpc.add_HealthServicer_to_server(app.health, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind to address"
        port = 0
    if port == 0:
        raise PortInUse(f"the gRPC port {address} is not free (or not this host's): set AGENTOK_GRPC_PORT")
    return server, port


async def serve(settings: Settings, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Runs until SIGTERM/SIGINT (or `stop` is set), then stops accepting, ends watch streams and stops runs
    cleanly."""
    app = await build_app(settings)
    # Both ports are bound before anything runs: a port in use is one clear error, with nothing to unwind.
    authz = AuthzHttpServer(
        app.keys,
        app.edge,
        CheckPolicy(
            check_secret=app.check_secret,
            max_token_lifetime=settings.jwt_max_lifetime_seconds,
            tokens_enabled=settings.tokens_enabled,
        ),
    )
    try:
        authz_port = await authz.start(settings.grpc_host, settings.authz_port)
        server, port = await create_server(app, f"{settings.grpc_host}:{settings.grpc_port}")
    except OSError as err:
        await authz.stop()
        await app.close()
        address = f"{settings.grpc_host}:{settings.authz_port}"
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise PortInUse(f"the key-check port {address} is not free ({reason}): set AGENTOK_AUTHZ_PORT") from None
    except PortInUse:
        await authz.stop()
        await app.close()
        raise
    try:
        metrics = MetricsEndpoint.start(app.metrics, settings.metrics_port) if settings.metrics_port else None
    except OSError as err:
        await server.stop(None)
        await authz.stop()
        await app.close()
        address = f"{METRICS_HOST}:{settings.metrics_port}"
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise PortInUse(f"the metrics port {address} is not free ({reason}): set AGENTOK_METRICS_PORT") from None
    await app.start_background()
    await app.runs.resume_all()
    await server.start()
    log.info("ext_authz check endpoint on %s:%d", settings.grpc_host, authz_port)
    log.info("gRPC server listening on %s:%d", settings.grpc_host, port)
    if metrics is not None:
        log.info("metrics on http://%s:%d/metrics", METRICS_HOST, metrics.port)
    print(f"agentok gRPC server listening on {settings.grpc_host}:{port}", flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down")
    await app.stop_serving()
    app.hub.close_all()
    await authz.stop()
    await server.stop(settings.shutdown_grace_seconds)
    if metrics is not None:
        metrics.stop()
    await app.close()
