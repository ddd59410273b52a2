"""What the service reports about itself, piece by piece: the domain's reports (runs, key checks, model calls)
through its Observer port, the gRPC interceptor's codes and log lines on a real aio server, the request
log's two formats, and reflection's descriptor pool. The whole stack's numbers: tests/e2e/test_metrics.py."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from pydantic import ValidationError

from agentok_server.domain.keys import KeyService, hash_secret
from agentok_server.domain.metrics import ModelCall, ModelCallOutcome, RunOutcome
from agentok_server.domain.model import ApiKey, ChatStatus, KeyScope, Usage
from agentok_server.engine.egress import EgressPolicy
from agentok_server.engine.llm import Endpoint, LlmClient, LlmError, _usage
from agentok_server.settings import Settings
from agentok_server.transport.edge_identity import EdgeIdentity
from agentok_server.transport.interceptor import ObservingInterceptor
from agentok_server.transport.metrics import Metrics
from agentok_server.transport.reflection import PUBLIC_SERVICES, public_pool
from agentok_server.transport.request_log import IdentifyingAuthenticator, RequestLog, RequestRecord, begin

from ..support.api import two_agent_flow, unique_model
from ..support.fake_llm import FakeLlmServer, tokens
from ..support.memory_services import ASKING, OWNER, MakeServices, new_chat, run_until_waiting, until_status

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "agentok_server"


@dataclass
class Recorder:
    """The domain's Observer port, recording what it hears."""

    heard: list[tuple[str, Any]] = field(default_factory=list)
    calls: list[ModelCall] = field(default_factory=list)

    def run_started(self, *, resumed: bool) -> None:
        self.heard.append(("started", "resumed" if resumed else "new"))

    def run_ended(self, outcome: RunOutcome) -> None:
        self.heard.append(("ended", outcome))

    def lease_taken_over(self) -> None:
        self.heard.append(("takeover", None))

    def key_looked_up(self, *, cached: bool) -> None:
        self.heard.append(("key", "hit" if cached else "miss"))

    def model_called(self, call: ModelCall) -> None:
        self.calls.append(call)


def test_neither_the_domain_nor_the_engine_imports_a_metrics_library() -> None:
    for layer in ("domain", "engine"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert "prometheus" not in path.read_text(), path


# -- runs ---------------------------------------------------------------------------------------------------


async def _finish(s: Any, chat_id: str, act: Callable[[], Awaitable[Any]]) -> None:
    """Does `act`, then waits for the chat's run task here to end (its report is made in its finally)."""
    run = s.runs.get(chat_id)
    task = s.runs.task(run) if run is not None else None
    await act()
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


async def test_runs_report_how_they_start_and_end(services: MakeServices) -> None:
    recorder = Recorder()
    s = services(observer=recorder)

    completed = await new_chat(s, ASKING)
    await run_until_waiting(s, completed)
    await _finish(s, completed, lambda: s.chats.send_input(OWNER, completed, "exit"))

    limited = await new_chat(s, two_agent_flow(a={"human_input_mode": "NEVER"}), max_agent_turns=1)
    s.model.reply("r1")
    with s.hub.subscribe(limited) as sub:
        await s.chats.send_message(OWNER, limited, "task")
        await until_status(sub, ChatStatus.COMPLETED)

    cancelled = await new_chat(s, ASKING)
    await run_until_waiting(s, cancelled)
    await _finish(s, cancelled, lambda: s.chats.cancel(OWNER, cancelled))

    assert recorder.heard == [
        ("started", "new"),
        ("ended", RunOutcome.COMPLETED),
        ("started", "new"),
        ("ended", RunOutcome.LIMIT),
        ("started", "new"),
        ("ended", RunOutcome.STOPPED),
    ]


async def test_a_run_with_no_model_endpoint_ends_in_error(services: MakeServices) -> None:
    recorder = Recorder()
    s = services(observer=recorder, llm_base_url=None)
    chat_id = await new_chat(s, two_agent_flow())
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "task")
        await until_status(sub, ChatStatus.ERROR)
    assert recorder.heard == [("started", "new"), ("ended", RunOutcome.ERROR)]


async def test_an_unanswered_question_that_ends_the_run_is_a_limit(services: MakeServices) -> None:
    from agentok_server.domain.model import TimeoutAction

    recorder = Recorder()
    s = services(observer=recorder)
    chat_id = await new_chat(
        s,
        two_agent_flow(a={"human_input_mode": "ALWAYS"}),
        input_timeout_seconds=0.001,
        input_timeout_action=TimeoutAction.END,
    )
    s.model.reply("r1")
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "task")
        await until_status(sub, ChatStatus.COMPLETED)
    assert recorder.heard[-1] == ("ended", RunOutcome.LIMIT)


async def test_a_takeover_reports_the_lease_and_a_resumed_run(services: MakeServices) -> None:
    first = services()
    chat_id = await new_chat(first, ASKING)
    await run_until_waiting(first, chat_id)
    await first.runs.stop(chat_id)
    first.store.expire_lease(chat_id)
    recorder = Recorder()
    peer = services(first.store.replica("replica-b"), observer=recorder)
    await peer.runs.resume_all()
    assert recorder.heard == [("takeover", None), ("started", "resumed")]


# -- key checks ---------------------------------------------------------------------------------------------


@dataclass
class _OneKey:
    """A KeyStore with one key, counting its lookups."""

    secret_hash: str
    lookups: int = 0

    async def key_for_hash(self, secret_hash: str) -> ApiKey | None:
        self.lookups += 1
        if secret_hash != self.secret_hash:
            return None
        now = datetime.now(UTC)
        return ApiKey("k1", "n", "alice", "atk_", KeyScope.CHAT, now, None, None, None)

    async def touch_key(self, key_id: str, when: datetime) -> None:
        pass

    def __getattr__(self, name: str) -> Any:  # the rest of KeyStore is not used here
        raise AttributeError(name)


async def test_key_checks_report_cache_hits_and_misses() -> None:
    secret = "atk_" + secrets.token_urlsafe(32)
    store = _OneKey(hash_secret(secret))
    recorder = Recorder()
    keys = KeyService(store, cache_seconds=1.0, observer=recorder)  # type: ignore[arg-type]
    for _ in range(3):
        assert (await keys.authenticate(secret)).owner == "alice"
    assert store.lookups == 1
    assert recorder.heard == [("key", "miss"), ("key", "hit"), ("key", "hit")]


# -- model calls --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLlmServer]:
    s = FakeLlmServer().start()
    yield s
    s.stop()


@pytest.fixture()
async def reported(llm_server: FakeLlmServer) -> AsyncIterator[tuple[LlmClient, Recorder]]:
    recorder = Recorder()
    client = LlmClient(
        timeout=10, attempts=3, egress=EgressPolicy(server_urls=[llm_server.base_url]), observer=recorder
    )
    yield client, recorder
    await client.aclose()


def _endpoint(base_url: str, model: str) -> Endpoint:
    return Endpoint(base_url=base_url, model=model, api_key=None, temperature=None, max_tokens=None)


async def test_a_model_call_reports_its_tokens_and_retries(
    llm_server: FakeLlmServer, reported: tuple[LlmClient, Recorder]
) -> None:
    client, recorder = reported
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert (
        await client.complete(_endpoint(llm_server.base_url, unique_model()), messages)
    ).content == "hello there ack"
    assert await client.complete(_endpoint(llm_server.base_url, unique_model("failonce-503")), messages)
    first, retried = recorder.calls
    assert (first.outcome, first.retries, first.prompt_tokens, first.completion_tokens) == (
        ModelCallOutcome.OK,
        0,
        4,
        tokens("hello there ack"),
    )
    assert (retried.outcome, retried.retries) == (ModelCallOutcome.OK, 1)


@pytest.mark.parametrize(
    ("model", "outcome", "retries"),
    [
        ("fail-500", ModelCallOutcome.FAILED, 2),  # every one of the 3 attempts
        ("fail-401", ModelCallOutcome.REFUSED, 0),
        ("malformed", ModelCallOutcome.MALFORMED, 0),
    ],
)
async def test_a_failed_model_call_reports_why(
    llm_server: FakeLlmServer, reported: tuple[LlmClient, Recorder], model: str, outcome: ModelCallOutcome, retries: int
) -> None:
    client, recorder = reported
    with pytest.raises(LlmError):
        await client.complete(_endpoint(llm_server.base_url, unique_model(model)), [{"role": "user", "content": "x"}])
    (call,) = recorder.calls
    assert (call.outcome, call.retries, call.prompt_tokens, call.completion_tokens) == (outcome, retries, None, None)


async def test_a_refused_endpoint_reports_not_allowed(reported: tuple[LlmClient, Recorder]) -> None:
    client, recorder = reported
    with pytest.raises(LlmError):  # refused by the policy before anything is sent
        await client.complete(_endpoint("http://10.0.0.1/v1", "m"), [{"role": "user", "content": "x"}])
    assert [c.outcome for c in recorder.calls] == [ModelCallOutcome.NOT_ALLOWED]


def test_usage_is_read_only_where_it_is_a_count() -> None:
    assert _usage({"usage": {"prompt_tokens": 7, "completion_tokens": 3}}) == Usage(7, 3, None)
    assert _usage({"usage": {"prompt_tokens": True, "completion_tokens": -1, "total_tokens": 4}}) == Usage(
        None, None, 4
    )
    assert not _usage({"usage": "lots"}).reported
    assert not _usage({}).reported


# -- the interceptor, on a real server ----------------------------------------------------------------------

SECRET = "atk_" + "k" * 43


def _echo_service(auth: IdentifyingAuthenticator) -> grpc.GenericRpcHandler:
    async def ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await auth.identify(context)
        return request

    async def refused(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        raise AssertionError("unreachable")

    async def broken(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise ValueError("a bug")

    async def endless(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"tick"
        await asyncio.Event().wait()  # then nothing, until the client goes away

    return grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Ok": grpc.unary_unary_rpc_method_handler(ok),
            "Refused": grpc.unary_unary_rpc_method_handler(refused),
            "Broken": grpc.unary_unary_rpc_method_handler(broken),
            "Endless": grpc.unary_stream_rpc_method_handler(endless),
        },
    )


class _Notifying(io.StringIO):
    """A log stream that says when a line arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        self.changed.set()
        return super().write(text)

    async def wait_for(self, text: str) -> None:
        async with asyncio.timeout(5):
            while text not in self.getvalue():
                self.changed.clear()
                await self.changed.wait()


async def test_the_interceptor_counts_and_logs_every_code() -> None:
    metrics, stream = Metrics(), _Notifying()
    log = RequestLog("json", stream)
    keys = KeyService(_OneKey(hash_secret(SECRET)), cache_seconds=1.0)  # type: ignore[arg-type]
    auth = IdentifyingAuthenticator(keys, EdgeIdentity(b"s" * 32))
    server = grpc.aio.server(interceptors=[ObservingInterceptor(metrics, log)])
    server.add_generic_rpc_handlers((_echo_service(auth),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            md = (("x-api-key", SECRET), ("x-request-id", "0f7c2a9e-1d2b-4c3d-8e9f-0a1b2c3d4e5f"))
            assert await channel.unary_unary("/test.Echo/Ok")(b"hi", metadata=md) == b"hi"
            for method, code in (("Refused", grpc.StatusCode.NOT_FOUND), ("Broken", grpc.StatusCode.UNKNOWN)):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await channel.unary_unary(f"/test.Echo/{method}")(b"", metadata=md)
                assert failed.value.code() == code
            call = channel.unary_stream("/test.Echo/Endless")(b"")
            assert await call.read() == b"tick"
            call.cancel()
            await stream.wait_for("/test.Echo/Endless")  # the server learns of the cancel on its own
    finally:
        await server.stop(None)
        log.close()

    def handled(method: str, code: str, kind: str = "unary") -> float | None:
        labels = {"grpc_service": "test.Echo", "grpc_method": method, "grpc_type": kind, "grpc_code": code}
        return metrics.registry.get_sample_value("grpc_server_handled_total", labels)

    assert [handled("Ok", "OK"), handled("Refused", "NOT_FOUND"), handled("Broken", "UNKNOWN")] == [1, 1, 1]
    assert handled("Endless", "CANCELLED", "server_stream") == 1
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["method"], e["code"], e["owner"]) for e in lines] == [
        ("/test.Echo/Ok", "OK", "alice"),
        ("/test.Echo/Refused", "NOT_FOUND", None),
        ("/test.Echo/Broken", "UNKNOWN", None),
        ("/test.Echo/Endless", "CANCELLED", None),
    ]
    assert lines[0]["request_id"] == "0f7c2a9e-1d2b-4c3d-8e9f-0a1b2c3d4e5f" and lines[3]["request_id"] is None
    assert SECRET not in stream.getvalue()


# -- the request log's lines --------------------------------------------------------------------------------


def test_the_two_formats_of_a_line() -> None:
    record = RequestRecord(method="/agentok.v1.ChatService/GetChat", request_id="abc-1", owner="alice")
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert json.loads(RequestLog("json", io.StringIO()).line(record, "NOT_FOUND", 0.0123456, when)) == {
        "time": "2026-01-02T03:04:05.678Z",
        "request_id": "abc-1",
        "method": "/agentok.v1.ChatService/GetChat",
        "code": "NOT_FOUND",
        "latency_ms": 12.346,
        "owner": "alice",
    }
    assert RequestLog("text", io.StringIO()).line(record, "OK", 0.001, when) == (
        "2026-01-02T03:04:05.678Z request /agentok.v1.ChatService/GetChat OK 1.0ms owner=alice request_id=abc-1"
    )


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        ("0f7c2a9e-1d2b-4c3d-8e9f-0a1b2c3d4e5f", "0f7c2a9e-1d2b-4c3d-8e9f-0a1b2c3d4e5f"),
        (SECRET, None),  # a key sent as the request id (straight to the server's port) is never written
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", None),
        ("x" * 65, None),
    ],
)
def test_only_a_request_id_of_envoys_shape_is_written(sent: str, logged: str | None) -> None:
    assert begin("/m", (("x-request-id", sent),)).request_id == logged


def test_the_settings_of_metrics_and_logs() -> None:
    # (The tests' environment turns metrics off: tests/conftest.py.)
    assert (Settings.model_fields["metrics_port"].default, Settings.model_fields["log_format"].default) == (
        9464,
        "json",
    )
    assert Settings(metrics_port=0, log_format="text").log_format == "text"
    for bad in ({"log_format": "xml"}, {"metrics_port": -1}, {"metrics_port": 70000}):
        with pytest.raises(ValidationError):
            Settings(**bad)


# -- reflection ---------------------------------------------------------------------------------------------


def test_reflection_knows_the_public_services_and_nothing_internal() -> None:
    assert sorted(PUBLIC_SERVICES) == [
        "agentok.v1.ApiKeyService",
        "agentok.v1.ChatService",
        "agentok.v1.FlowService",
        "agentok.v1.ToolService",
    ]
    pool = public_pool()
    for name in PUBLIC_SERVICES:
        assert pool.FindServiceByName(name).methods
    for internal in ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"):
        with pytest.raises(KeyError):
            pool.FindServiceByName(internal)
