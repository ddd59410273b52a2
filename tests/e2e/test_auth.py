"""API keys at the edge (Envoy ext_authz) and at the server port, and owner isolation."""

from __future__ import annotations

import grpc
import httpx
import pytest

from agentok.v1 import chat_service_pb2

from ..conftest import Keys
from ..support.api import Grpc, Rest, real_flow, with_model
from ..support.stack import Stack, agentok_cli, create_key
from ..support.waiting import eventually


@pytest.mark.parametrize("key", [None, "atk_not-a-real-key"], ids=["no key", "wrong key"])
def test_rest_refuses_missing_and_wrong_keys(stack: Stack, key: str | None) -> None:
    headers = {"X-API-KEY": key} if key else {}
    for method, path in (("GET", "/chats"), ("POST", "/chats"), ("GET", "/flows"), ("GET", "/chats/x/watch")):
        r = httpx.request(method, f"{stack.rest_url}{path}", headers=headers, json={})
        assert r.status_code == 401, (method, path)
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["code"] == 16
        assert ("missing" if key is None else "invalid") in body["message"]


@pytest.mark.parametrize("target", ["edge", "server"])
@pytest.mark.parametrize("key", [None, "atk_not-a-real-key"], ids=["no key", "wrong key"])
def test_grpc_refuses_missing_and_wrong_keys(stack: Stack, target: str, key: str | None) -> None:
    client = Grpc(stack.edge_target if target == "edge" else stack.server.target, key)
    try:
        with pytest.raises(grpc.RpcError) as err:
            client.chats.ListChats(chat_service_pb2.ListChatsRequest(), metadata=client.metadata, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        expected = "missing credentials" if key is None else "invalid API key"
        assert (err.value.details() or "").startswith(expected)
        with pytest.raises(grpc.RpcError) as err:
            list(client.watch("any", timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        client.close()


def test_revoked_key_stops_working(stack: Stack) -> None:
    key_id, key = create_key(stack.env, "short-lived", "carol")
    rest = Rest(stack.rest_url, key)
    client = Grpc(stack.edge_target, key)
    assert rest.http.get("/chats").status_code == 200
    listed = agentok_cli(stack.env, "keys", "list")
    assert key_id in listed and key not in listed  # the secret is never shown again
    agentok_cli(stack.env, "keys", "revoke", key_id)
    # The server caches key lookups for at most a second; poll (bounded) until the refusal shows.
    eventually(lambda: rest.http.get("/chats").status_code == 401, "the revoked key to be refused", timeout=5)
    assert rest.http.get("/chats").json()["message"].startswith("invalid API key")
    with pytest.raises(grpc.RpcError) as err:
        client.chats.ListChats(chat_service_pb2.ListChatsRequest(), metadata=client.metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    client.close()


def test_owners_see_only_their_own(stack: Stack, keys: Keys) -> None:
    alice, bob = Rest(stack.rest_url, keys.alice), Rest(stack.rest_url, keys.bob)
    flow = alice.create_flow(with_model(real_flow("14"), "m"))
    chat = alice.create_chat(flow["id"])
    for method, path, body in (
        ("GET", f"/chats/{chat['id']}", None),
        ("DELETE", f"/chats/{chat['id']}", None),
        ("POST", f"/chats/{chat['id']}/messages", {"message": "hi"}),
        ("GET", f"/chats/{chat['id']}/messages", None),
        ("GET", f"/flows/{flow['id']}", None),
    ):
        assert bob.http.request(method, path, json=body).status_code == 404, (method, path)
    r = bob.http.post("/chats", json={"name": "x", "from_type": "flow", "from_flow": flow["id"]})
    assert r.status_code == 404
    assert chat["id"] not in [c["id"] for c in bob.chats()]
    assert flow["id"] not in [f["id"] for f in bob.http.get("/flows").json()["flows"]]
    # Nothing bob tried changed alice's chat.
    assert alice.chat(chat["id"])["status"] == "ready" and alice.messages(chat["id"]) == []


def test_internal_services_are_not_exposed_at_the_edge(stack: Stack, keys: Keys) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(stack.edge_target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), metadata=(("x-api-key", keys.alice),), timeout=10
            )
        assert err.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND)
    # The key-check endpoint is not on the public listener either.
    r = httpx.get(f"{stack.rest_url}/check", headers={"X-API-KEY": keys.alice})
    assert r.status_code == 404


def test_healthz_needs_no_key(stack: Stack) -> None:
    assert httpx.get(f"{stack.rest_url}/healthz").status_code == 200
