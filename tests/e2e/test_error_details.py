"""Every refusal carries an ErrorInfo reason (domain agentok.ai), through the real Envoy and server: REST in the
one JSON shape {"code", "message", "details"}, native gRPC in grpc-status-details-bin, read as a client does
with grpc-status's rpc_status.from_call. The refusals Envoy makes itself included: the transcoder's, jwt_authn's,
the rate limit's, the caps', the routes', and those of a key check or a server that cannot answer."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentok.v1 import chat_service_pb2, chat_service_pb2_grpc
from agentok_server.edge.envoy_config import JwtConfig, RateLimit

from ..conftest import Keys
from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, create_key
from ..support.tokens import AUDIENCE, ISSUER, TokenFactory

DAY = 24 * 3600  # AGENTOK_JWT_MAX_LIFETIME_SECONDS' default


def rest_refusal(r: httpx.Response, status: int, code: int, reason: str) -> dict[str, Any]:
    """The refusal's JSON body, checked: HTTP status, gRPC code, and the ErrorInfo's reason and domain."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"code", "message", "details"} and body["code"] == code, body
    assert body["message"], body
    (info,) = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert (info["reason"], info["domain"]) == (reason, "agentok.ai"), body
    return dict(body)


def grpc_refusal(call: Callable[[], object], code: grpc.StatusCode, reason: str) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a failed native gRPC call, as rpc_status.from_call reads it (it checks that the
    status's code and message are the call's own)."""
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, (err.value.code(), err.value.details())
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None, f"no grpc-status-details-bin: {err.value.details()!r}"
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details), status
    assert (info.reason, info.domain) == (reason, "agentok.ai"), info
    return info


def list_chats(target: str, metadata: tuple[tuple[str, str], ...], timeout: float = 10) -> Callable[[], object]:
    def call() -> object:
        with grpc.insecure_channel(target) as channel:
            stub = chat_service_pb2_grpc.ChatServiceStub(channel)
            return stub.ListChats(chat_service_pb2.ListChatsRequest(), metadata=metadata, timeout=timeout)

    return call


# --------------------------------------------------------------------------------------------------
# Refused credentials: the key check's (ext_authz) and jwt_authn's, REST and native gRPC alike


def _credentials(stack: Stack, tokens: TokenFactory, kind: str) -> dict[str, str]:
    now = int(time.time())
    if kind == "API_KEY_MISSING":
        return {}
    if kind == "API_KEY_INVALID":
        return {"x-api-key": "atk_not-a-real-key"}
    if kind == "CREDENTIALS_AMBIGUOUS":
        _, key = create_key(stack.env, "ambiguous", "ana")
        return {"x-api-key": key, "authorization": f"Bearer {tokens.token('ana')}"}
    bearer = {
        "AUTHORIZATION_SCHEME_UNSUPPORTED": "Basic dXNlcjpwYXNz",
        "TOKEN_NO_EXPIRY": f"Bearer {tokens.token('t', exp=None)}",
        "TOKEN_LIFETIME_TOO_LONG": f"Bearer {tokens.token('t', exp=now + DAY + 3600)}",
        "TOKEN_EXPIRED": f"Bearer {tokens.token('t', exp=now - 600, iat=now - 900, nbf=now - 900)}",
        "TOKEN_NOT_YET_VALID": f"Bearer {tokens.token('t', nbf=now + 600, iat=now)}",
        "TOKEN_AUDIENCE_NOT_ALLOWED": f"Bearer {tokens.token('t', aud='someone-else')}",
        "TOKEN_ISSUER_UNKNOWN": f"Bearer {tokens.token('t', iss='https://evil.test')}",
        "TOKEN_SIGNATURE_INVALID": f"Bearer {tokens.token('t', signer=tokens.stranger)}",
        "TOKEN_ALGORITHM_UNSUPPORTED": f"Bearer {tokens.unsigned('t')}",
        "TOKEN_MALFORMED": "Bearer hello.world",
    }[kind]
    return {"authorization": bearer}


CREDENTIAL_REFUSALS = [
    "API_KEY_MISSING",
    "API_KEY_INVALID",
    "CREDENTIALS_AMBIGUOUS",
    "AUTHORIZATION_SCHEME_UNSUPPORTED",
    "TOKEN_NO_EXPIRY",
    "TOKEN_LIFETIME_TOO_LONG",
    "TOKEN_EXPIRED",
    "TOKEN_NOT_YET_VALID",
    "TOKEN_AUDIENCE_NOT_ALLOWED",
    "TOKEN_ISSUER_UNKNOWN",
    "TOKEN_SIGNATURE_INVALID",
    "TOKEN_ALGORITHM_UNSUPPORTED",
    "TOKEN_MALFORMED",
]


@pytest.mark.parametrize("reason", CREDENTIAL_REFUSALS)
def test_a_refused_credential_says_why_over_rest_and_native_grpc(
    stack: Stack, tokens: TokenFactory, reason: str
) -> None:
    headers = _credentials(stack, tokens, reason)
    rest_refusal(httpx.get(f"{stack.rest_url}/v1/chats", headers=headers, timeout=30), 401, 16, reason)
    grpc_refusal(list_chats(stack.edge_target, tuple(headers.items())), grpc.StatusCode.UNAUTHENTICATED, reason)


def test_a_refused_key_on_a_watch_stream_carries_its_reason_too(stack: Stack) -> None:
    headers = {"x-api-key": "atk_not-a-real-key"}
    rest_refusal(
        httpx.get(f"{stack.rest_url}/chats/any/watch", headers=headers, timeout=30), 401, 16, "API_KEY_INVALID"
    )

    def watch() -> object:
        with grpc.insecure_channel(stack.edge_target) as channel:
            stub = chat_service_pb2_grpc.ChatServiceStub(channel)
            request = chat_service_pb2.WatchChatRequest(chat_id="any")
            return list(stub.WatchChat(request, metadata=tuple(headers.items()), timeout=10))

    grpc_refusal(watch, grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")


# --------------------------------------------------------------------------------------------------
# Envoy's own refusals of a REST request


@pytest.fixture()
def http(stack: Stack, keys: Keys) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.rest_url, headers={"X-API-KEY": keys.alice}, timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "reason", "says"),
    [
        ("GET", "/v1/nowhere", None, 404, 5, "NOT_FOUND_PATH", "/v1/nowhere"),
        ("POST", "/v1/chats", b"{bad", 400, 3, "INVALID_JSON", "Expected"),
        ("POST", "/v1/chats", b'{"max_agent_turns": "many"}', 400, 3, "INVALID_JSON", "max_agent_turns"),
        ("GET", "/v1/chats?bogus=1", None, 400, 3, "INVALID_QUERY_PARAMETER", "bogus"),
        ("GET", "/v1/chats?page_size=ten", None, 400, 3, "INVALID_QUERY_PARAMETER", "page_size"),
        ("GET", "/v1/chats/" + "x" * 129, None, 400, 3, "PATH_SEGMENT_TOO_LONG", "128 characters"),
        ("POST", "/v1/flows", b"x" * (4 * 1024 * 1024 + 1), 413, 8, "BODY_TOO_LARGE", "4194304 bytes"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.isupper() else None,
)
def test_envoys_own_refusals_carry_a_reason(
    http: httpx.Client, method: str, path: str, body: bytes | None, status: int, code: int, reason: str, says: str
) -> None:
    r = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert says in rest_refusal(r, status, code, reason)["message"]


def test_a_method_the_path_does_not_take_is_405_with_allow(http: httpx.Client) -> None:
    r = http.put("/v1/chats", json={})
    body = rest_refusal(r, 405, 12, "METHOD_NOT_ALLOWED")
    assert r.headers["allow"] == "GET, POST" and body["message"] == "PUT is not a method of /v1/chats: use GET, POST"
    assert body["details"][0]["metadata"] == {"allow": "GET, POST"}
    r = http.get("/chats/abc:cancel")
    assert rest_refusal(r, 405, 12, "METHOD_NOT_ALLOWED") and r.headers["allow"] == "POST"
    # HEAD: the same status and Allow, no body (and the connection stays usable).
    r = http.head("/v1/chats/abc:cancel")
    assert (r.status_code, r.headers["allow"], r.content) == (405, "POST", b"")
    assert http.get("/v1/chats").status_code == 200


def test_headers_larger_than_the_cap_are_a_400_with_a_reason(http: httpx.Client) -> None:
    r = http.get("/v1/chats", headers={"X-Padding": "p" * 20_000})
    assert "16 KiB" in rest_refusal(r, 400, 3, "HEADERS_TOO_LARGE")["message"]


def test_a_request_envoy_cannot_read_is_a_400_with_a_reason(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.envoy.listen_port), timeout=30) as sock:
        sock.sendall(b"GET /v1/chats HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # Envoy closes the connection after a request it cannot parse
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, answer
    response = httpx.Response(400, headers={"content-type": "application/json"}, content=body)
    rest_refusal(response, 400, 3, "MALFORMED_REQUEST")


def test_an_unknown_grpc_method_is_unimplemented_with_a_reason(stack: Stack, keys: Keys) -> None:
    def call() -> object:
        with grpc.insecure_channel(stack.edge_target) as channel:
            return channel.unary_unary("/agentok.v1.NoSuchService/Call")(
                b"", metadata=(("x-api-key", keys.alice),), timeout=10
            )

    grpc_refusal(call, grpc.StatusCode.UNIMPLEMENTED, "UNKNOWN_METHOD")


# --------------------------------------------------------------------------------------------------
# A stack with a per-key rate limit and a short request-headers timeout, whose key check is stopped last


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer, tokens: TokenFactory
) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("limited-errors"),
        llm_server.base_url,
        jwt=JwtConfig(ISSUER, AUDIENCE, jwks_file=tokens.jwks_file),
        # Health checks that never come while a test stops the server: the refusal is the key check timing out.
        envoy_options={
            "rate_limit": RateLimit(per_second=1, burst=2),
            "request_headers_timeout": 1.0,
            "health_check_interval": 600.0,
        },
    )
    s.start()
    yield s
    s.stop()


def test_over_the_rate_limit_rest_and_grpc_get_rate_limited_with_retry_info(limited: Stack) -> None:
    _, key = create_key(limited.env, "flood", "flood")
    with httpx.Client(base_url=limited.rest_url, headers={"X-API-KEY": key}, timeout=10) as http:
        refused = next(r for r in (http.get("/v1/chats") for _ in range(20)) if r.status_code == 429)
    body = rest_refusal(refused, 429, 8, "RATE_LIMITED")
    assert refused.headers["retry-after"] == "1"
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "1s"} in body["details"]

    _, key = create_key(limited.env, "grpc-flood", "grpc-flood")
    with grpc.insecure_channel(limited.edge_target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)

        def flood() -> None:
            for _ in range(20):
                stub.ListChats(chat_service_pb2.ListChatsRequest(), metadata=(("x-api-key", key),), timeout=10)

        grpc_refusal(flood, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")


def test_a_client_that_trickles_its_headers_gets_request_timeout_if_anything(limited: Stack) -> None:
    with socket.create_connection(("127.0.0.1", limited.envoy.listen_port), timeout=30) as sock:
        sock.sendall(b"GET /v1/chats HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
        answer = b""
        while chunk := sock.recv(4096):  # bounded by the socket timeout: Envoy must close first
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    rest_refusal(
        httpx.Response(408, headers={"content-type": "application/json"}, content=body), 408, 4, "REQUEST_TIMEOUT"
    )


def test_when_the_key_check_cannot_answer_rest_and_grpc_get_authz_unavailable(limited: Stack) -> None:
    _, key = create_key(limited.env, "while-stopped", "stopped")
    assert limited.server.proc is not None
    limited.server.proc.send_signal(signal.SIGSTOP)  # the key check (and the server) stop answering
    try:
        r = httpx.get(f"{limited.rest_url}/v1/chats", headers={"X-API-KEY": key}, timeout=30)
        assert rest_refusal(r, 503, 14, "AUTHZ_UNAVAILABLE")["message"] == "authorization service unavailable"
        grpc_refusal(
            list_chats(limited.edge_target, (("x-api-key", key),)), grpc.StatusCode.UNAVAILABLE, "AUTHZ_UNAVAILABLE"
        )
    finally:
        limited.server.proc.send_signal(signal.SIGCONT)


# --------------------------------------------------------------------------------------------------
# A server that does not answer, or is gone: the edge's check off (as `make bench` runs it; the server checks
# the key itself), so Envoy reaches the server with the request


def test_a_server_too_slow_or_gone_is_upstream_timeout_then_upstream_unavailable(
    tmp_path: Path, llm_server: FakeLlmServer
) -> None:
    stack = Stack(
        tmp_path,
        llm_server.base_url,
        extra_env={"AGENTOK_AUTH_ENABLED": "false"},
        envoy_options={"auth": False, "route_timeout": 1.0, "health_check_interval": 600.0},
    ).start()
    try:
        assert stack.server.proc is not None
        _, key = create_key(stack.env, "direct", "direct")
        headers, metadata = {"X-API-KEY": key}, (("x-api-key", key),)
        assert httpx.get(f"{stack.rest_url}/v1/chats", headers=headers, timeout=30).status_code == 200
        stack.server.proc.send_signal(signal.SIGSTOP)
        try:
            r = httpx.get(f"{stack.rest_url}/v1/chats", headers=headers, timeout=30)
            rest_refusal(r, 504, 4, "UPSTREAM_TIMEOUT")
            grpc_refusal(
                list_chats(stack.edge_target, metadata, timeout=30),
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "UPSTREAM_TIMEOUT",
            )
        finally:
            stack.server.proc.send_signal(signal.SIGCONT)
        stack.server.stop(signal.SIGKILL)
        r = httpx.get(f"{stack.rest_url}/v1/chats", headers=headers, timeout=30)
        rest_refusal(r, 503, 14, "UPSTREAM_UNAVAILABLE")
        grpc_refusal(list_chats(stack.edge_target, metadata), grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
    finally:
        stack.stop()
