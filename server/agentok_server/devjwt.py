"""A local development key pair for bearer tokens: `make run` creates it, Envoy trusts its JWKS by default,
and `agentok token` signs short-lived tokens with it. Production points Envoy at a real issuer instead."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

PRIVATE_KEY = "private.pem"
JWKS = "jwks.json"


def ensure_dev_keys(directory: Path) -> Path:
    """Creates the key pair and its JWKS once; returns the JWKS file's path."""
    jwks_path = directory / JWKS
    private_path = directory / PRIVATE_KEY
    if jwks_path.exists() and private_path.exists():
        return jwks_path
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.write_bytes(pem)
    private_path.chmod(0o600)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid=uuid.uuid4().hex[:16], alg="RS256", use="sig")
    jwks_path.write_text(json.dumps({"keys": [public]}, indent=2))
    return jwks_path


def sign_dev_token(directory: Path, *, issuer: str, audience: str, subject: str, ttl_seconds: int) -> str:
    private_path = directory / PRIVATE_KEY
    if not private_path.exists():
        raise FileNotFoundError(f"no development key pair in {directory}: run `make run` once (it creates one)")
    kid = json.loads((directory / JWKS).read_text())["keys"][0]["kid"]
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "nbf": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, private_path.read_bytes(), algorithm="RS256", headers={"kid": kid})
