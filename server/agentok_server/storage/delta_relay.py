"""The NOTIFY side of message deltas (domain/deltas.py): this replica's deltas, sent to the other replicas on
a channel of their own, from a connection of their own (outside any transaction, so each is delivered at once;
a step's NOTIFY rides in its transaction, storage/repository/notifications.py). One sender task keeps them in
order. Deltas are live and lossy by design: while the connection is down, or when a burst overflows the
queue, they are dropped (the stored message carries their text)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from sqlalchemy.engine import make_url

from ..domain.model import ChatEvent
from ..domain.notifications import ChatDelta
from .listener import connect
from .urls import libpq_dsn

log = logging.getLogger(__name__)

DELTA_CHANNEL = "agentok_chat_deltas"
# Payloads waiting to be sent; past it, deltas are dropped.
QUEUE_LIMIT = 1000
# How long a run waits for its deltas to be passed on before it stores the reply anyway.
DRAIN_SECONDS = 2.0


class NotifyDeltaRelay:
    def __init__(self, database_url: str, origin: str, name: str = "agentok") -> None:
        make_url(database_url)  # refuses a malformed URL here, not in the background task
        self._dsn = libpq_dsn(database_url)
        self._application_name = f"{name} deltas"[:63]
        self._origin = origin
        self._queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_LIMIT)
        self.dropped = 0

    def send(self, event: ChatEvent) -> None:
        if event.delta is None:
            return
        delta = ChatDelta(event.chat_id, self._origin, event.delta.draft_id, event.delta.sender, event.delta.text)
        for payload in delta.encode():
            try:
                self._queue.put_nowait(payload)
            except asyncio.QueueFull:
                self.dropped += 1

    async def drained(self) -> None:
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await self._queue.join()
        except TimeoutError:
            log.warning("message deltas were not passed on to other replicas within %gs", DRAIN_SECONDS)

    async def run(self) -> None:
        """Sends until cancelled; reconnects when the connection is lost (what was being sent is dropped)."""
        while True:
            conn = await connect(self._dsn, self._application_name)
            try:
                while True:
                    payload = await self._queue.get()
                    try:
                        await conn.execute("SELECT pg_notify($1, $2)", DELTA_CHANNEL, payload)
                    finally:
                        self._queue.task_done()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("delta relay connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                if not conn.is_closed():
                    await conn.close(timeout=2)
