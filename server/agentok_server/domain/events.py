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
        self._hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventHub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, chat_id: str) -> Subscription:
        sub = Subscription(self, chat_id)
        self._subs[chat_id].add(sub)
        return sub

    def publish(self, events: Iterable[ChatEvent]) -> None:
        for event in events:
            for sub in self._subs.get(event.chat_id, ()):
                sub.queue.put_nowait(event)

    def close_all(self) -> None:
        """Ends every watch stream (server shutdown): each watcher gets None and stops."""
        for subs in self._subs.values():
            for sub in subs:
                sub.queue.put_nowait(None)

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.chat_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.chat_id]
