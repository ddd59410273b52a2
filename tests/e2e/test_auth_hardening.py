"""Credential rules through the real Envoy and the real server: token lifetimes, one credential per call,
and signed edge identities that cannot be replayed later."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest

from agentok.v1 import chat_service_pb2, chat_service_pb2_grpc
from agentok_server.domain.model import AuthMethod, Identity, KeyScope
from agentok_server.storage.repository import Repository, make_engine
from agentok_server.transport.edge_identity import HEADER, EdgeIdentity

from ..support.stack import VENV_BIN, Stack, create_key
from ..support.tokens import TokenFactory

DAY = 24 * 3600  # AGENTOK_JWT_MAX_LIFETIME_SECONDS' default, which the test stack uses


def _refusal(stack: Stack, headers: dict[str, str]) -> dict[str, object]:
    r = httpx.get(f"{stack.rest_url}/chats", headers=headers, timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == 16
    return dict(body)


def _reason(body: dict[str, object]) -> str:
    details = body["details"]
    assert isinstance(details, list) and details, body
    return str(details[0]["reason"])


def test_a_token_without_exp_is_refused_saying_why(stack: Stack, tokens: TokenFactory) -> None:
    body = _refusal(stack, {"Authorization": f"Bearer {tokens.token('lena', exp=None)}"})
    assert _reason(body) == "TOKEN_NO_EXPIRY"
    assert "no expiry (exp claim)" in str(body["message"])


def test_a_token_living_longer_than_the_maximum_is_refused(stack: Stack, tokens: TokenFactory) -> None:
    now = int(time.time())
    body = _refusal(stack, {"Authorization": f"Bearer {tokens.token('lena', exp=now + DAY + 3600)}"})
    assert _reason(body) == "TOKEN_LIFETIME_TOO_LONG"
    assert f"more than the {DAY} s allowed" in str(body["message"])
    # Just under the maximum is fine.
    ok = httpx.get(
        f"{stack.rest_url}/chats", headers={"Authorization": f"Bearer {tokens.token('lena', exp=now + DAY - 60)}"}
    )
    assert ok.status_code == 200, ok.text


def test_agentok_token_refuses_a_ttl_over_the_maximum(stack: Stack) -> None:
    out = subprocess.run(
        [str(VENV_BIN / "agentok"), "token", "--ttl", "25h"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and out.stdout == ""
    assert "--ttl" in out.stderr and "AGENTOK_JWT_MAX_LIFETIME_SECONDS" in out.stderr and str(DAY) in out.stderr


def test_a_key_and_a_token_together_are_refused_over_rest(stack: Stack, tokens: TokenFactory) -> None:
    _, key = create_key(stack.env, "both-rest", "mona")
    for scheme in ("Bearer", "bearer"):
        body = _refusal(stack, {"X-API-KEY": key, "Authorization": f"{scheme} {tokens.token('mona')}"})
        assert _reason(body) == "CREDENTIALS_AMBIGUOUS"
        assert "send one credential" in str(body["message"])


@pytest.mark.parametrize("target", ["edge", "server"])
def test_a_key_and_a_token_together_are_refused_over_grpc(stack: Stack, tokens: TokenFactory, target: str) -> None:
    _, key = create_key(stack.env, f"both-grpc-{target}", "mona")
    both = (("x-api-key", key), ("authorization", f"Bearer {tokens.token('mona')}"))
    with grpc.insecure_channel(stack.edge_target if target == "edge" else stack.server.target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListChats(chat_service_pb2.ListChatsRequest(), metadata=both, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (err.value.details() or "").startswith("send one credential")
        # Each alone works.
        stub.ListChats(chat_service_pb2.ListChatsRequest(), metadata=both[:1], timeout=10)
        if target == "edge":
            stub.ListChats(chat_service_pb2.ListChatsRequest(), metadata=both[1:], timeout=10)


async def _edge_identity(stack: Stack) -> EdgeIdentity:
    """An EdgeIdentity with the stack's own signing secret, read from its database."""
    repo = Repository(make_engine(f"sqlite:///{Path(stack.env['AGENTOK_DATA_DIR']) / 'agentok.db'}"))
    try:

        def missing() -> str:
            raise AssertionError("the server should have created its edge-identity secret")

        return EdgeIdentity(bytes.fromhex(await repo.server_secret("edge-identity", missing)))
    finally:
        await repo.dispose()


async def test_an_old_signed_identity_is_refused_on_the_server_port(stack: Stack) -> None:
    edge = await _edge_identity(stack)
    who = Identity(owner="nora", method=AuthMethod.BEARER, scope=KeyScope.ADMIN)
    async with grpc.aio.insecure_channel(stack.server.target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        # Freshly signed with the right secret: accepted (so the refusal below is about age alone).
        fresh = await stub.ListChats(chat_service_pb2.ListChatsRequest(), metadata=((HEADER, edge.encode(who)),))
        assert list(fresh.chats) == []
        # A header captured two minutes ago: past the route timeout (60 s) plus the clock allowance (10 s).
        replayed = edge.encode(who, now=time.time() - 120)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListChats(chat_service_pb2.ListChatsRequest(), metadata=((HEADER, replayed),), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "expired edge identity" in (err.value.details() or "")
