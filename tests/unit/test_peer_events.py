"""PeerEvents speaks ChatChanged: what another replica committed, as its notification arrives over the wire
(encoded, then decoded as the listener does), reaches this replica's watchers, read back from storage in seq
order; this replica's own notifications are ignored, a deletion ends the watch, a reconnect catches up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentok_server.domain.events import Subscription
from agentok_server.domain.model import ChatEvent, ChatStatus, EventKind, MessageType, NewMessage, StatusChange
from agentok_server.domain.notifications import ChatChanged
from agentok_server.domain.peer_events import PeerEvents
from agentok_server.domain.ports import StepItem

from ..support.memory_services import OWNER, MakeServices, Services, next_event
from ..support.memory_store import MemoryStore

PEER = "replica-b"


@pytest.fixture
async def replica(services: MakeServices) -> AsyncIterator[tuple[Services, PeerEvents]]:
    """This replica's services with its PeerEvents consuming notifications until the test ends."""
    s = services(MemoryStore(replica_id="replica-a"))
    peers = PeerEvents(s.store, s.hub, s.runs)
    consumer = asyncio.create_task(peers.run())
    yield s, peers
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer


async def _chat(s: Services) -> str:
    chat = await s.store.insert_chat(owner=OWNER, name="chat", from_type="flow", from_flow="f", graph={})
    return chat.id


async def _peer_step(s: Services, chat_id: str, *items: StepItem) -> ChatChanged:
    """The peer commits a step; returns the notification its repository would send for it."""
    result = await s.store.replica(PEER).apply_step(chat_id, items)
    assert result is not None
    return ChatChanged(
        chat_id, PEER, first_seq=result.events[0].seq, last_seq=result.events[-1].seq, status=result.chat.status
    )


def _said(content: str) -> NewMessage:
    return NewMessage(type=MessageType.USER, sender="user", receiver="assistant", content=content)


def _over_the_wire(change: ChatChanged) -> ChatChanged:
    return ChatChanged.decode(change.encode())


async def _next(sub: Subscription) -> ChatEvent:
    return await next_event(sub, lambda _e: True)


async def test_a_peers_events_reach_the_watchers_and_our_own_are_ignored(
    replica: tuple[Services, PeerEvents],
) -> None:
    s, peers = replica
    chat_id = await _chat(s)
    with s.hub.subscribe(chat_id) as sub:
        ours = await _peer_step(s, chat_id, _said("first"))
        # Had this replica's own notification been applied, the watcher would hear seq 1 first.
        peers.changed(_over_the_wire(ChatChanged(chat_id, s.store.replica_id, first_seq=1, last_seq=ours.last_seq)))
        theirs = await _peer_step(s, chat_id, _said("second"), StatusChange(ChatStatus.RUNNING))
        peers.changed(_over_the_wire(theirs))
        second, status = await _next(sub), await _next(sub)
    assert (second.seq, second.message and second.message.content) == (2, "second")
    assert (status.seq, status.status and status.status.status) == (3, ChatStatus.RUNNING)


async def test_a_peers_deletion_ends_the_watch_after_the_chats_last_event(
    replica: tuple[Services, PeerEvents],
) -> None:
    s, peers = replica
    chat_id = await _chat(s)
    with s.hub.subscribe(chat_id) as sub:
        peers.changed(_over_the_wire(await _peer_step(s, chat_id, _said("hello"))))
        assert (await _next(sub)).seq == 1
        gone = await s.store.replica(PEER).delete_chat(OWNER, chat_id)
        assert gone is not None
        peers.changed(_over_the_wire(ChatChanged(chat_id, PEER, last_seq=gone.last_seq, deleted=True)))
        deleted = await _next(sub)
    assert (deleted.kind, deleted.seq) == (EventKind.DELETED, 2)


async def test_after_a_reconnect_the_watchers_get_what_the_lost_notifications_announced(
    replica: tuple[Services, PeerEvents],
) -> None:
    s, peers = replica
    chat_id = await _chat(s)
    with s.hub.subscribe(chat_id) as sub:
        peers.changed(_over_the_wire(await _peer_step(s, chat_id, _said("before"))))
        assert (await _next(sub)).seq == 1
        await _peer_step(s, chat_id, _said("lost 1"))  # their notifications never arrive
        await _peer_step(s, chat_id, _said("lost 2"))
        peers.reconnected()
        caught_up = [await _next(sub), await _next(sub)]
    assert [(e.seq, e.message and e.message.content) for e in caught_up] == [(2, "lost 1"), (3, "lost 2")]
