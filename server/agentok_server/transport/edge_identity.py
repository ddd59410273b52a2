"""The identity the edge established, carried to the server as one signed header.

Envoy strips the API key and the bearer token once they are checked (they need not reach the server in
clear); the check endpoint adds `x-agentok-identity` instead, HMAC-signed with a secret every server
process sharing the database knows, so the server can trust it and nobody else can forge it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from ..domain.model import AuthMethod, Identity, KeyScope

HEADER = "x-agentok-identity"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class EdgeIdentity:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def encode(self, identity: Identity) -> str:
        payload = _b64(
            json.dumps([identity.owner, identity.method.value, identity.scope.value, identity.key_id]).encode()
        )
        return f"{payload}.{self._mac(payload)}"

    def decode(self, value: str) -> Identity | None:
        """The identity, or None if the header was not signed with our secret (or is malformed)."""
        payload, _, mac = value.partition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            owner, method, scope, key_id = json.loads(_unb64(payload))
            return Identity(owner=owner, method=AuthMethod(method), scope=KeyScope(scope), key_id=key_id)
        except (ValueError, TypeError):
            return None
