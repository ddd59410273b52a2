"""A local development key pair for bearer tokens: `make run` creates it, Envoy trusts its JWKS by default,
and `agentok token` signs short-lived tokens with it. Production points Envoy at a real issuer instead."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

PRIVATE_KEY = "private.pem"
JWKS = "jwks.json"


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Writes `data` to `path` via a temporary file created with `mode`, then renamed over `path`.

    The file never exists with wider permissions (no write-then-chmod window), and a crash leaves either
    the old file or the new one, never half a key.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_dev_keys(directory: Path) -> Path:
    """Creates the key pair and its JWKS once; returns the JWKS file's path."""
    jwks_path = directory / JWKS
    private_path = directory / PRIVATE_KEY
    if jwks_path.exists() and private_path.exists():
        return jwks_path
    # 0700 for the data directory too (it holds the database and its edge-identity secret), if we make it.
    directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.mkdir(mode=0o700, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # The private key first: the JWKS appearing last is what marks the pair complete (see the check above).
    _write_atomically(private_path, pem, 0o600)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid=uuid.uuid4().hex[:16], alg="RS256", use="sig")
    _write_atomically(jwks_path, json.dumps({"keys": [public]}, indent=2).encode(), 0o644)
    return jwks_path


def sign_dev_token(directory: Path, *, issuer: str, audience: str, subject: str, ttl_seconds: int) -> str:
    private_path = directory / PRIVATE_KEY
    if not private_path.exists():
        raise FileNotFoundError(f"no development key pair in {directory}: run `make run` once (it creates one)")
    kid = json.loads((directory / JWKS).read_text())["keys"][0]["kid"]
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "nbf": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, private_path.read_bytes(), algorithm="RS256", headers={"kid": kid})
