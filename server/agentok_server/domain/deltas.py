"""A model reply's text as it is written, for watchers that asked for it (WatchChat include_deltas): pieces
coalesced to at most one delta per interval per reply, handed to this replica's watchers and, through the
hub's relay, to other replicas'. Live only: nothing here is stored or journaled; the stored message that
follows carries the whole text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from .events import EventHub
from .model import ChatEvent, EventKind, MessageDelta

# At most one delta per reply per this many seconds (the first piece goes out at once).
COALESCE_SECONDS = 0.01


def delta_event(hub: EventHub, chat_id: str, delta: MessageDelta) -> ChatEvent:
    """The event a delta is streamed as. Its seq: the chat's latest stored event as this replica knows it
    (WatchChat sets each watcher's own)."""
    return ChatEvent(
        chat_id=chat_id, seq=hub.last_seq(chat_id), time=datetime.now(UTC), kind=EventKind.DELTA, delta=delta
    )


class DeltaWriter:
    """One reply's deltas. `write` is called by the model client for each piece it reads (synchronously,
    on the event loop); `flush` sends what is left, and `close` also waits until the relay has passed every
    delta on, so that peers hear them before the message they add up to."""

    def __init__(self, hub: EventHub, chat_id: str, draft_id: str, sender: str) -> None:
        self._hub = hub
        self._chat_id = chat_id
        self._draft_id = draft_id
        self._sender = sender
        self._pending: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._sent_at = -COALESCE_SECONDS
        self._timer: asyncio.TimerHandle | None = None

    def write(self, text: str) -> None:
        self._pending.append(text)
        if self._timer is not None:
            return  # a flush is due: this piece goes with it
        wait = self._sent_at + COALESCE_SECONDS - self._loop.time()
        if wait <= 0:
            self._flush()
        else:
            self._timer = self._loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        self._sent_at = self._loop.time()
        delta = MessageDelta(draft_id=self._draft_id, sender=self._sender, text=text)
        self._hub.publish_delta(delta_event(self._hub, self._chat_id, delta))

    def flush(self) -> None:
        """Sends what is pending now (the reply is complete, or its call ended)."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush()

    async def close(self) -> None:
        """flush, then wait until the relay has passed every delta on."""
        self.flush()
        await self._hub.deltas_relayed()


@asynccontextmanager
async def reply_deltas(
    hub: EventHub, chat_id: str, draft_id: str, sender: str
) -> AsyncIterator[Callable[[int, str], None]]:
    """The callback a model call tells each piece of its reply, with its attempt (1 first; a retried call
    writes its reply again, under a draft of its own), and, once the call is over, its last deltas sent
    (to this replica's watchers and the relay) before the reply is journaled."""
    writers: dict[int, DeltaWriter] = {}

    def on_delta(attempt: int, text: str) -> None:
        if attempt not in writers:
            name = draft_id if attempt == 1 else f"{draft_id}.{attempt}"
            writers[attempt] = DeltaWriter(hub, chat_id, name, sender)
        writers[attempt].write(text)

    try:
        yield on_delta
    finally:
        for writer in writers.values():
            writer.flush()
    # Only for a reply that will be stored: a stopped call does not wait for the relay.
    if writers:
        await hub.deltas_relayed()
