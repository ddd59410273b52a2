"""What other replicas committed, as their notifications announce it: this replica's watchers get the
events (read back from storage, in seq order), and its runs learn of answers, cancellations, deletions."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from .events import EventHub
from .model import ChatEvent, ChatStatus, EventKind
from .ports import RunStore
from .runs import RunManager

log = logging.getLogger(__name__)


class PeerEvents:
    def __init__(self, repo: RunStore, hub: EventHub, runs: RunManager) -> None:
        self._repo = repo
        self._hub = hub
        self._runs = runs
        # One consumer, in arrival (= commit) order.
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def changed(self, note: dict[str, Any]) -> None:
        if note.get("o") != self._repo.replica_id:
            self._queue.put_nowait(note)

    def reconnected(self) -> None:
        """Notifications may have been lost while the connection was down: have every watched chat's
        watchers catch up (the lease keeper does the same for runs on its next round)."""
        for chat_id in self._hub.watched_chats():
            self._queue.put_nowait({"c": chat_id, "f": self._hub.last_seq(chat_id) + 1, "s": None})

    async def run(self) -> None:
        while True:
            note = await self._queue.get()
            try:
                await self._apply(note)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not apply a peer's change notification %s", note)

    async def _apply(self, note: dict[str, Any]) -> None:
        chat_id = str(note["c"])
        if note.get("d"):
            self._runs.on_peer_change(chat_id, None)
            deleted = ChatEvent(chat_id=chat_id, seq=int(note["s"]) + 1, time=datetime.now(UTC), kind=EventKind.DELETED)
            self._hub.publish([deleted])
            return
        if note.get("st"):
            self._runs.on_peer_change(chat_id, ChatStatus(note["st"]))
        if not self._hub.has_watchers(chat_id):
            return
        known = self._hub.last_seq(chat_id)
        if note.get("s") is not None and int(note["s"]) <= known:
            return  # already handed to the watchers
        # From the notification's first event, or earlier if an earlier notification went missing.
        after = int(note["f"]) - 1
        if known:
            after = min(after, known)
        self._hub.publish(await self._repo.events_after(chat_id, after))
