"""PostgreSQL LISTEN on a dedicated connection: how a replica hears of steps other replicas committed.

The notification only names the chat and the seqs (NOTIFY payloads are capped at 8000 bytes); the events
themselves are read back from storage. A dropped connection is reopened, and `on_reconnect` lets the
caller catch up on what it may have missed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from ..domain.notifications import ChatChanged, ChatDelta
from .repository.notifications import NOTIFY_CHANNEL
from .urls import libpq_dsn

log = logging.getLogger(__name__)


class ChangeListener:
    def __init__(
        self,
        database_url: str,
        on_change: Callable[[ChatChanged], None],
        on_reconnect: Callable[[], None],
        name: str = "agentok",
        on_delta: Callable[[ChatDelta], None] | None = None,
        delta_channel: str = "",
    ) -> None:
        """`on_delta`: hears the message deltas other replicas send on `delta_channel` (delta_relay.py)."""
        self._dsn = libpq_dsn(database_url)
        self._on_delta = on_delta
        self._delta_channel = delta_channel
        # Shown in pg_stat_activity: which replica's listener a connection is.
        self._application_name = f"{name} listener"[:63]
        self._on_change = on_change
        self._on_reconnect = on_reconnect
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Listens until cancelled; reconnects (backing off up to 2 s) whenever the connection is lost."""
        first = True
        while True:
            conn = await self._connect()
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await conn.add_listener(NOTIFY_CHANNEL, self._received)
                if self._on_delta is not None:
                    await conn.add_listener(self._delta_channel, self._delta_received)
                self.connected.set()
                if not first:
                    log.warning("LISTEN connection restored; catching up from storage")
                    self._on_reconnect()
                first = False
                await lost.wait()
                log.warning("LISTEN connection lost; reconnecting")
            finally:
                self.connected.clear()
                if not conn.is_closed():
                    await conn.close(timeout=2)

    async def _connect(self) -> asyncpg.Connection:
        return await connect(self._dsn, self._application_name)

    def _delta_received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            delta = ChatDelta.decode(payload)
        except ValueError as exc:
            log.warning("ignored a delta notification (%s): %.200s", exc, payload)
            return
        if self._on_delta is not None:
            self._on_delta(delta)

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            change = ChatChanged.decode(payload)
        except ValueError as exc:
            log.warning("ignored a change notification (%s): %.200s", exc, payload)
            return
        self._on_change(change)


async def connect(dsn: str, application_name: str) -> asyncpg.Connection:
    """A connection of its own (retried, backing off up to 2 s, until it opens)."""
    async for attempt in AsyncRetrying(
        wait=wait_exponential(multiplier=0.1, max=2.0),
        retry=retry_if_exception_type((OSError, asyncpg.PostgresError, asyncio.TimeoutError)),
    ):
        with attempt:
            return await asyncpg.connect(dsn, timeout=5, server_settings={"application_name": application_name})
    raise AssertionError("unreachable: AsyncRetrying retries until it succeeds")
