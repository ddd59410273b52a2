"""Decorators every RPC goes through: authenticate the caller, then map domain errors to statuses."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc

from ..domain.errors import DomainError
from ..domain.keys import KeyService
from .errors import to_grpc_status

Req = TypeVar("Req")
Resp = TypeVar("Resp")
ANONYMOUS = "anonymous"


class Authenticated(Protocol):
    keys: KeyService | None  # None when auth is switched off (benchmarks only)


def api_key(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "x-api-key":
            return value if isinstance(value, str) else value.decode()
    return None


async def _owner(servicer: Authenticated, context: grpc.aio.ServicerContext) -> str:
    if servicer.keys is None:
        return ANONYMOUS
    return await servicer.keys.authenticate(api_key(context))


def unary(
    method: Callable[[Any, Req, grpc.aio.ServicerContext, str], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context, await _owner(self, context))
        except DomainError as err:
            await context.abort_with_status(to_grpc_status(err))
            raise AssertionError("unreachable") from err

    return wrapper


def server_stream(
    method: Callable[[Any, Req, grpc.aio.ServicerContext, str], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context, await _owner(self, context)):
                yield item
        except DomainError as err:
            await context.abort_with_status(to_grpc_status(err))

    return wrapper
