"""In-process fan-out of chat events to watchers (one asyncio queue per watcher)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

from .model import ChatEvent


class Subscription:
    def __init__(self, hub: EventHub, chat_id: str) -> None:
        self._hub = hub
        self.chat_id = chat_id
        self.queue: asyncio.Queue[ChatEvent | None] = asyncio.Queue()

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

    def subscribe(self, chat_id: str) -> Subscription:
        sub = Subscription(self, chat_id)
        self._subs[chat_id].add(sub)
        return sub

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
