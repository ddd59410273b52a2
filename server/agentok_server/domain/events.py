"""In-process fan-out of chat events to watchers (one asyncio queue per watcher)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from .model import ChatEvent

# A watcher with this many events not yet taken gets no more deltas until it catches up: a slow watcher
# loses deltas (the stored message carries their text), never stored events.
DELTA_BACKLOG = 32


class DeltaRelay(Protocol):
    """Passes this replica's deltas on to the other replicas (storage: PostgreSQL NOTIFY), in order."""

    def send(self, event: ChatEvent) -> None: ...

    async def drained(self) -> None:
        """Returns once every delta sent so far has been passed on."""
        ...


class Subscription:
    def __init__(self, hub: EventHub, chat_id: str, deltas: bool = False) -> None:
        self._hub = hub
        self.chat_id = chat_id
        self.deltas = deltas  # the watcher asked for message deltas
        self.queue: asyncio.Queue[ChatEvent | None] = asyncio.Queue()
        self.dropped_deltas = 0

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventHub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        # Per watched chat, the highest seq handed to its watchers: peers' notifications at or below it
        # need no read from storage.
        self._last: dict[str, int] = {}
        self.relay: DeltaRelay | None = None

    def subscribe(self, chat_id: str, *, deltas: bool = False) -> Subscription:
        sub = Subscription(self, chat_id, deltas)
        self._subs[chat_id].add(sub)
        return sub

    def publish_delta(self, event: ChatEvent, *, from_peer: bool = False) -> None:
        """A live delta: to this replica's watchers that asked for deltas and are keeping up, and (unless it
        came from a peer) to the other replicas'."""
        for sub in self._subs.get(event.chat_id, ()):
            if not sub.deltas:
                continue
            if sub.queue.qsize() >= DELTA_BACKLOG:
                sub.dropped_deltas += 1
                continue
            sub.queue.put_nowait(event)
        if not from_peer and self.relay is not None:
            self.relay.send(event)

    async def deltas_relayed(self) -> None:
        if self.relay is not None:
            await self.relay.drained()

    def publish(self, events: Iterable[ChatEvent]) -> None:
        for event in events:
            subs = self._subs.get(event.chat_id)
            if not subs:
                continue
            for sub in subs:
                sub.queue.put_nowait(event)
            if event.seq > self._last.get(event.chat_id, 0):
                self._last[event.chat_id] = event.seq

    def has_watchers(self, chat_id: str) -> bool:
        return bool(self._subs.get(chat_id))

    def watched_chats(self) -> list[str]:
        return list(self._subs)

    def watcher_count(self) -> int:
        """Open watch streams on this replica (each WatchChat call holds one subscription). Safe from another
        thread (the metrics endpoint's): it reads a copy."""
        return sum(len(subs) for subs in list(self._subs.values()))

    def last_seq(self, chat_id: str) -> int:
        return self._last.get(chat_id, 0)

    def close_all(self) -> None:
        """Ends every watch stream (server shutdown): each watcher gets None and stops."""
        for subs in self._subs.values():
            for sub in subs:
                sub.queue.put_nowait(None)

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.chat_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.chat_id]
                self._last.pop(sub.chat_id, None)
