"""What reaches the server through Envoy: the signed identity, never the API key or the bearer token.

The upstream here is a recording ChatService (to see the metadata that arrives), behind the real Envoy and
the real key-check endpoint of the server code, over real sockets.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from agentok.v1 import chat_service_pb2, chat_service_pb2_grpc
from agentok_server.domain.keys import KeyService
from agentok_server.edge.envoy_config import JwtConfig
from agentok_server.edge.envoy_process import EnvoyProcess
from agentok_server.storage.repository import Repository, make_engine
from agentok_server.transport.authz_http import AuthzHttpServer, CheckPolicy
from agentok_server.transport.edge_identity import HEADER, EdgeIdentity

from ..support.stack import free_port
from ..support.tokens import AUDIENCE, ISSUER, TokenFactory


class _Recorder(chat_service_pb2_grpc.ChatServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    async def ListChats(
        self, request: chat_service_pb2.ListChatsRequest, context: grpc.aio.ServicerContext
    ) -> chat_service_pb2.ListChatsResponse:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        return chat_service_pb2.ListChatsResponse()


@pytest.fixture()
async def edge(tokens: TokenFactory) -> AsyncIterator[tuple[str, _Recorder, str, EdgeIdentity]]:
    root = Path(tempfile.mkdtemp())
    repo = Repository(make_engine(f"sqlite:///{root / 'db.sqlite'}"))
    await repo.create_schema()
    keys = KeyService(repo, cache_seconds=1)
    _, secret = await keys.create("olga", "k")
    identity = EdgeIdentity(b"test-secret")
    authz = AuthzHttpServer(keys, identity, CheckPolicy(check_secret="edge-test-check-secret"))
    authz_port = await authz.start("127.0.0.1", 0)
    recorder = _Recorder()
    server = grpc.aio.server()
    chat_service_pb2_grpc.add_ChatServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    envoy = EnvoyProcess(
        work_dir=root / "envoy",
        listen_host="127.0.0.1",
        listen_port=free_port(),
        upstream_host="127.0.0.1",
        upstream_port=port,
        authz_port=authz_port,
        jwt=JwtConfig(ISSUER, AUDIENCE, jwks_file=tokens.jwks_file),
        check_secret="edge-test-check-secret",
    )
    await asyncio.to_thread(envoy.start)
    try:
        yield envoy.url, recorder, secret, identity
    finally:
        envoy.stop()
        await server.stop(0)
        await authz.stop()
        await repo.dispose()


async def test_key_and_token_are_not_forwarded(
    edge: tuple[str, _Recorder, str, EdgeIdentity], tokens: TokenFactory
) -> None:
    url, recorder, secret, identity = edge
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/chats", headers={"X-API-KEY": secret})).status_code == 200
        bearer = {"Authorization": f"Bearer {tokens.token('olga')}"}
        assert (await http.get("/chats", headers=bearer)).status_code == 200
    by_key, by_token = recorder.metadata
    for seen in (by_key, by_token):
        assert "x-api-key" not in seen and "authorization" not in seen and "x-jwt-payload" not in seen
        assert secret not in str(seen)
    key_identity, token_identity = identity.decode(by_key[HEADER]), identity.decode(by_token[HEADER])
    assert key_identity.owner == "olga" and key_identity.method.value == "api_key"
    assert token_identity.owner == "olga" and token_identity.method.value == "bearer"


async def test_no_authorization_header_reaches_the_server_in_any_form(
    edge: tuple[str, _Recorder, str, EdgeIdentity], tokens: TokenFactory
) -> None:
    url, recorder, secret, identity = edge
    token = tokens.token("olga")
    async with httpx.AsyncClient(base_url=url) as http:
        # The scheme is case-insensitive: a lowercase `bearer` token is verified (and dropped) like `Bearer`.
        assert (await http.get("/chats", headers={"authorization": f"bearer {token}"})).status_code == 200
        # Another scheme beside a key is refused at the edge (not ignored in favour of the key): nothing of it,
        # nor of the key, goes on.
        basic = {"Authorization": "Basic dXNlcjpwYXNz", "X-API-KEY": secret}
        refused = await http.get("/chats", headers=basic)
        assert refused.status_code == 401, refused.text
        assert refused.json()["details"][0]["reason"] == "AUTHORIZATION_SCHEME_UNSUPPORTED"
    (by_lowercase_token,) = recorder.metadata
    seen = by_lowercase_token
    assert "authorization" not in seen and "x-api-key" not in seen and "x-jwt-payload" not in seen
    assert token not in str(seen) and secret not in str(seen) and "dXNlcjpwYXNz" not in str(seen)
    assert identity.decode(by_lowercase_token[HEADER]).method.value == "bearer"


async def test_a_key_and_a_token_together_are_refused(
    edge: tuple[str, _Recorder, str, EdgeIdentity], tokens: TokenFactory
) -> None:
    url, recorder, secret, _ = edge
    async with httpx.AsyncClient(base_url=url) as http:
        for scheme in ("Bearer", "bearer"):
            headers = {"Authorization": f"{scheme} {tokens.token('olga')}", "X-API-KEY": secret}
            r = await http.get("/chats", headers=headers)
            assert r.status_code == 401, (scheme, r.text)
            body = r.json()
            assert body["code"] == 16 and "send one credential" in body["message"]
            assert body["details"][0]["reason"] == "CREDENTIALS_AMBIGUOUS"
    assert recorder.metadata == []  # nothing reached the service


async def test_no_client_is_internal_so_its_envoy_control_headers_go_nowhere(
    edge: tuple[str, _Recorder, str, EdgeIdentity],
) -> None:
    """Envoy trusts x-envoy-* headers (timeouts, retries) only from "internal" clients; at the edge none is,
    even on loopback."""
    url, recorder, secret, _ = edge
    forged = {"x-envoy-max-retries": "5", "x-envoy-upstream-rq-timeout-ms": "1", "x-envoy-internal": "true"}
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/chats", headers={"X-API-KEY": secret, **forged})).status_code == 200
    (seen,) = recorder.metadata
    # What Envoy itself adds (the transcoder's original path and method, the external address) is all there is.
    assert not set(forged) & set(seen), seen
