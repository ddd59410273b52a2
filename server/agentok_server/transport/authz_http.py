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

What else it refuses, once the caller is known (REST only: body_check.py): a body field the API does not
know (400 UNKNOWN_FIELD; ext_authz sends REST bodies, with_request_body), and a method no route of the path
takes (405 METHOD_NOT_ALLOWED with Allow; the transcoder would say 404, as for a path that does not exist).

Every refusal carries a google.rpc.Status: REST callers get it as the transcoder's JSON shape; native gRPC
callers get its message as text (Envoy makes it the grpc-message) and the status itself in
`grpc-status-details-bin`, which Envoy copies onto its trailers-only reply, so rpc_status.from_call finds
the ErrorInfo there as it does on the server's own errors.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import cast

import httptools
from google.rpc import code_pb2, status_pb2

from ..domain.errors import DomainError, InvalidArgument, Unauthenticated
from ..domain.keys import KeyService, ambiguous_credentials
from ..domain.model import AuthMethod, Identity, KeyScope
from ..domain.text import is_clean_text
from .body_check import THREAD_THRESHOLD, RestRoutes, unknown_fields
from .edge_identity import HEADER, EdgeIdentity
from .errors import edge_status, grpc_details_header, rest_error_body, status_proto

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


def new_check_secret() -> str:
    return secrets.token_urlsafe(32)


def deny_body(err: DomainError, code: int | None = None) -> bytes:
    """The REST body of a refusal: the same shape as the transcoder's gRPC error bodies, so REST clients parse
    one error format (`code` overrides the one err's class maps to)."""
    status = status_proto(err)
    if code is not None:
        status.code = code
    return rest_error_body(status)


_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 405: b"Method Not Allowed"}


def _response(
    status: int, body: bytes = b"", content_type: bytes = b"", extra: bytes = b"", head: bool = False
) -> bytes:
    """One HTTP/1.1 response. `head`: the check of a HEAD request, whose answer Envoy reads without a body."""
    reason = _REASONS.get(status, b"Error")
    head_lines = b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n" % (status, reason, len(body))
    if content_type:
        head_lines += b"content-type: " + content_type + b"\r\n"
    return head_lines + extra + b"\r\n" + (b"" if head else body)


def refusal(http_status: int, status: status_pb2.Status, grpc: bool, extra: bytes = b"", head: bool = False) -> bytes:
    """The check's answer refusing a request with `status`: JSON for REST; for native gRPC the message as text
    (Envoy makes the body the grpc-message) and the whole status in grpc-status-details-bin."""
    if grpc:
        details = b"grpc-status-details-bin: " + grpc_details_header(status).encode() + b"\r\n"
        return _response(http_status, status.message.encode(), b"text/plain", extra + details, head)
    return _response(http_status, rest_error_body(status), b"application/json", extra, head)


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


@dataclass
class _Request:
    """What the check reads of one check request: the client's credentials, method, path and body."""

    method: bytes = b""
    url: bytes = b""
    api_key: bytes | None = None
    jwt_payload: bytes | None = None
    authorization: bool = False
    content_type: bytes = b""
    from_edge: bool = False
    body: bytearray = field(default_factory=bytearray)

    @property
    def grpc(self) -> bool:
        # REST calls are checked before transcoding, so their content type is not grpc.
        return self.content_type.startswith(b"application/grpc")

    @property
    def path(self) -> str:
        """The client's own path (and query): the check's, less the prefix Envoy put before it."""
        return self.url.decode("latin-1").removeprefix(CHECK_PREFIX) or "/"


class _CheckProtocol(asyncio.Protocol):
    """One Envoy connection; requests on it are answered in order (Envoy does not pipeline)."""

    def __init__(self, keys: KeyService, edge: EdgeIdentity, policy: CheckPolicy, routes: RestRoutes) -> None:
        self._keys = keys
        self._edge = edge
        self._policy = policy
        self._routes = routes
        self._secret = policy.check_secret.encode()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._request = _Request()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not an asyncio.Transport subclass under uvloop (whose classes are its own).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            log.warning("bad request on the ext_authz endpoint: %s", exc)
            assert self._transport is not None
            self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._request = _Request()

    def on_url(self, url: bytes) -> None:
        self._request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        request = self._request
        if lower == b"x-api-key":
            request.api_key = value
        elif lower == JWT_PAYLOAD_HEADER:
            request.jwt_payload = value
        elif lower == _CLIENT_CONTENT_TYPE:
            request.content_type = value
        elif lower == b"authorization":
            request.authorization = True
        elif lower == _CHECK_SECRET:
            # Constant time: the comparison must not tell a prober how much of a guess was right.
            request.from_edge = hmac.compare_digest(value, self._secret)

    def on_body(self, body: bytes) -> None:
        # Only a request from the edge may make the server hold a body (Envoy caps it: with_request_body).
        if self._request.from_edge:
            self._request.body += body

    def on_message_complete(self) -> None:
        assert self._transport is not None
        request = self._request
        request.method = self._parser.get_method()
        if request.url == HEALTH_PATH:
            self._transport.write(_response(200, b"ok", b"text/plain"))
            return
        if not request.from_edge:
            # Nothing else in the request is looked at: only Envoy may obtain an identity here.
            self._transport.write(
                _response(403, deny_body(_NOT_FROM_EDGE, code_pb2.PERMISSION_DENIED), b"application/json")
            )
            return
        asyncio.ensure_future(self._answer(request))

    async def _answer(self, request: _Request) -> None:
        head = request.method == b"HEAD"
        try:
            if request.jwt_payload is not None or request.authorization:
                identity = self._token_identity(request)
            else:
                key = request.api_key
                identity = await self._keys.authenticate(key.decode() if key is not None else None)
            signed = HEADER.encode() + b": " + self._edge.encode(identity).encode() + b"\r\n"
            reply = (await self._refusal(request)) or _response(200, extra=signed + _REMOVE)
        except Unauthenticated as err:
            reply = refusal(401, status_proto(err), request.grpc, head=head)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(reply)

    def _token_identity(self, request: _Request) -> Identity:
        """The identity of a verified bearer token; any other use of Authorization is refused."""
        if request.authorization:
            raise unsupported_authorization(self._policy.tokens_enabled)
        if request.api_key is not None:
            raise ambiguous_credentials()
        assert request.jwt_payload is not None
        return token_identity(request.jwt_payload, self._policy.max_token_lifetime)

    async def _refusal(self, request: _Request) -> bytes | None:
        """What the transcoder would let through but the API does not take (REST only): a method the path is
        not served with, a body field that names nothing. None: the request may go on."""
        if request.grpc:
            return None
        method = request.method.decode("latin-1")
        route = self._routes.match(method, request.path)
        head = method == "HEAD"
        if route is None:
            allowed = self._routes.methods_for(request.path)
            if not allowed:
                return None  # no such path: the transcoder answers 404
            allow = ", ".join(allowed)
            status = edge_status(
                code_pb2.UNIMPLEMENTED,
                f"{method} is not a method of {request.path.split('?', 1)[0]}: use {allow}",
                "METHOD_NOT_ALLOWED",
                metadata={"allow": allow},
            )
            return refusal(405, status, False, b"allow: " + allow.encode() + b"\r\n", head)
        if not request.body or route.body_message is None:
            return None
        body = bytes(request.body)
        if len(body) > THREAD_THRESHOLD:
            unknown = await asyncio.to_thread(unknown_fields, route, body)
        else:
            unknown = unknown_fields(route, body)
        if not unknown:
            return None
        return refusal(400, status_proto(unknown_fields_error(unknown)), False, head=head)


def _hint(near: str) -> str:
    return f'; did you mean "{near}"?' if near else ""


def unknown_fields_error(unknown: list[tuple[str, str]]) -> InvalidArgument:
    """INVALID_ARGUMENT naming each unknown body field (and the known one it may have meant)."""

    def named(path: str, near: str) -> str:
        return f'"{path}"' + (f" ({_hint(near)[2:]})" if near else "")

    which = "field" if len(unknown) == 1 else "fields"
    return InvalidArgument(
        f"unknown {which} in the request body: " + ", ".join(named(p, n) for p, n in unknown),
        reason="UNKNOWN_FIELD",
        metadata={"fields": ",".join(p for p, _ in unknown)},
        field_violations=[(path, "the API has no such field" + _hint(near)) for path, near in unknown],
    )


# Envoy opens one HTTP/1.1 connection per concurrent check (its pool for this cluster is capped in the
# config): a burst of new streams must find room in the accept queue rather than time out connecting.
LISTEN_BACKLOG = 4096


class AuthzHttpServer:
    def __init__(self, keys: KeyService, edge: EdgeIdentity, policy: CheckPolicy) -> None:
        self._keys = keys
        self._edge = edge
        self._policy = policy
        self._routes = RestRoutes.of()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> _CheckProtocol:
        return _CheckProtocol(self._keys, self._edge, self._policy, self._routes)

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _CheckProtocol(self._keys, self._edge, self._policy, self._routes),
            host,
            port,
            backlog=LISTEN_BACKLOG,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
