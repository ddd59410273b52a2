"""The edge's trust boundaries, probed as an attacker would, on real processes: who may obtain an identity
from the key-check port, which headers a client can forge, what a credential may send and how fast, and
what a client's oversized or slow request gets."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import pytest

from agentok.v1 import chat_service_pb2, chat_service_pb2_grpc
from agentok_server.domain.model import AuthMethod, Identity, KeyScope
from agentok_server.edge.envoy_config import AUTHZ_CONNECTIONS, JwtConfig, RateLimit
from agentok_server.edge.envoy_process import EnvoyProcess
from agentok_server.transport.authz_http import CHECK_SECRET_HEADER
from agentok_server.transport.edge_identity import HEADER, EdgeIdentity

from ..conftest import Keys
from ..support.api import error_reason, two_agent_flow
from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, agentok_cli, create_key, edge_target, free_port
from ..support.tokens import AUDIENCE, ISSUER, TokenFactory

INTERNAL_NAMES = ("x-agentok", "x-envoy", "x-jwt")


def _payload(claims: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


FORGED_BOB = _payload({"sub": "bob", "exp": int(time.time()) + 60})


def _check(stack: Stack, headers: dict[str, str]) -> httpx.Response:
    """A request straight to the key-check port, as a local process (or a host on the network) could send."""
    return httpx.get(f"{stack.server.authz_url}/check/x", headers=headers, timeout=10)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-jwt-payload": FORGED_BOB},  # the issue's request
        {"x-jwt-payload": FORGED_BOB, "x-agentok-token-max-lifetime": "999999999"},
        {"x-jwt-payload": FORGED_BOB, CHECK_SECRET_HEADER: "guessed"},
        {CHECK_SECRET_HEADER: ""},
    ],
    ids=["payload", "payload+lifetime", "payload+wrong-secret", "empty-secret"],
)
def test_the_check_port_mints_no_identity_for_anyone_but_the_edge(stack: Stack, headers: dict[str, str]) -> None:
    r = _check(stack, headers)
    assert r.status_code == 403, r.text
    assert HEADER not in r.headers
    assert error_reason(r.json()) == "CHECK_NOT_FROM_EDGE"


def test_even_a_valid_key_gets_no_identity_from_the_check_port_without_the_secret(stack: Stack, keys: Keys) -> None:
    r = _check(stack, {"x-api-key": keys.alice})
    assert r.status_code == 403 and HEADER not in r.headers
    # With the deployment's secret (what Envoy adds) the same check works: the secret is the only difference.
    ok = _check(stack, {"x-api-key": keys.alice, CHECK_SECRET_HEADER: stack.check_secret})
    assert ok.status_code == 200 and HEADER in ok.headers
    # The operator's way to learn it, for an Envoy of their own.
    assert agentok_cli(stack.env, "edge", "check-secret").strip() == stack.check_secret


def test_the_lifetime_rule_comes_from_the_server_not_the_request(stack: Stack, tokens: TokenFactory) -> None:
    """Even from the edge, a check request cannot raise the token lifetime maximum (24 h in this stack)."""
    week = _payload({"sub": "bob", "exp": int(time.time()) + 7 * 24 * 3600})
    r = _check(
        stack,
        {"x-jwt-payload": week, "x-agentok-token-max-lifetime": "999999999", CHECK_SECRET_HEADER: stack.check_secret},
    )
    assert r.status_code == 401 and HEADER not in r.headers
    assert error_reason(r.json()) == "TOKEN_LIFETIME_TOO_LONG"


@pytest.mark.parametrize(
    "forged",
    [
        {"x-jwt-payload": FORGED_BOB},
        {"x-jwt-payload": FORGED_BOB, "x-agentok-token-max-lifetime": "999999999"},
        {HEADER: "forged.signature"},
    ],
    ids=["payload", "payload+lifetime", "identity"],
)
def test_internal_headers_forged_through_envoy_give_no_identity(stack: Stack, forged: dict[str, str]) -> None:
    r = httpx.get(f"{stack.rest_url}/chats", headers=forged, timeout=10)
    assert r.status_code == 401, r.text
    # Even with the deployment's real check secret, a client's copy of the header never reaches the check.
    r = httpx.get(f"{stack.rest_url}/chats", headers={**forged, CHECK_SECRET_HEADER: stack.check_secret}, timeout=10)
    assert r.status_code == 401, r.text


def test_a_forged_payload_beside_a_key_is_dropped_the_key_decides(stack: Stack) -> None:
    _, mia = create_key(stack.env, "mia-key", "mia")
    with httpx.Client(base_url=stack.rest_url, timeout=10) as http:
        created = http.post(
            "/flows", headers={"X-API-KEY": mia}, json={"name": "mine", "flow": two_agent_flow()}
        ).json()["flow"]
        listed = http.get("/flows", headers={"X-API-KEY": mia, "x-jwt-payload": FORGED_BOB}).json()["flows"]
    assert [f["id"] for f in listed] == [created["id"]]  # mia's flows, not bob's, and no ambiguity refusal


def test_internal_headers_sent_straight_to_the_server_port_give_no_identity(stack: Stack, keys: Keys) -> None:
    stranger = EdgeIdentity(b"not-the-deployment-secret").encode(
        Identity(owner="bob", method=AuthMethod.BEARER, scope=KeyScope.ADMIN)
    )
    with grpc.insecure_channel(stack.server.target) as channel:
        chats = chat_service_pb2_grpc.ChatServiceStub(channel)
        for metadata in (
            (("x-jwt-payload", FORGED_BOB),),
            (("x-jwt-payload", FORGED_BOB), (CHECK_SECRET_HEADER, stack.check_secret)),
            ((HEADER, stranger),),
        ):
            with pytest.raises(grpc.RpcError) as err:
                chats.ListChats(chat_service_pb2.ListChatsRequest(), metadata=metadata, timeout=10)
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED, metadata


@pytest.mark.parametrize("scheme", ["BEARER", "bEaReR", "Bearer", "bearer"])
def test_the_bearer_scheme_is_case_insensitive(stack: Stack, tokens: TokenFactory, scheme: str) -> None:
    r = httpx.get(f"{stack.rest_url}/chats", headers={"Authorization": f"{scheme} {tokens.token('nina')}"}, timeout=10)
    assert r.status_code == 200, r.text


def test_an_upper_case_bearer_token_beside_a_key_is_ambiguous(stack: Stack, tokens: TokenFactory, keys: Keys) -> None:
    headers = {"Authorization": f"BEARER {tokens.token('nina')}", "X-API-KEY": keys.alice}
    r = httpx.get(f"{stack.rest_url}/chats", headers=headers, timeout=10)
    assert r.status_code == 401 and error_reason(r.json()) == "CREDENTIALS_AMBIGUOUS", r.text


@pytest.mark.parametrize("value", ["Basic YWxpY2U6cHc=", "Token abc", "Bearer"])
def test_an_authorization_header_that_is_no_bearer_token_is_refused_not_ignored(
    stack: Stack, keys: Keys, value: str
) -> None:
    r = httpx.get(f"{stack.rest_url}/chats", headers={"Authorization": value, "X-API-KEY": keys.alice}, timeout=10)
    assert r.status_code == 401, r.text
    assert error_reason(r.json()) == "AUTHORIZATION_SCHEME_UNSUPPORTED"
    with grpc.insecure_channel(stack.edge_target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            chat_service_pb2_grpc.ChatServiceStub(channel).ListChats(
                chat_service_pb2.ListChatsRequest(),
                metadata=(("authorization", value), ("x-api-key", keys.alice)),
                timeout=10,
            )
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "Authorization header was not understood" in (err.value.details() or "")


def test_a_token_whose_subject_holds_nul_is_refused(stack: Stack, tokens: TokenFactory) -> None:
    token = tokens.token("eve\u0000")
    r = httpx.get(f"{stack.rest_url}/chats", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 401 and error_reason(r.json()) == "TOKEN_INVALID", r.text


def _no_internal_names(text: str) -> None:
    for name in INTERNAL_NAMES:
        assert name not in text.lower(), text


def test_an_overlong_id_in_a_path_is_400_at_the_edge(stack: Stack, keys: Keys) -> None:
    headers = {"X-API-KEY": keys.alice}
    for chat_id in ("c" * 129, "c" * 16_000):
        r = httpx.get(f"{stack.rest_url}/chats/{chat_id}", headers=headers, timeout=10)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == 3
        _no_internal_names(r.text)
    # 128 characters is an id that might exist: looked up, and not found.
    assert httpx.get(f"{stack.rest_url}/chats/{'c' * 128}", headers=headers, timeout=10).status_code == 404


def test_an_overlong_page_token_is_400_naming_no_internal_header(stack: Stack, keys: Keys) -> None:
    headers = {"X-API-KEY": keys.alice}
    for size in (5_000, 60_000):  # within the header cap (the server refuses it), and beyond it (Envoy does)
        r = httpx.get(f"{stack.rest_url}/chats", params={"page_token": "t" * size}, headers=headers, timeout=10)
        assert r.status_code == 400, (size, r.text)
        assert r.json()["code"] == 3
        _no_internal_names(r.text)


def test_a_slow_request_body_is_served_with_a_valid_key(stack: Stack, keys: Keys) -> None:
    """The identity is made when the headers arrive and read when the body has: a body that takes longer
    than a few seconds (here 11 s, past the old 10 s identity lifetime) must not be refused for it."""
    body = json.dumps({"name": "slow", "flow": two_agent_flow()}).encode()

    def trickle() -> Iterator[bytes]:
        yield body[:10]
        time.sleep(11)  # the slow client under test, not synchronization
        yield body[10:]

    r = httpx.post(
        f"{stack.rest_url}/flows",
        content=trickle(),
        headers={"X-API-KEY": keys.alice, "content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["name"] == "slow"


# --- a stack with a per-key rate limit and a short request-headers timeout ---------------------------------


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer, tokens: TokenFactory
) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("limited")
    s = Stack(
        root,
        llm_server.base_url,
        jwt=JwtConfig(ISSUER, AUDIENCE, jwks_file=tokens.jwks_file),
        envoy_options={"rate_limit": RateLimit(per_second=1, burst=3), "request_headers_timeout": 1.0},
    )
    s.start()
    yield s
    s.stop()


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected(limited: Stack) -> None:
    _, greedy = create_key(limited.env, "greedy", "greedy")
    _, calm = create_key(limited.env, "calm", "calm")
    with httpx.Client(base_url=limited.rest_url, timeout=10) as http:
        codes = [http.get("/chats", headers={"X-API-KEY": greedy}) for _ in range(20)]
        other = http.get("/chats", headers={"X-API-KEY": calm})
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]  # the burst
    refused = [r for r in codes if r.status_code == 429]
    assert refused, [r.status_code for r in codes]
    assert refused[0].headers["retry-after"] == "1"
    assert refused[0].json()["code"] == 8 and error_reason(refused[0].json()) == "RATE_LIMITED"
    assert other.status_code == 200, other.text  # another key has its own bucket


def test_native_grpc_over_its_rate_gets_resource_exhausted(limited: Stack) -> None:
    _, key = create_key(limited.env, "grpc-greedy", "grpc-greedy")
    codes = []
    message = ""
    with grpc.insecure_channel(limited.edge_target) as channel:
        chats = chat_service_pb2_grpc.ChatServiceStub(channel)
        for _ in range(20):
            try:
                chats.ListChats(chat_service_pb2.ListChatsRequest(), metadata=(("x-api-key", key),), timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())
                message = err.details() or ""
    assert codes[:3] == [grpc.StatusCode.OK] * 3
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert "too many requests with this credential" in message
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_a_client_that_trickles_its_headers_is_cut_off(limited: Stack) -> None:
    with socket.create_connection(("127.0.0.1", limited.envoy.listen_port), timeout=30) as sock:
        sock.sendall(b"GET /chats HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
        answer = b""
        while chunk := sock.recv(4096):  # bounded by the socket timeout: Envoy must close first
            answer += chunk
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer


# --- many streams on one connection ----------------------------------------------------------------------


async def test_more_than_1024_watchers_on_one_connection_all_open(stack: Stack, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=stack.rest_url, headers={"X-API-KEY": keys.alice}, timeout=10) as http:
        flow = (await http.post("/flows", json={"name": "w", "flow": two_agent_flow()})).json()["flow"]
        body = {"name": "w", "from_type": "flow", "from_flow": flow["id"]}
        chat = (await http.post("/chats", json=body)).json()
    async with grpc.aio.insecure_channel(stack.edge_target) as channel:
        chats = chat_service_pb2_grpc.ChatServiceStub(channel)
        request = chat_service_pb2.WatchChatRequest(chat_id=chat["id"])
        calls = [chats.WatchChat(request, metadata=(("x-api-key", keys.alice),)) for _ in range(1_100)]
        try:
            # WatchChat sends its headers at once: every stream that opened has them; one that hangs in a queue
            # (Envoy's old per-connection limit of 1,024) times out here instead.
            opened = await asyncio.gather(
                *(asyncio.wait_for(call.initial_metadata(), 60) for call in calls), return_exceptions=True
            )
            hung = [o for o in opened if isinstance(o, BaseException)]
            assert not hung, hung[:3]
            # A stream either opened and stays open, or failed fast with a status a client retries: on a loaded
            # machine a key check may time out (UNAVAILABLE). Never CANCELLED (grpc's pending-call limit) and
            # never UNAUTHENTICATED (a timed-out check that Envoy had let through without an identity).
            ended = [await call.code() for call in calls if call.done()]
            assert set(ended) <= {grpc.StatusCode.UNAVAILABLE}, set(ended)
            assert len(calls) - len(ended) > 1_024
        finally:
            for call in calls:
                call.cancel()


# --- a key check that does not answer in time ----------------------------------------------------------


class _Silent(BaseHTTPRequestHandler):
    """A check endpoint that takes every request and answers none of them before the test ends."""

    release: threading.Event

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/healthz":  # Envoy's health checker keeps the endpoint in rotation
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.release.wait(30)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Upstream(chat_service_pb2_grpc.ChatServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def ListChats(
        self, request: chat_service_pb2.ListChatsRequest, context: grpc.aio.ServicerContext
    ) -> chat_service_pb2.ListChatsResponse:
        self.calls += 1
        return chat_service_pb2.ListChatsResponse()


async def test_a_check_that_times_out_lets_nothing_through(tmp_path: Path) -> None:
    """Native gRPC too: Envoy's HTTP client answers a timed-out request marked application/grpc with a
    gRPC-style 200, which ext_authz would read as an allow; the check request must not be marked so."""
    release = threading.Event()
    handler = type("Silent", (_Silent,), {"release": release})
    check = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=check.serve_forever, daemon=True).start()
    upstream = _Upstream()
    server = grpc.aio.server()
    chat_service_pb2_grpc.add_ChatServiceServicer_to_server(upstream, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    envoy = EnvoyProcess(
        work_dir=tmp_path / "envoy",
        listen_host="127.0.0.1",
        listen_port=free_port(),
        upstream_host="127.0.0.1",
        upstream_port=port,
        authz_port=check.server_address[1],
        check_secret="timeout-test-secret",
        authz_timeout=0.3,
    )
    await asyncio.to_thread(envoy.start)
    try:
        async with grpc.aio.insecure_channel(edge_target(envoy.listen_port)) as channel:
            chats = chat_service_pb2_grpc.ChatServiceStub(channel)
            # More than Envoy keeps connections to the check endpoint: some checks time out on a connection,
            # the rest while waiting for one.
            calls = [
                chats.ListChats(
                    chat_service_pb2.ListChatsRequest(), metadata=(("x-api-key", "atk_whatever"),), timeout=10
                )
                for _ in range(AUTHZ_CONNECTIONS + 36)
            ]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        codes = {o.code() if isinstance(o, grpc.aio.AioRpcError) else grpc.StatusCode.OK for o in outcomes}
        assert codes == {grpc.StatusCode.UNAVAILABLE}, codes
        r = await asyncio.to_thread(
            httpx.get, f"{envoy.url}/chats", headers={"X-API-KEY": "atk_whatever"}, timeout=10
        )
        assert r.status_code == 503 and r.json()["code"] == 14, r.text
        assert upstream.calls == 0
    finally:
        release.set()
        envoy.stop()
        await server.stop(0)
        check.shutdown()
        check.server_close()
