"""gRPC-web at the edge and the TypeScript client (clients/typescript/) against one real server + Envoy.

The edge checks speak gRPC-web by hand (httpx): the key check refuses a call without a key exactly as it
refuses native gRPC (UNAUTHENTICATED with its ErrorInfo), an origin the operator listed gets CORS grants and
one not listed gets none. Then Node's test runner runs the client's own tests (clients/typescript/test/)
against the same stack: every RPC, errors with code and reason, and a watch cut mid-stream that resumes.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from agentok.v1 import chat_service_pb2

from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, agentok_cli, create_key

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "clients" / "typescript"
ALLOWED_ORIGIN = "http://app.example.test:5173"
GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("grpc-web")
    s = Stack(root, llm_server.base_url, envoy_options={"cors_allowed_origins": [ALLOWED_ORIGIN]})
    s.start()
    yield s
    s.stop()


def _frame(message: bytes) -> bytes:
    """One gRPC(-web) data frame: flag 0, big-endian length, the message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _details(value: str) -> status_pb2.Status:
    return status_pb2.Status.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))


def _refusal(answer: httpx.Response) -> tuple[int, str]:
    """(gRPC code, ErrorInfo reason) of a gRPC-web reply whose status is in its headers (trailers-only)."""
    assert answer.headers["content-type"].startswith("application/grpc-web"), answer.headers
    assert answer.content == b"", answer.content
    code = int(answer.headers["grpc-status"])
    status = _details(answer.headers["grpc-status-details-bin"])
    assert status.code == code and status.message == answer.headers["grpc-message"]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.domain == "agentok.ai"
    return code, info.reason


def _call(stack: Stack, path: str, request: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{stack.rest_url}{path}", content=_frame(request), headers={**GRPC_WEB, **headers})


def test_grpc_web_without_a_key_is_refused_with_its_reason(web_stack: Stack) -> None:
    """The key check refuses gRPC-web as it refuses native gRPC. Its HTTP code stays 401 (gRPC-web allows
    that, and the grpc_web filter would make a 200 without a body an OK); the status is the same."""
    answer = _call(
        web_stack, "/agentok.v1.ChatService/ListChats", chat_service_pb2.ListChatsRequest().SerializeToString()
    )
    assert answer.status_code == 401
    assert _refusal(answer) == (code_pb2.UNAUTHENTICATED, "API_KEY_MISSING")


def test_grpc_web_with_a_bad_bearer_token_is_refused_by_jwt_authn(stack: Stack) -> None:
    """Bearer tokens are checked for gRPC-web as for native gRPC (the session's stack verifies tokens): a token
    that is no JWT is jwt_authn's refusal, a trailers-only gRPC-web reply with its reason."""
    request = chat_service_pb2.ListChatsRequest().SerializeToString()
    answer = _call(stack, "/agentok.v1.ChatService/ListChats", request, authorization="Bearer not-a-jwt")
    assert answer.status_code == 200
    code, reason = _refusal(answer)
    assert code == code_pb2.UNAUTHENTICATED and reason.startswith("TOKEN_"), reason


def test_grpc_web_gets_the_edges_own_refusals_as_grpc_web(web_stack: Stack) -> None:
    """A local reply of the edge's (here: a service it does not serve) is a trailers-only gRPC-web reply,
    HTTP 200, with the reason from edge/local_replies.py."""
    _, key = create_key(web_stack.env, "web-refused", "web-refused-owner")
    answer = _call(web_stack, "/grpc.health.v1.Health/Check", b"", **{"x-api-key": key})
    assert answer.status_code == 200
    assert _refusal(answer) == (code_pb2.UNIMPLEMENTED, "UNKNOWN_METHOD")


def test_grpc_web_with_a_key_is_served(web_stack: Stack) -> None:
    _, key = create_key(web_stack.env, "web", "web-owner")
    request = chat_service_pb2.ListChatsRequest(page_size=1).SerializeToString()
    answer = _call(
        web_stack, "/agentok.v1.ChatService/ListChats", request, **{"x-api-key": key, "origin": ALLOWED_ORIGIN}
    )
    assert answer.status_code == 200
    body = answer.content
    # A data frame (the response), then the trailer frame (flag 0x80) with grpc-status 0.
    length = struct.unpack(">I", body[1:5])[0]
    assert body[0] == 0
    chat_service_pb2.ListChatsResponse.FromString(body[5 : 5 + length])
    trailer = body[5 + length :]
    assert trailer[0] == 0x80 and b"grpc-status:0" in trailer.replace(b" ", b"")
    assert answer.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    exposed = {h.strip() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed


def _preflight(stack: Stack, origin: str) -> httpx.Response:
    return httpx.options(
        f"{stack.rest_url}/agentok.v1.ChatService/ListChats",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,x-user-agent,x-api-key,authorization",
        },
    )


def test_cors_preflight_grants_a_listed_origin_only(web_stack: Stack) -> None:
    granted = _preflight(web_stack, ALLOWED_ORIGIN)
    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    allowed = {h.strip() for h in granted.headers["access-control-allow-headers"].split(",")}
    assert {"x-api-key", "authorization", "x-grpc-web", "content-type", "x-user-agent"} <= allowed

    refused = _preflight(web_stack, "http://evil.example.test")
    assert "access-control-allow-origin" not in refused.headers
    # Not answered as a preflight: it went on to the key check, which refuses a request without a key.
    assert refused.status_code == 401


def test_no_origin_is_granted_by_default(stack: Stack) -> None:
    """The session's stack lists no origin (the default): not even a plausible one gets a grant."""
    answer = _preflight(stack, "http://127.0.0.1:5173")
    assert "access-control-allow-origin" not in answer.headers


def test_typescript_client_against_the_live_stack(web_stack: Stack, tmp_path: Path) -> None:
    """The Node tests (compiled by tsc) run against this stack; every test there must pass."""
    # Admin scope: the Node tests call ApiKeyService too.
    key = (
        agentok_cli(web_stack.env, "keys", "create", "node", "--owner", "node-owner", "--admin")
        .strip()
        .splitlines()[-1]
    )
    _, other = create_key(web_stack.env, "node-other", "node-other-owner")
    env = {
        **os.environ,
        "AGENTOK_URL": web_stack.rest_url,
        "AGENTOK_KEY": key,
        "AGENTOK_OTHER_KEY": other,
        "AGENTOK_EDGE_PORT": str(web_stack.envoy.listen_port),
    }
    npm = shutil.which("npm")
    assert npm, "npm is required (make install uses it)"
    build = subprocess.run([npm, "run", "--silent", "build"], cwd=CLIENT_DIR, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run(
        ["node", "--test", "--test-reporter=spec", "dist/test/client.test.js"],
        cwd=CLIENT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "# fail 0" in run.stdout or " fail 0" in run.stdout, run.stdout[-3000:]
