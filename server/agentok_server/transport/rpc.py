"""Decorators every RPC goes through: establish the caller's identity, then map domain errors to statuses."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError

from ..domain.errors import DomainError, Internal, InvalidArgument
from ..domain.keys import KeyService, ambiguous_credentials
from ..domain.model import AuthMethod, Identity, KeyScope
from .edge_identity import HEADER, EdgeIdentity
from .errors import to_grpc_status

log = logging.getLogger(__name__)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
# With auth switched off (benchmarks only) every caller is this one owner.
ANONYMOUS = Identity(owner="anonymous", method=AuthMethod.BEARER, scope=KeyScope.ADMIN)


@dataclass(frozen=True)
class Authenticator:
    keys: KeyService
    edge: EdgeIdentity

    async def identify(self, context: grpc.aio.ServicerContext) -> Identity:
        """Through Envoy: the signed identity header. Straight to the server port: an API key."""
        metadata = {key: value for key, value in (context.invocation_metadata() or ())}
        signed = metadata.get(HEADER)
        if signed is not None:
            return self.edge.decode(str(signed))  # refuses forged, malformed and expired (replayed) headers
        api_key = metadata.get("x-api-key")
        if api_key is not None and str(metadata.get("authorization", "")).lower().startswith("bearer "):
            # Bearer tokens are verified at the edge only; taking the key and ignoring the token would hide a
            # client's mistake (which identity did it mean?).
            raise ambiguous_credentials()
        return await self.keys.authenticate(str(api_key) if api_key is not None else None)


class Authenticated(Protocol):
    auth: Authenticator | None  # None when auth is switched off (benchmarks only)


async def _identity(servicer: Authenticated, context: grpc.aio.ServicerContext) -> Identity:
    if servicer.auth is None:
        return ANONYMOUS
    return await servicer.auth.identify(context)


def unary(
    method: Callable[[Any, Req, grpc.aio.ServicerContext, Identity], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            identity = await _identity(self, context)
            return await method(self, _well_formed(request), context, identity)
        except DomainError as err:
            await context.abort_with_status(to_grpc_status(err))
        except grpc.aio.AbortError:
            raise
        except Exception:
            await context.abort_with_status(_internal(method.__name__))
        raise AssertionError("unreachable")

    return wrapper


def server_stream(
    method: Callable[[Any, Req, grpc.aio.ServicerContext, Identity], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
        try:
            identity = await _identity(self, context)
            async for item in method(self, _well_formed(request), context, identity):
                yield item
        except DomainError as err:
            await context.abort_with_status(to_grpc_status(err))
        except grpc.aio.AbortError:
            raise
        except Exception:
            await context.abort_with_status(_internal(method.__name__))

    return wrapper


@dataclass(frozen=True)
class MalformedRequest:
    """What a request that did not decode becomes, so the caller gets INVALID_ARGUMENT, not UNKNOWN."""

    reason: str


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as err:  # bad UTF-8 in a string (also from a REST path), corrupt bytes, too deep
            return MalformedRequest(str(err))

    return decode


def _well_formed(request: Req) -> Req:
    if isinstance(request, MalformedRequest):
        raise InvalidArgument(f"the request could not be decoded: {request.reason}", reason="MALFORMED_REQUEST")
    return request


def _internal(rpc: str) -> grpc.Status:
    # The client learns nothing of the server's internals (SQL, parameters, paths); the log has it all.
    log.exception("unexpected error in %s", rpc)
    return to_grpc_status(Internal("internal error: the server could not complete the call (see its log)"))


class _ServerWithTolerantDecoding:
    """Stands in for the server while generated code registers a servicer, wrapping each decoder once
    (at registration, so calls pay nothing extra: an interceptor would run on every call)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Ignored: add_registered_method_handlers receives the same handlers, and registers both."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {
            name: handler._replace(request_deserializer=_tolerant(handler.request_deserializer))  # type: ignore[attr-defined]
            for name, handler in handlers.items()
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)


def add_servicer(register: Callable[[Any, Any], None], servicer: object, server: grpc.aio.Server) -> None:
    """`register` is a generated `add_XServicer_to_server`; requests that do not decode get INVALID_ARGUMENT."""
    register(servicer, _ServerWithTolerantDecoding(server))
