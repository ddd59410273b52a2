"""What model calls cost, in memory: the provider's usage on each message a model wrote and the chat's running
totals; the token budget that ends a run as the turn budget does, counted again from the journal after a
restart; and deltas, live only, coalesced and dropped for a watcher that falls behind. A real RunManager and
ChatService on the in-memory store (tests/support/memory_services.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from agentok_server.domain.deltas import DeltaWriter
from agentok_server.domain.errors import InvalidArgument
from agentok_server.domain.events import DELTA_BACKLOG, EventHub
from agentok_server.domain.model import ChatEvent, ChatStatus, ChatUsage, EventKind, MessageType, Usage
from agentok_server.engine.tool_calls import ModelReply

from ..support.api import two_agent_flow
from ..support.memory_services import OWNER, MakeServices, contents, new_chat, until_status

NEVER = two_agent_flow(a={"human_input_mode": "NEVER"})


async def test_usage_is_on_each_model_message_and_summed_on_the_chat(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, two_agent_flow(a={"human_input_mode": "NEVER"}, edge={"max_turns": 2}))
    s.model.reply(ModelReply("r1", usage=Usage(5, 2, 7)), ModelReply("r2", usage=Usage(None, 3, None)))
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "task")
        await until_status(sub, ChatStatus.COMPLETED)
    messages, _ = await s.chats.list_messages(OWNER, chat_id, 0, "")
    assert [(m.content, m.usage) for m in messages] == [
        ("task", None),
        ("r1", Usage(5, 2, 7)),
        ("", None),  # the user proxy's auto-reply: no model wrote it
        ("r2", Usage(None, 3, None)),  # as reported: counts the provider left out stay absent
    ]
    assert messages[1].type is MessageType.ASSISTANT
    chat = await s.chats.get(OWNER, chat_id)
    # Totals count what a budget counts: a reply with no total_tokens adds its prompt plus completion.
    assert chat.usage == ChatUsage(run=Usage(5, 5, 10), total=Usage(5, 5, 10))

    s.model.reply(ModelReply("r3", usage=Usage(1, 1, 2)), "r4")
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "again")
        await until_status(sub, ChatStatus.COMPLETED)
    chat = await s.chats.get(OWNER, chat_id)
    assert chat.usage == ChatUsage(run=Usage(1, 1, 2), total=Usage(6, 6, 12))  # a new run counts from zero


async def test_the_token_budget_ends_a_run_completed_saying_why(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, NEVER, max_tokens_per_run=10)
    s.model.reply(*(ModelReply(f"r{i}", usage=Usage(5, 2, 7)) for i in (1, 2, 3)))
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "task")
        await until_status(sub, ChatStatus.COMPLETED)
    said = await contents(s, chat_id)
    # 7 tokens after r1 (under 10): r2 is asked for; 14 after it: the next call is not made.
    assert said == ["task", "r1", "", "r2", "", "The run ended: its budget of 10 tokens was reached (14 used)."]
    assert len(s.model.calls) == 2 and s.model.unanswered_replies == 1
    assert (await s.chats.get(OWNER, chat_id)).budget.max_tokens_per_run == 10


async def test_the_server_default_budget_applies_and_zero_means_none(services: MakeServices) -> None:
    s = services(default_max_tokens_per_run=3)
    chat_id = await new_chat(s, NEVER)
    assert (await s.chats.get(OWNER, chat_id)).budget.max_tokens_per_run == 3
    unlimited = services()
    chat_id = await new_chat(unlimited, NEVER)
    assert (await unlimited.chats.get(OWNER, chat_id)).budget.max_tokens_per_run == 0


async def test_a_negative_token_budget_is_invalid(services: MakeServices) -> None:
    s = services()
    with pytest.raises(InvalidArgument) as refused:
        await new_chat(s, NEVER, max_tokens_per_run=-1)
    assert refused.value.field_violations[0][0] == "max_tokens_per_run"


async def test_the_budget_counts_journaled_usage_after_a_restart(services: MakeServices) -> None:
    first = services()
    chat_id = await new_chat(first, NEVER, max_tokens_per_run=10)
    await first.chats.send_message(OWNER, chat_id, "task")
    first.model.reply(ModelReply("r1", usage=Usage(5, 2, 7)))
    await first.model.wait_calls(2)  # the second call is in flight when the server stops
    await first.runs.shutdown()

    again = services(first.store)
    again.model.reply(ModelReply("r2", usage=Usage(5, 2, 7)), ModelReply("r3"))
    with again.hub.subscribe(chat_id) as sub:
        await again.runs.resume_all()
        await until_status(sub, ChatStatus.COMPLETED)
    said = await contents(again, chat_id)
    assert said[-1] == "The run ended: its budget of 10 tokens was reached (14 used)."
    assert len(again.model.calls) == 1  # r1's 7 tokens came from the journal, not from a second call
    chat = await again.chats.get(OWNER, chat_id)
    assert chat.usage.run == Usage(10, 4, 14)


def _delta_events(sub_queue: asyncio.Queue[ChatEvent | None]) -> list[str]:
    texts = []
    while not sub_queue.empty():
        event = sub_queue.get_nowait()
        assert event is not None and event.kind is EventKind.DELTA and event.delta is not None
        texts.append(event.delta.text)
    return texts


async def test_deltas_are_coalesced_and_only_for_watchers_that_asked() -> None:
    hub = EventHub()
    with hub.subscribe("c", deltas=True) as wants, hub.subscribe("c") as plain:
        writer = DeltaWriter(hub, "c", "1.1", "assistant")
        for word in ("a ", "b ", "c ", "d"):
            writer.write(word)
        first = _delta_events(wants.queue)
        assert first == ["a "]  # the first piece at once; the rest wait for the interval
        await writer.close()
        assert first + _delta_events(wants.queue) == ["a ", "b c d"]
        assert plain.queue.empty()


async def test_a_watcher_that_falls_behind_loses_deltas_never_stored_events() -> None:
    hub = EventHub()
    with hub.subscribe("c", deltas=True) as slow:
        stored = ChatEvent(chat_id="c", seq=1, time=datetime.now(UTC), kind=EventKind.STATUS)
        for _ in range(DELTA_BACKLOG):
            hub.publish([stored])
        writer = DeltaWriter(hub, "c", "1.1", "assistant")
        writer.write("lost")
        await writer.close()
        hub.publish([stored])
        assert slow.queue.qsize() == DELTA_BACKLOG + 1 and slow.dropped_deltas == 1
