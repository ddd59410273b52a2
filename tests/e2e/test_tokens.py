"""Bearer tokens (OAuth2/JWT) through the real Envoy: accepted wherever keys are, refused with reasons."""

from __future__ import annotations

import time

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agentok.v1 import chat_service_pb2

from ..support.api import Grpc, Rest, real_flow, with_model
from ..support.stack import Stack, create_key
from ..support.tokens import TokenFactory


def _bearer(stack: Stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=stack.rest_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_token_and_a_key_of_one_owner_see_the_same_chats(stack: Stack, tokens: TokenFactory) -> None:
    _, key = create_key(stack.env, "erin-key", "erin")
    by_key = Rest(stack.rest_url, key)
    flow = by_key.create_flow(with_model(real_flow("14"), "m"))
    chat = by_key.create_chat(flow["id"])

    with _bearer(stack, tokens.token("erin")) as http:
        listed = http.get("/chats").json()
        assert [c["id"] for c in listed] == [chat["id"]]
        # ...and what the token creates, the key sees.
        r = http.post("/chats", json={"name": "by token", "from_type": "flow", "from_flow": flow["id"]})
        assert r.status_code == 200, r.text
        by_token = r.json()["id"]
    assert by_token in [c["id"] for c in by_key.chats()]

    # Another subject sees none of it.
    with _bearer(stack, tokens.token("frank")) as http:
        assert http.get("/chats").json() == []
        assert http.get(f"/chats/{chat['id']}").status_code == 404


def test_native_grpc_accepts_bearer_tokens(stack: Stack, tokens: TokenFactory) -> None:
    with grpc.insecure_channel(stack.edge_target) as channel:
        from agentok.v1 import chat_service_pb2_grpc

        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        ok = stub.ListChats(
            chat_service_pb2.ListChatsRequest(),
            metadata=(("authorization", f"Bearer {tokens.token('gina')}"),),
            timeout=10,
        )
        assert list(ok.chats) == []
        with pytest.raises(grpc.RpcError) as err:
            stub.ListChats(
                chat_service_pb2.ListChatsRequest(),
                metadata=(("authorization", f"Bearer {tokens.token('gina', exp=int(time.time()) - 600)}"),),
                timeout=10,
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in (err.value.details() or "").lower()


def _refusals(tokens: TokenFactory) -> list[tuple[str, str, str]]:
    now = int(time.time())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return [
        ("expired", tokens.token("h", exp=now - 600, iat=now - 900, nbf=now - 900), "expired"),
        ("not yet valid", tokens.token("h", nbf=now + 600, iat=now), "not yet valid"),
        ("wrong audience", tokens.token("h", aud="someone-else"), "audience"),
        ("wrong issuer", tokens.token("h", iss="https://evil.test"), "issuer"),
        ("badly signed", tokens.token("h", signer=other), "verification fail"),
        ("alg none", tokens.unsigned("h"), "[alg] is not supported"),
        ("not a jwt", "hello.world", "header.payload.signature"),
    ]


def test_every_bad_token_is_refused_with_a_reason(stack: Stack, tokens: TokenFactory) -> None:
    for name, token, reason in _refusals(tokens):
        with _bearer(stack, token) as http:
            r = http.get("/chats")
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), name
        body = r.json()
        assert body["code"] == 16 and body["message"].startswith("bearer token refused:"), (name, body)
        assert reason in body["message"].lower(), (name, body["message"])
        assert len(body["message"]) > len("bearer token refused: "), name


def test_a_token_without_subject_is_refused(stack: Stack, tokens: TokenFactory) -> None:
    with _bearer(stack, tokens.token("x", sub=None)) as http:
        r = http.get("/chats")
    assert r.status_code == 401 and "subject" in r.json()["message"]


def test_neither_key_nor_token_is_refused(stack: Stack) -> None:
    r = httpx.get(f"{stack.rest_url}/chats")
    assert r.status_code == 401 and "missing credentials" in r.json()["message"]
    # An Authorization header in another scheme is no credential either: refused, saying what to send.
    r = httpx.get(f"{stack.rest_url}/chats", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401 and "Authorization header was not understood" in r.json()["message"]


def test_a_forged_payload_header_is_not_trusted(stack: Stack) -> None:
    import base64
    import json

    forged = base64.urlsafe_b64encode(json.dumps({"sub": "erin"}).encode()).decode().rstrip("=")
    r = httpx.get(f"{stack.rest_url}/chats", headers={"x-jwt-payload": forged})
    assert r.status_code == 401
    r = httpx.get(f"{stack.rest_url}/chats", headers={"x-agentok-identity": "e30.forged"})
    assert r.status_code == 401


def test_the_server_port_does_not_trust_unsigned_identities(stack: Stack) -> None:
    client = Grpc(stack.server.target, None)
    try:
        with pytest.raises(grpc.RpcError) as err:
            client.chats.ListChats(
                chat_service_pb2.ListChatsRequest(), metadata=(("x-agentok-identity", "e30.forged"),), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        client.close()


def test_native_grpc_refusals_are_unauthenticated(stack: Stack, tokens: TokenFactory) -> None:
    from agentok.v1 import chat_service_pb2_grpc

    with grpc.insecure_channel(stack.edge_target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        for name, token, _ in _refusals(tokens):
            with pytest.raises(grpc.RpcError) as err:
                stub.ListChats(
                    chat_service_pb2.ListChatsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10
                )
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, err.value.code(), err.value.details())
