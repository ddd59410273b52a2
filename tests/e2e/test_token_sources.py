"""Where Envoy gets token signing keys: the development key pair (`agentok token`) or a remote JWKS URI."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from agentok_server.devjwt import ensure_dev_keys
from agentok_server.edge.envoy_config import JwtConfig

from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, agentok_cli
from ..support.tokens import AUDIENCE, ISSUER, TokenFactory


def test_agentok_token_signs_tokens_the_default_config_trusts(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    jwks = ensure_dev_keys(tmp_path / "data" / "dev-jwt")  # what `make run` does
    stack = Stack(tmp_path, llm_server.base_url, jwt=JwtConfig("agentok-dev", "agentok", jwks_file=jwks)).start()
    try:
        token = agentok_cli(stack.env, "token", "--subject", "nina", "--ttl", "5m").strip()
        r = httpx.get(f"{stack.rest_url}/chats", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["chats"] == []
    finally:
        stack.stop()


def test_a_remote_jwks_uri(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    tokens = TokenFactory(tmp_path / "keys")
    body = tokens.jwks_file.read_bytes()

    class Jwks(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{httpd.server_address[1]}/.well-known/jwks.json"
    stack = Stack(tmp_path / "stack", llm_server.base_url, jwt=JwtConfig(ISSUER, AUDIENCE, jwks_uri=uri)).start()
    try:
        ok = httpx.get(f"{stack.rest_url}/chats", headers={"Authorization": f"Bearer {tokens.token('omar')}"})
        assert ok.status_code == 200, ok.text
        bad = httpx.get(
            f"{stack.rest_url}/chats",
            headers={"Authorization": f"Bearer {tokens.token('omar', signer=tokens.stranger)}"},
        )
        assert bad.status_code == 401 and "verification fails" in bad.json()["message"]
    finally:
        stack.stop()
        httpd.shutdown()
