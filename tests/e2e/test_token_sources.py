"""Where Envoy gets token signing keys: the development key pair (`agentok token`) or a remote JWKS URI."""

from __future__ import annotations

import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from agentok_server.devjwt import ensure_dev_keys
from agentok_server.edge.envoy_process import EnvoyProcess
from agentok_server.edge.envoy_tokens import SYSTEM_CA_FILE, JwtConfig

from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, agentok_cli, free_port
from ..support.tokens import AUDIENCE, ISSUER, TokenFactory


def _serve_jwks(body: bytes, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    """A JWKS endpoint on a free loopback port (over TLS with `tls`), serving `body` to every GET."""

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
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd

def test_agentok_token_signs_tokens_the_default_config_trusts(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    jwks = ensure_dev_keys(tmp_path / "data" / "dev-jwt")  # what `make run` does
    stack = Stack(tmp_path, llm_server.base_url, jwt=JwtConfig("agentok-dev", "agentok", jwks_file=jwks)).start()
    try:
        token = agentok_cli(stack.env, "token", "--subject", "nina", "--ttl", "5m").strip()
        r = httpx.get(f"{stack.rest_url}/chats", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == []
    finally:
        stack.stop()


def test_a_remote_jwks_uri(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    tokens = TokenFactory(tmp_path / "keys")
    body = tokens.jwks_file.read_bytes()

    httpd = _serve_jwks(body)
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


def _ca_and_server_cert(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) PEM files: a test CA, and a cert it signed for `host`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentok test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_an_https_jwks_is_fetched_only_from_a_verified_server(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    tokens = TokenFactory(tmp_path / "keys")
    body = tokens.jwks_file.read_bytes()
    ca_file, cert_file, key_file = _ca_and_server_cert(tmp_path / "tls", "localhost")

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    httpd = _serve_jwks(body, tls)
    port = httpd.server_address[1]

    def jwt(uri: str, ca: Path | None) -> JwtConfig:
        return JwtConfig(ISSUER, AUDIENCE, jwks_uri=uri, jwks_ca_file=ca or SYSTEM_CA_FILE)

    # The stack trusts the test CA; two more Envoys in front of the same server do not trust the certificate:
    # one trusts only the system bundle (the default), one reaches the server under a name the certificate
    # does not carry (127.0.0.1, where it names localhost).
    stack = Stack(tmp_path / "stack", llm_server.base_url, jwt=jwt(f"https://localhost:{port}/jwks", ca_file))
    stack.start()
    untrusted = [
        EnvoyProcess(
            work_dir=tmp_path / name,
            listen_host="127.0.0.1",
            listen_port=free_port(),
            upstream_host="127.0.0.1",
            upstream_port=stack.server.port,
            authz_port=stack.server.authz_port,
            jwt=jwt(uri, ca),
            check_secret=stack.check_secret,
        )
        for name, uri, ca in (
            ("system-ca", f"https://localhost:{port}/jwks", None),
            ("wrong-name", f"https://127.0.0.1:{port}/jwks", ca_file),
        )
    ]
    try:
        for envoy in untrusted:
            envoy.start()
        bearer = {"Authorization": f"Bearer {tokens.token('pia')}"}
        ok = httpx.get(f"{stack.rest_url}/chats", headers=bearer)
        assert ok.status_code == 200, ok.text
        for envoy in untrusted:
            refused = httpx.get(f"{envoy.url}/chats", headers=bearer)
            assert refused.status_code == 401, (envoy.work_dir.name, refused.text)
            assert "Jwks remote fetch is failed" in refused.json()["message"], refused.text
    finally:
        for envoy in untrusted:
            envoy.stop()
        stack.stop()
        httpd.shutdown()
