"""The grpc.aio server interceptor every call goes through: it times the call, learns its status code, and
reports it to the metrics (transport/metrics.py) and the request log (transport/request_log.py).

The code is what the client gets: the servicers end every failure with context.abort_with_status
(transport/rpc.py), which leaves the code on the context; a call that returns normally is OK, one the client
cancelled is CANCELLED, and anything that escaped a handler is UNKNOWN (grpc's own answer then).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from . import request_log
from .metrics import Method, Metrics
from .request_log import RequestLog

# Envoy health-checks every replica every second: counted in the metrics, but no log line each.
UNLOGGED_SERVICES = ("grpc.health.v1.Health",)


def _kind(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def _code(context: grpc.aio.ServicerContext, failure: BaseException | None) -> str:
    if isinstance(failure, asyncio.CancelledError | GeneratorExit):  # the client went away
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if failure is not None and not isinstance(failure, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN.name
    return grpc.StatusCode.OK.name


class _Call:
    """One call being observed, from its start to its status."""

    def __init__(self, observer: ObservingInterceptor, method: Method, full: str, context: Any) -> None:
        self._observer = observer
        self._method = method
        self._context = context
        self._started = time.perf_counter()
        self._record = request_log.begin(full, context.invocation_metadata())
        self._logged = method.service not in UNLOGGED_SERVICES
        observer.metrics.rpc_began(method)

    def end(self, failure: BaseException | None) -> None:
        seconds = time.perf_counter() - self._started
        code = _code(self._context, failure)
        self._observer.metrics.rpc_ended(self._method, code, seconds)
        if self._logged and self._observer.log is not None:
            self._observer.log.write(self._record, code, seconds)


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: Metrics, log: RequestLog | None) -> None:
        self.metrics = metrics
        self.log = log
        # Per method, the handler grpc found and its observed twin, made once (a method's handler is one
        # object for the server's life; the cache holds only methods that exist).
        self._observed: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        full: str = details.method  # type: ignore[attr-defined]
        known = self._observed.get(full)
        if known is not None and known[0] is handler:
            return known[1]
        observed = self._observe(handler, Method.parse(full, _kind(handler)), full)
        self._observed[full] = (handler, observed)
        return observed

    def _observe(self, handler: grpc.RpcMethodHandler, method: Method, full: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, full, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, full, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, full, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, full, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary(self, method: Method, full: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def observed(request: Any, context: Any) -> Any:
            call = _Call(self, method, full, context)
            try:
                response = await behavior(request, context)
            except BaseException as failure:
                call.end(failure)
                raise
            call.end(None)
            return response

        return observed

    def _streaming(self, method: Method, full: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):  # one that writes with context.write (grpc's health Watch)
            return self._unary(method, full, behavior)

        async def observed(request: Any, context: Any) -> AsyncIterator[Any]:
            call = _Call(self, method, full, context)
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as failure:
                call.end(failure)
                raise
            call.end(None)

        return observed
