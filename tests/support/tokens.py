"""Bearer tokens for tests: the tests' own RSA key pairs and JWKS file, signed with PyJWT."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://issuer.test"
AUDIENCE = "agentok-tests"


class TokenFactory:
    def __init__(self, directory: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the JWKS
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="test-key", alg="RS256", use="sig")
        directory.mkdir(parents=True, exist_ok=True)
        self.jwks_file = directory / "jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [jwk]}))

    def claims(self, subject: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, subject: str, *, signer: Any = None, **overrides: Any) -> str:
        return jwt.encode(
            self.claims(subject, **overrides), signer or self.key, algorithm="RS256", headers={"kid": "test-key"}
        )

    def unsigned(self, subject: str) -> str:
        """An `alg: none` token: header and claims, no signature."""

        def part(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

        # With a (meaningless) third part, so the refusal is about the algorithm, not the token's shape.
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(self.claims(subject))}.c2ln"
