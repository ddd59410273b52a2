"""ApiKeyService through the real Envoy: bearer tokens or admin keys manage an owner's keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest

from agentok.v1 import api_key_service_pb2, api_key_service_pb2_grpc

from ..support.stack import Stack, agentok_cli, create_key
from ..support.tokens import TokenFactory
from ..support.waiting import eventually


def _client(stack: Stack, *, token: str | None = None, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {"X-API-KEY": key or ""}
    return httpx.Client(base_url=stack.rest_url, headers=headers, timeout=30)


def _until_refused(http: httpx.Client) -> httpx.Response:
    """Keys are cached for at most a second: poll (bounded) until the refusal shows."""
    def refused() -> httpx.Response | None:
        r = http.get("/chats")
        return r if r.status_code == 401 else None

    response = eventually(refused, "the revoked key to be refused", timeout=5)
    assert response is not None
    return response


def test_create_list_use_and_delete_with_a_token(stack: Stack, tokens: TokenFactory) -> None:
    with _client(stack, token=tokens.token("hana")) as admin:
        r = admin.post("/api-keys", json={"name": "production"})
        assert r.status_code == 200, r.text
        created = r.json()
        secret, key = created["secret"], created["api_key"]
        assert secret.startswith("atk_") and key["name"] == "production" and key["owner"] == "hana"
        assert key["scope"] == "SCOPE_CHAT" and secret.startswith(key["prefix"])
        assert key["created_at"] and "expires_at" not in key  # unset: never expires

        with _client(stack, key=secret) as user:
            assert user.get("/chats").status_code == 200

        listed = admin.get("/api-keys").json()["api_keys"]
        assert [k["id"] for k in listed] == [key["id"]]
        assert secret not in r.text.replace(created["secret"], "", 1)  # shown once, in `secret` only
        assert all("secret" not in k for k in listed)
        assert listed[0]["last_used_at"]  # the use above was recorded

        assert admin.delete(f"/api-keys/{key['id']}").status_code == 200
        with _client(stack, key=secret) as user:
            refused = _until_refused(user)
        assert refused.status_code == 401 and "invalid API key" in refused.json()["message"]
        assert admin.get("/api-keys").json()["api_keys"] == []
        assert admin.delete(f"/api-keys/{key['id']}").status_code == 404


def test_keys_expire(stack: Stack, tokens: TokenFactory) -> None:
    with _client(stack, token=tokens.token("ivan")) as admin:
        past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
        r = admin.post("/api-keys", json={"name": "old", "expires_at": past})
        assert r.status_code == 400 and "expires_at" in r.json()["message"]
        # The field's name before 2026-12-01: refused, not ignored (ignored, the key would never expire).
        r = admin.post("/api-keys", json={"name": "renamed", "expire_time": past})
        assert r.status_code == 400 and "renamed to expires_at" in r.json()["message"], r.text
        assert admin.get("/api-keys").json()["api_keys"] == []

        soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
        created = admin.post("/api-keys", json={"name": "short", "expires_at": soon}).json()
        assert created["api_key"]["expires_at"]
    with _client(stack, key=created["secret"]) as user:
        assert user.get("/chats").status_code == 200
        refused = _until_refused(user)
    assert refused.status_code == 401 and "expired" in refused.json()["message"]


def test_an_ordinary_key_cannot_manage_keys_but_an_admin_key_can(stack: Stack) -> None:
    _, ordinary = create_key(stack.env, "ordinary", "jane")
    with _client(stack, key=ordinary) as http:
        for method, path, body in (
            ("POST", "/api-keys", {"name": "sneaky"}),
            ("GET", "/api-keys", None),
            ("DELETE", "/api-keys/anything", None),
        ):
            r = http.request(method, path, json=body)
            assert r.status_code == 403, (method, r.text)
            assert r.json()["details"][0]["reason"] == "ADMIN_SCOPE_REQUIRED"
    # Nothing was created by the refused call.
    assert "sneaky" not in agentok_cli(stack.env, "keys", "list")

    out = agentok_cli(stack.env, "keys", "create", "ops", "--owner", "jane", "--admin")
    admin_key = out.strip().splitlines()[-1]
    with _client(stack, key=admin_key) as http:
        r = http.post("/api-keys", json={"name": "ci", "scope": "SCOPE_ADMIN"})
        assert r.status_code == 200 and r.json()["api_key"]["scope"] == "SCOPE_ADMIN"
        names = {k["name"] for k in http.get("/api-keys").json()["api_keys"]}
        assert names == {"ordinary", "ops", "ci"}


def test_owners_manage_only_their_own_keys(stack: Stack, tokens: TokenFactory) -> None:
    key_id, _ = create_key(stack.env, "kate-key", "kate")
    with _client(stack, token=tokens.token("mallory")) as http:
        assert http.delete(f"/api-keys/{key_id}").status_code == 404
        assert http.get("/api-keys").json()["api_keys"] == []
    assert key_id in agentok_cli(stack.env, "keys", "list")


def test_key_management_over_native_grpc(stack: Stack, tokens: TokenFactory) -> None:
    md = (("authorization", f"Bearer {tokens.token('lena')}"),)
    with grpc.insecure_channel(stack.edge_target) as channel:
        stub = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
        created = stub.CreateApiKey(api_key_service_pb2.CreateApiKeyRequest(name="grpc"), metadata=md, timeout=10)
        assert created.secret.startswith("atk_") and created.api_key.owner == "lena"
        listed = stub.ListApiKeys(api_key_service_pb2.ListApiKeysRequest(), metadata=md, timeout=10)
        assert [k.id for k in listed.api_keys] == [created.api_key.id]
        with pytest.raises(grpc.RpcError) as err:
            stub.ListApiKeys(
                api_key_service_pb2.ListApiKeysRequest(), metadata=(("x-api-key", created.secret),), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_key_minted_by_an_expiring_admin_key_expires_with_it(stack: Stack) -> None:
    out = agentok_cli(stack.env, "keys", "create", "temp-ops", "--owner", "kira", "--admin", "--expires-in", "1h")
    admin_key = out.strip().splitlines()[-1]
    with _client(stack, key=admin_key) as http:
        parent = next(k for k in http.get("/api-keys").json()["api_keys"] if k["name"] == "temp-ops")
        r = http.post("/api-keys", json={"name": "forever"})  # asks for no expiry at all
        assert r.status_code == 200, r.text
        assert r.json()["api_key"]["expires_at"] == parent["expires_at"]
        r = http.post("/api-keys", json={"name": "later", "expires_at": "2999-01-01T00:00:00Z"})
        assert r.status_code == 200 and r.json()["api_key"]["expires_at"] == parent["expires_at"]
