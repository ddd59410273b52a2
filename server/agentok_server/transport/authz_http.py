"""Envoy's ext_authz over HTTP: Envoy asks this small loopback endpoint about every request.

HTTP/1.1 over kept-alive connections, parsed by httptools (the C parser behind uvicorn), costs the server a
fraction of a gRPC call per check, and the check runs on every request through the edge.

Who may ask: only Envoy. The endpoint mints signed identities, so anyone who could ask it directly could
be anybody. Envoy adds a per-deployment secret (`x-agentok-check-secret`, stored in the database like the
identity-signing secret, rendered into Envoy's config) to every check request, set by ext_authz itself (a
client's header of that name is dropped at the edge and never among the headers ext_authz forwards); a
check request without it, or with a wrong one (compared in constant time), is refused 403 before anything
in it is read. A shared secret, rather than a Unix socket, because it holds for replicas on several hosts
as well as for one.

What it trusts: a bearer token has already been verified by Envoy's jwt_authn when the request gets here:
its payload arrives in `x-jwt-payload` (Envoy removes any such header a client sends, and the payload is
only believed from a request that carries the secret). Otherwise the API key decides. A request carrying
both is refused (CREDENTIALS_AMBIGUOUS): they may name different owners. An `Authorization` header that
reaches the check was not a bearer token jwt_authn took (another scheme, or tokens switched off): refused
rather than ignored, or a key beside it would silently win. The token lifetime rule comes from this server's
settings, never from the request. An allowed request gets the signed identity header, and Envoy drops the
key and the payload before the request goes on: the server needs neither in clear.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass

import httptools

from ..domain.errors import Unauthenticated
from ..domain.keys import KeyService, ambiguous_credentials
from ..domain.model import AuthMethod, Identity, KeyScope
from ..domain.text import is_clean_text
from .edge_identity import HEADER, EdgeIdentity
from .errors import ERROR_DOMAIN

JWT_PAYLOAD_HEADER = b"x-jwt-payload"
# Set by Envoy's ext_authz on every check request (authorization_request.headers_to_add): proof that the
# request comes from the edge. Its value is the server secret named CHECK_SECRET_NAME.
CHECK_SECRET_HEADER = "x-agentok-check-secret"
CHECK_SECRET_NAME = "authz-check"
# The client request's content type, copied by Envoy under this name (never as content-type itself: a check
# request that says application/grpc gets gRPC-style local replies from Envoy's own HTTP client, so a check
# that timed out came back as HTTP 200 + grpc-status 14, which ext_authz took for an allow).
CLIENT_CONTENT_TYPE_HEADER = "x-agentok-client-content-type"
DEFAULT_MAX_LIFETIME_SECONDS = 24 * 3600
# jwt_authn's own allowance for clocks that differ (clock_skew_seconds in the Envoy config).
CLOCK_SKEW_SECONDS = 30
# Envoy's health checker asks this path. Its check requests all start with CHECK_PREFIX (the http_service's
# path_prefix), so no client request can ever be answered by the health route.
HEALTH_PATH = b"/healthz"
CHECK_PREFIX = "/check"
# Envoy removes these from the request once the check allowed it.
_REMOVE = b"x-envoy-auth-headers-to-remove: x-api-key," + JWT_PAYLOAD_HEADER + b"\r\n"
# Every header whose value is internal to the deployment: a client's copies are dropped at the edge
# (envoy.yaml.tmpl's header_mutation), and the server port never trusts any but the signed identity.
INTERNAL_HEADERS = (JWT_PAYLOAD_HEADER.decode(), HEADER, CHECK_SECRET_HEADER, CLIENT_CONTENT_TYPE_HEADER)

_CHECK_SECRET = CHECK_SECRET_HEADER.encode()
_CLIENT_CONTENT_TYPE = CLIENT_CONTENT_TYPE_HEADER.encode()

log = logging.getLogger(__name__)
UNAUTHENTICATED = 16


PERMISSION_DENIED = 7


def new_check_secret() -> str:
    return secrets.token_urlsafe(32)


def deny_body(err: Unauthenticated, code: int = UNAUTHENTICATED) -> bytes:
    # The same shape as the transcoder's gRPC error bodies, so REST clients parse one error format.
    return json.dumps(
        {
            "code": code,
            "message": err.message,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": err.reason, "domain": ERROR_DOMAIN}
            ],
        }
    ).encode()


_REASONS = {200: b"OK", 401: b"Unauthorized", 403: b"Forbidden"}


def _response(status: int, body: bytes = b"", content_type: bytes = b"", extra: bytes = b"") -> bytes:
    reason = _REASONS.get(status, b"Error")
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
    if not is_clean_text(subject):  # the owner is stored with every chat: NUL is refused everywhere
        raise Unauthenticated("the bearer token's subject (sub claim) contains NUL", reason="TOKEN_INVALID")
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


def unsupported_authorization(tokens_enabled: bool) -> Unauthenticated:
    if not tokens_enabled:
        return Unauthenticated(
            "bearer tokens are not accepted by this server: send an API key (X-API-KEY)",
            reason="TOKENS_DISABLED",
        )
    return Unauthenticated(
        "the Authorization header was not understood: send `Authorization: Bearer <token>` or an API key",
        reason="AUTHORIZATION_SCHEME_UNSUPPORTED",
    )


_NOT_FROM_EDGE = Unauthenticated(
    "this endpoint answers only the edge (Envoy): send requests to the public listener",
    reason="CHECK_NOT_FROM_EDGE",
)


@dataclass(frozen=True)
class CheckPolicy:
    """What the check endpoint enforces besides credentials: who may ask, and the token rules."""

    check_secret: str
    max_token_lifetime: int = DEFAULT_MAX_LIFETIME_SECONDS
    tokens_enabled: bool = True


class _CheckProtocol(asyncio.Protocol):
    """One Envoy connection; requests on it are answered in order (Envoy does not pipeline)."""

    def __init__(self, keys: KeyService, edge: EdgeIdentity, policy: CheckPolicy) -> None:
        self._keys = keys
        self._edge = edge
        self._policy = policy
        self._secret = policy.check_secret.encode()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._api_key: bytes | None = None
        self._jwt_payload: bytes | None = None
        self._authorization = False
        self._content_type = b""
        self._from_edge = False
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
        self._authorization = False
        self._content_type = b""
        self._from_edge = False
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"x-api-key":
            self._api_key = value
        elif lower == JWT_PAYLOAD_HEADER:
            self._jwt_payload = value
        elif lower == _CLIENT_CONTENT_TYPE:
            self._content_type = value
        elif lower == b"authorization":
            self._authorization = True
        elif lower == _CHECK_SECRET:
            # Constant time: the comparison must not tell a prober how much of a guess was right.
            self._from_edge = hmac.compare_digest(value, self._secret)

    def on_message_complete(self) -> None:
        assert self._transport is not None
        if self._url == HEALTH_PATH:
            self._transport.write(_response(200, b"ok", b"text/plain"))
            return
        if not self._from_edge:
            # Nothing else in the request is looked at: only Envoy may obtain an identity here.
            self._transport.write(_response(403, deny_body(_NOT_FROM_EDGE, PERMISSION_DENIED), b"application/json"))
            return
        asyncio.ensure_future(self._answer(self._api_key, self._jwt_payload, self._authorization, self._content_type))

    async def _answer(
        self, api_key: bytes | None, jwt_payload: bytes | None, authorization: bool, content_type: bytes
    ) -> None:
        try:
            if authorization:
                raise unsupported_authorization(self._policy.tokens_enabled)
            if jwt_payload is not None and api_key is not None:
                raise ambiguous_credentials()
            if jwt_payload is not None:
                identity = token_identity(jwt_payload, self._policy.max_token_lifetime)
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


# Envoy opens one HTTP/1.1 connection per concurrent check (its pool for this cluster is capped in the
# config): a burst of new streams must find room in the accept queue rather than time out connecting.
LISTEN_BACKLOG = 4096


class AuthzHttpServer:
    def __init__(self, keys: KeyService, edge: EdgeIdentity, policy: CheckPolicy) -> None:
        self._keys = keys
        self._edge = edge
        self._policy = policy
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _CheckProtocol(self._keys, self._edge, self._policy), host, port, backlog=LISTEN_BACKLOG
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
