"""The identity the edge established, carried to the server as one signed header.

Envoy strips the API key and the bearer token once they are checked (they need not reach the server in
clear); the check endpoint adds `x-agentok-identity` instead, HMAC-signed with a secret every server
process sharing the database knows, so the server can trust it and nobody else can forge it.

The signed payload carries an expiry: a header copied from a log, a proxy or a packet capture cannot be
replayed straight to the server's port later. The check happens when the request's headers arrive and the
server reads the header once its body has, so the window covers the route's timeout (a slow upload is
still served within it) plus clock differences between hosts (keep clocks synchronized).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from ..domain.errors import Unauthenticated
from ..domain.model import AuthMethod, Identity, KeyScope

HEADER = "x-agentok-identity"
# How far the clocks of the checking host and the serving host may differ (keep them synchronized).
CLOCK_ALLOWANCE_SECONDS = 10.0
# Seconds a signed header stays valid after the check that made it: the server uses the route's timeout
# plus the allowance (app.py), since a request's body may take that long to arrive after the check.
DEFAULT_TTL_SECONDS = 60.0 + CLOCK_ALLOWANCE_SECONDS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# A signed value is minted at most this often per identity and reused in between (its expiry is then up to this
# much nearer than a fresh one's); the server remembers values it verified. Together they take the HMAC, JSON
# and base64 off both ends of every request (a quarter of what auth cost the server per read: make
# bench-profile). Nothing is trusted that was not verified: only values whose MAC checked are remembered, by
# their whole text, and each use still checks the expiry they carry.
REUSE_SECONDS = 1.0
# Distinct values remembered (about one per active identity per second); past it, the memory starts over.
MAX_REMEMBERED = 10_000


class EdgeIdentity:
    def __init__(self, secret: bytes, *, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        self._minted: dict[Identity, tuple[str, float]] = {}
        self._verified: dict[str, tuple[Identity, float]] = {}

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def encode(self, identity: Identity, *, now: float | None = None) -> str:
        """The header's value; `now` (wall-clock seconds) only for tests that need an old header."""
        if now is None:
            wall = time.time()
            minted = self._minted.get(identity)
            if minted is not None and wall < minted[1]:
                return minted[0]
            value = self._sign(identity, wall)
            if len(self._minted) >= MAX_REMEMBERED:
                self._minted.clear()
            self._minted[identity] = (value, wall + REUSE_SECONDS)
            return value
        return self._sign(identity, now)

    def _sign(self, identity: Identity, now: float) -> str:
        expires = round(now + self._ttl, 3)
        payload = _b64(
            json.dumps([identity.owner, identity.method.value, identity.scope.value, identity.key_id, expires]).encode()
        )
        return f"{payload}.{self._mac(payload)}"

    def decode(self, value: str, *, now: float | None = None) -> Identity:
        """The identity; Unauthenticated if the header was not signed with our secret, is malformed or expired."""
        known = self._verified.get(value)
        if known is None:
            known = self._verify(value)
            if len(self._verified) >= MAX_REMEMBERED:
                self._verified.clear()
            self._verified[value] = known
        identity, expires = known
        if (time.time() if now is None else now) > expires:
            # Signed by us but old: a replay, or this host's clock is far from the checking host's.
            raise Unauthenticated(
                "expired edge identity header (replayed, or the hosts' clocks differ)",
                reason="EDGE_IDENTITY_EXPIRED",
            )
        return identity

    def _verify(self, value: str) -> tuple[Identity, float]:
        """The identity a value names and its expiry, if our secret signed it."""
        payload, _, mac = value.partition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise Unauthenticated("invalid edge identity header", reason="EDGE_IDENTITY_INVALID")
        try:
            owner, method, scope, key_id, expires = json.loads(_unb64(payload))
            identity = Identity(owner=owner, method=AuthMethod(method), scope=KeyScope(scope), key_id=key_id)
            expires = float(expires)
        except (ValueError, TypeError):
            raise Unauthenticated("invalid edge identity header", reason="EDGE_IDENTITY_INVALID") from None
        return identity, expires
