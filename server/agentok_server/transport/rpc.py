"""Decorators every RPC goes through: establish the caller's identity, then map domain errors to statuses."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc

from ..domain.errors import DomainError, Unauthenticated
from ..domain.keys import KeyService
from ..domain.model import AuthMethod, Identity, KeyScope
from .edge_identity import HEADER, EdgeIdentity
from .errors import to_grpc_status

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
            identity = self.edge.decode(str(signed))
            if identity is None:
                raise Unauthenticated("invalid edge identity header", reason="EDGE_IDENTITY_INVALID")
            return identity
        api_key = metadata.get("x-api-key")
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
            return await method(self, request, context, await _identity(self, context))
        except DomainError as err:
            await context.abort_with_status(to_grpc_status(err))
            raise AssertionError("unreachable") from err

    return wrapper


def server_stream(
    method: Callable[[Any, Req, grpc.aio.ServicerContext, Identity], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context, await _identity(self, context)):
                yield item
        except DomainError as err:
            await context.abort_with_status(to_grpc_status(err))

    return wrapper
