"""What other replicas committed, as their notifications announce it: this replica's watchers get the
events (read back from storage, in seq order), and its runs learn of answers, cancellations, deletions."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from .deltas import delta_event
from .events import EventHub
from .model import ChatEvent, EventKind, MessageDelta
from .notifications import ChatChanged, ChatDelta
from .ports import RunStore
from .runs import RunManager

log = logging.getLogger(__name__)


class PeerEvents:
    def __init__(self, repo: RunStore, hub: EventHub, runs: RunManager) -> None:
        self._repo = repo
        self._hub = hub
        self._runs = runs
        # One consumer, in arrival (= commit) order: a reply's deltas before the step that stores it.
        self._queue: asyncio.Queue[ChatChanged | ChatDelta] = asyncio.Queue()

    def changed(self, change: ChatChanged) -> None:
        if change.origin != self._repo.replica_id:
            self._queue.put_nowait(change)

    def delta(self, delta: ChatDelta) -> None:
        """A peer's message delta: for watchers here only (nothing to read back, nothing a run needs)."""
        if delta.origin != self._repo.replica_id and self._hub.has_watchers(delta.chat_id):
            self._queue.put_nowait(delta)

    def reconnected(self) -> None:
        """Notifications may have been lost while the connection was down: have every watched chat's
        watchers catch up (the lease keeper does the same for runs on its next round)."""
        for chat_id in self._hub.watched_chats():
            self._queue.put_nowait(ChatChanged(chat_id, first_seq=self._hub.last_seq(chat_id) + 1))

    async def run(self) -> None:
        while True:
            change = await self._queue.get()
            try:
                await self._apply(change)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not apply a peer's change notification %s", change)

    async def _apply(self, change: ChatChanged | ChatDelta) -> None:
        if isinstance(change, ChatDelta):
            piece = MessageDelta(draft_id=change.draft_id, sender=change.sender, text=change.text)
            self._hub.publish_delta(delta_event(self._hub, change.chat_id, piece), from_peer=True)
            return
        chat_id = change.chat_id
        if change.deleted:
            assert change.last_seq is not None  # ChatChanged refuses a deletion without it
            self._runs.on_peer_change(chat_id, None)
            deleted = ChatEvent(
                chat_id=chat_id, seq=change.last_seq + 1, time=datetime.now(UTC), kind=EventKind.DELETED
            )
            self._hub.publish([deleted])
            return
        if change.status is not None:
            self._runs.on_peer_change(chat_id, change.status)
        if not self._hub.has_watchers(chat_id):
            return
        known = self._hub.last_seq(chat_id)
        if change.last_seq is not None and change.last_seq <= known:
            return  # already handed to the watchers
        assert change.first_seq is not None  # ChatChanged refuses a change without it, deletions aside
        # From the notification's first event, or earlier if an earlier notification went missing.
        after = change.first_seq - 1
        if known:
            after = min(after, known)
        self._hub.publish(await self._repo.events_after(chat_id, after))
