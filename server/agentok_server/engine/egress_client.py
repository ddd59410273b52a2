"""The one way to call a tenant-influenced URL: each request checked by the egress policy (egress.py) when it
is made, and connected only to the addresses that check approved (see egress.py's docstring for why the URL
keeps the name and the pool is keyed by it)."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import httpcore
import httpx

from .egress import EgressPolicy, Target

# The target of the request this task is making: the only host, port and addresses a connection may use.
_PIN: ContextVar[Target | None] = ContextVar("agentok_egress_target", default=None)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to the addresses the policy checked for the current request (httpcore opens a
    connection in the task that sends the request, so the context variable is that request's)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = _PIN.get()
        if target is None or target.host != host.lower() or target.port != port:
            raise httpcore.ConnectError(f"{host}:{port} was not checked by the egress policy")
        failure: httpcore.ConnectError | None = None
        for address in target.addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:  # refused: try the next checked address
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not egress")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__(trust_env=False)
        if not isinstance(self._pool, httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx's transport changed: the egress policy cannot pin connections")
        # httpx offers no network_backend option: the same pool it builds (its default limits), with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_PinnedBackend(),
        )


class EgressClient:
    """Requests to tenant-influenced URLs: each one checked by the policy at the moment it is made (a name
    may resolve elsewhere by now; a stored URL may predate the policy) and connected to the checked
    addresses only."""

    def __init__(self, policy: EgressPolicy, *, timeout: float) -> None:
        self.policy = policy
        # trust_env=False: HTTP(S)_PROXY/ALL_PROXY would otherwise mount a proxy transport that connects
        # wherever the URL says, past the pinned backend.
        self._http = httpx.AsyncClient(
            transport=_PinnedTransport(), timeout=timeout, trust_env=False, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, url: str, *, suffix: str = "", **kwargs: typing.Any) -> httpx.Response:
        """`method` on `url` + `suffix` (a fixed path of the caller's). Raises EgressRefused before anything
        is sent, or httpx's errors. A redirect is returned as it is, never followed."""
        target = await self.policy.check_url(url)
        token = _PIN.set(target)
        try:
            return await self._http.request(method, target.url(suffix), follow_redirects=False, **kwargs)
        finally:
            _PIN.reset(token)

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, suffix: str = "", **kwargs: typing.Any
    ) -> AsyncIterator[httpx.Response]:
        """As `request`, but the response is handed over before its body is read (the caller reads it
        incrementally, within its own limits) and closed on leaving. The check and the pinning are the same:
        the connection is opened while the checked target is pinned, and no other is opened for the body."""
        target = await self.policy.check_url(url)
        token = _PIN.set(target)
        try:
            request = self._http.build_request(method, target.url(suffix), **kwargs)
            response = await self._http.send(request, stream=True, follow_redirects=False)
        finally:
            _PIN.reset(token)
        try:
            yield response
        finally:
            await response.aclose()
