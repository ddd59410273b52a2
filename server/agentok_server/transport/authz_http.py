"""Envoy's ext_authz over HTTP: Envoy asks this small loopback endpoint about every request.

HTTP/1.1 over kept-alive connections, parsed by httptools (the C parser behind uvicorn), costs the server a
fraction of a gRPC call per check, and the check runs on every request through the edge.

A bearer token has already been verified by Envoy's jwt_authn when the request gets here: its payload
arrives in `x-jwt-payload` (Envoy removes any such header a client sends). Otherwise the API key decides.
A request carrying both is refused (CREDENTIALS_AMBIGUOUS): they may name different owners.
An allowed request gets the signed identity header, and Envoy drops the key and the payload before the
request goes on: the server needs neither in clear.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import httptools

from ..domain.errors import Unauthenticated
from ..domain.keys import KeyService, ambiguous_credentials
from ..domain.model import AuthMethod, Identity, KeyScope
from .edge_identity import HEADER, EdgeIdentity
from .errors import ERROR_DOMAIN

JWT_PAYLOAD_HEADER = b"x-jwt-payload"
# Envoy adds this to every check request (never a client: it is not among the forwarded headers): the longest
# remaining lifetime, in seconds, a bearer token may have.
MAX_TOKEN_LIFETIME_HEADER = "x-agentok-token-max-lifetime"
DEFAULT_MAX_LIFETIME_SECONDS = 24 * 3600
# jwt_authn's own allowance for clocks that differ (clock_skew_seconds in the Envoy config).
CLOCK_SKEW_SECONDS = 30
# Envoy's health checker asks this path. Its check requests all start with CHECK_PREFIX (the http_service's
# path_prefix), so no client request can ever be answered by the health route.
HEALTH_PATH = b"/healthz"
CHECK_PREFIX = "/check"
# Envoy removes these from the request once the check allowed it.
_REMOVE = b"x-envoy-auth-headers-to-remove: x-api-key," + JWT_PAYLOAD_HEADER + b"\r\n"

_MAX_LIFETIME = MAX_TOKEN_LIFETIME_HEADER.encode()

log = logging.getLogger(__name__)
UNAUTHENTICATED = 16


def deny_body(err: Unauthenticated) -> bytes:
    # The same shape as the transcoder's gRPC error bodies, so REST clients parse one error format.
    return json.dumps(
        {
            "code": UNAUTHENTICATED,
            "message": err.message,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": err.reason, "domain": ERROR_DOMAIN}
            ],
        }
    ).encode()


def _response(status: int, body: bytes = b"", content_type: bytes = b"", extra: bytes = b"") -> bytes:
    reason = b"OK" if status == 200 else b"Unauthorized"
    head = b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n" % (status, reason, len(body))
    if content_type:
        head += b"content-type: " + content_type + b"\r\n"
    return head + extra + b"\r\n" + body


def token_identity(
    payload: bytes, max_lifetime: int = DEFAULT_MAX_LIFETIME_SECONDS, now: float | None = None
) -> Identity:
    """The identity of a token jwt_authn verified (signature, issuer, audience, exp and nbf if present): its
    subject is the owner. Here, the lifetime rules: a token must expire, and within `max_lifetime` seconds,
    so a leaked one stops working (jwt_authn's own checks would refuse with a reason-less message)."""
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    except ValueError:
        raise Unauthenticated("unreadable token payload", reason="TOKEN_INVALID") from None
    if not isinstance(claims, dict):
        raise Unauthenticated("unreadable token payload", reason="TOKEN_INVALID")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the bearer token has no subject (sub claim)", reason="TOKEN_NO_SUBJECT")
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise Unauthenticated(
            f"bearer token refused: it has no expiry (exp claim); tokens must expire within {max_lifetime} s",
            reason="TOKEN_NO_EXPIRY",
        )
    remaining = expires - (time.time() if now is None else now)
    if remaining > max_lifetime + CLOCK_SKEW_SECONDS:
        raise Unauthenticated(
            f"bearer token refused: it expires in {int(remaining)} s, more than the {max_lifetime} s allowed",
            reason="TOKEN_LIFETIME_TOO_LONG",
            metadata={"max_lifetime_seconds": str(max_lifetime)},
        )
    return Identity(owner=subject, method=AuthMethod.BEARER, scope=KeyScope.ADMIN)


def _max_lifetime(value: bytes | None) -> int:
    try:
        return int(value) if value is not None else DEFAULT_MAX_LIFETIME_SECONDS
    except ValueError:
        return DEFAULT_MAX_LIFETIME_SECONDS


class _CheckProtocol(asyncio.Protocol):
    """One Envoy connection; requests on it are answered in order (Envoy does not pipeline)."""

    def __init__(self, keys: KeyService, edge: EdgeIdentity) -> None:
        self._keys = keys
        self._edge = edge
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._api_key: bytes | None = None
        self._jwt_payload: bytes | None = None
        self._content_type = b""
        self._max_lifetime: bytes | None = None
        self._url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            log.warning("bad request on the ext_authz endpoint: %s", exc)
            assert self._transport is not None
            self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._api_key = None
        self._jwt_payload = None
        self._content_type = b""
        self._max_lifetime = None
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"x-api-key":
            self._api_key = value
        elif lower == JWT_PAYLOAD_HEADER:
            self._jwt_payload = value
        elif lower == b"content-type":
            self._content_type = value
        elif lower == _MAX_LIFETIME:
            self._max_lifetime = value

    def on_message_complete(self) -> None:
        if self._url == HEALTH_PATH:
            assert self._transport is not None
            self._transport.write(_response(200, b"ok", b"text/plain"))
            return
        asyncio.ensure_future(
            self._answer(self._api_key, self._jwt_payload, self._content_type, _max_lifetime(self._max_lifetime))
        )

    async def _answer(
        self, api_key: bytes | None, jwt_payload: bytes | None, content_type: bytes, max_lifetime: int
    ) -> None:
        try:
            if jwt_payload is not None and api_key is not None:
                raise ambiguous_credentials()
            if jwt_payload is not None:
                identity = token_identity(jwt_payload, max_lifetime)
            else:
                identity = await self._keys.authenticate(api_key.decode() if api_key is not None else None)
            signed = HEADER.encode() + b": " + self._edge.encode(identity).encode() + b"\r\n"
            reply = _response(200, extra=signed + _REMOVE)
        except Unauthenticated as err:
            # Native gRPC callers get plain text: Envoy turns the denial into their grpc-message.
            # (REST calls are checked before transcoding, so their content type is not grpc.)
            if content_type.startswith(b"application/grpc"):
                reply = _response(401, err.message.encode(), b"text/plain")
            else:
                reply = _response(401, deny_body(err), b"application/json")
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(reply)


class AuthzHttpServer:
    def __init__(self, keys: KeyService, edge: EdgeIdentity) -> None:
        self._keys = keys
        self._edge = edge
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _CheckProtocol(self._keys, self._edge), host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
