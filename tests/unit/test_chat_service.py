"""The chat state machine's rules, in memory: ChatService and a real RunManager on the in-memory store
(tests/support/memory_services.py), with a model whose replies the test hands out. Observed only through
what the service returns, the store and the events watchers get."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentok_server.domain.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound
from agentok_server.domain.model import Chat, ChatStatus, EventKind, Message, MessageType

from ..support.memory_services import (
    ASKING,
    OWNER,
    MakeServices,
    Services,
    contents,
    new_chat,
    next_event,
    run_until_waiting,
    until_status,
)


def _reason(outcome: Any) -> str:
    assert isinstance(outcome, DomainError), outcome
    return outcome.reason


async def test_two_racing_messages_start_one_run(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    outcomes = await asyncio.gather(
        s.chats.send_message(OWNER, chat_id, "first"),
        s.chats.send_message(OWNER, chat_id, "second"),
        return_exceptions=True,
    )
    started = [o for o in outcomes if isinstance(o, tuple)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(started) == 1 and [_reason(r) for r in refused] == ["CHAT_RUNNING"], outcomes
    assert s.store.refused_steps == 1  # both read a startable chat; the second lost at the write
    chat, message = started[0]
    assert isinstance(chat, Chat) and isinstance(message, Message)
    assert (chat.status, chat.run.run_no, message.content) == (ChatStatus.RUNNING, 1, chat.run.run_input)
    await s.model.wait_calls(1)
    assert len(s.runs.runs()) == 1 and len(s.model.calls) == 1
    assert await contents(s, chat_id) == [message.content]  # the refused message was not stored


async def test_input_is_taken_only_while_the_chat_waits(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    with pytest.raises(FailedPrecondition) as ready:
        await s.chats.send_input(OWNER, chat_id, "too early")
    assert ready.value.reason == "CHAT_NOT_WAITING"

    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "task")
        await s.model.wait_calls(1)
        with pytest.raises(FailedPrecondition) as running:  # the model is still answering
            await s.chats.send_input(OWNER, chat_id, "still too early")
        assert running.value.reason == "CHAT_NOT_WAITING"
        s.model.reply("r1")
        waiting = await until_status(sub, ChatStatus.WAITING)
        assert waiting.status is not None and "Provide feedback to Assistant" in waiting.status.input_prompt

        answered = await s.chats.send_input(OWNER, chat_id, "more")
        assert answered.status is ChatStatus.RUNNING
        await s.model.wait_calls(2)  # the run went on with the answer
        assert s.model.calls[1][-1] == {"role": "user", "content": "more", "name": "User"}
        s.model.reply("r2")
        await until_status(sub, ChatStatus.WAITING)
        await s.chats.send_input(OWNER, chat_id, "exit")
        await until_status(sub, ChatStatus.COMPLETED)

    with pytest.raises(FailedPrecondition) as completed:
        await s.chats.send_input(OWNER, chat_id, "too late")
    assert completed.value.reason == "CHAT_NOT_WAITING"
    assert await contents(s, chat_id) == ["task", "r1", "more", "r2"]
    assert s.runs.get(chat_id) is None


async def test_of_two_racing_answers_exactly_one_is_taken(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    waiting = await run_until_waiting(s, chat_id)
    outcomes = await asyncio.gather(
        s.chats.send_input(OWNER, chat_id, "yes"), s.chats.send_input(OWNER, chat_id, "no"), return_exceptions=True
    )
    taken = [answer for answer, o in zip(["yes", "no"], outcomes, strict=True) if isinstance(o, Chat)]
    assert len(taken) == 1 and [_reason(o) for o in outcomes if isinstance(o, BaseException)] == ["CHAT_NOT_WAITING"]
    journal = await s.store.journal(chat_id, waiting.run.run_no)
    assert [e.value for e in journal if e.kind == "human"] == taken
    await s.model.wait_calls(2)
    assert s.model.calls[1][-1]["content"] == taken[0]
    assert await contents(s, chat_id) == ["task", "r1", taken[0]]


async def test_cancel_while_the_model_is_answering_stops_the_run(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    await s.chats.send_message(OWNER, chat_id, "task")
    await s.model.wait_calls(1)

    cancelled = await s.chats.cancel(OWNER, chat_id)
    assert cancelled.status is ChatStatus.READY
    messages = await s.store.list_messages(chat_id, 100, 0)
    assert [(m.type, m.content) for m in messages] == [
        (MessageType.USER, "task"),
        (MessageType.SYSTEM, "The run was cancelled."),
    ]
    assert s.runs.get(chat_id) is None
    s.model.reply("late")  # the cancelled call is gone: nobody takes this reply, nothing is stored
    stored = await s.store.events_after(chat_id, 0)
    assert s.model.unanswered_replies == 1 and stored[-1].seq == cancelled.last_seq
    assert s.store.lease_holder(chat_id) is None
    # Ready again: a new message starts a new run.
    again, _ = await s.chats.send_message(OWNER, chat_id, "again")
    assert (again.status, again.run.run_no) == (ChatStatus.RUNNING, 2)


async def test_cancel_while_waiting_ends_the_wait(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    await run_until_waiting(s, chat_id)
    cancelled = await s.chats.cancel(OWNER, chat_id)
    assert (cancelled.status, cancelled.input_prompt) == (ChatStatus.READY, "")
    assert await contents(s, chat_id) == ["task", "r1", "The run was cancelled."]
    assert s.runs.get(chat_id) is None
    with pytest.raises(FailedPrecondition) as answered:
        await s.chats.send_input(OWNER, chat_id, "too late")
    assert answered.value.reason == "CHAT_NOT_WAITING"
    with pytest.raises(FailedPrecondition) as again:
        await s.chats.cancel(OWNER, chat_id)
    assert again.value.reason == "CHAT_NOT_RUNNING"
    assert len(s.model.calls) == 1


async def test_delete_mid_run_removes_the_chat_and_tells_its_watchers(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    sent, _ = await s.chats.send_message(OWNER, chat_id, "task")
    await s.model.wait_calls(1)
    stream = await s.chats.watch(OWNER, chat_id, sent.last_seq)
    watched = asyncio.ensure_future(anext(stream))
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.delete(OWNER, chat_id)
        deleted = await next_event(sub, lambda e: True)
    assert (deleted.kind, deleted.seq) == (EventKind.DELETED, sent.last_seq + 1)
    async with asyncio.timeout(5):
        assert (await watched).kind is EventKind.DELETED
        assert [e async for e in stream] == []  # and the stream ends there
    with pytest.raises(NotFound) as gone:
        await s.chats.get(OWNER, chat_id)
    assert gone.value.reason == "CHAT_NOT_FOUND"
    assert s.runs.get(chat_id) is None
    s.model.reply("late")
    assert s.model.unanswered_replies == 1
    assert await s.store.get_chat_any_owner(chat_id) is None and await s.store.events_after(chat_id, 0) == []


async def _send_once(s: Services, chat_id: str, request_id: str, text: str, ran: list[str]) -> bytes:
    """SendMessage as the servicer makes it idempotent: the response bytes are what a retry gets back."""

    async def work() -> bytes:
        ran.append(text)
        chat, message = await s.chats.send_message(OWNER, chat_id, text)
        return f"{chat.id} run {chat.run.run_no} message {message.seq}".encode()

    return await s.idempotency.once(OWNER, "SendMessage", request_id, work, body=text.encode(), scope=chat_id)


async def test_a_request_id_sent_twice_runs_once_and_answers_the_same(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    ran: list[str] = []
    first = await _send_once(s, chat_id, "req-1", "task", ran)
    again = await _send_once(s, chat_id, "req-1", "task", ran)  # not CHAT_RUNNING: the first answer
    assert again == first == f"{chat_id} run 1 message 2".encode() and ran == ["task"]
    with pytest.raises(InvalidArgument) as reused:
        await _send_once(s, chat_id, "req-1", "another task", ran)
    assert reused.value.reason == "REQUEST_ID_REUSED" and ran == ["task"]
    await s.model.wait_calls(1)
    assert await contents(s, chat_id) == ["task"] and len(s.model.calls) == 1
    # The same id on another chat is another request.
    other = await new_chat(s, ASKING)
    assert await _send_once(s, other, "req-1", "task", ran) == f"{other} run 1 message 2".encode()


async def test_of_two_racing_requests_with_one_id_one_does_the_work(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    ran: list[str] = []
    outcomes = await asyncio.gather(
        _send_once(s, chat_id, "req-1", "task", ran),
        _send_once(s, chat_id, "req-1", "task", ran),
        return_exceptions=True,
    )
    answered = [o for o in outcomes if isinstance(o, bytes)]
    assert answered == [f"{chat_id} run 1 message 2".encode()] and ran == ["task"], outcomes
    assert [_reason(o) for o in outcomes if isinstance(o, BaseException)] == ["REQUEST_IN_PROGRESS"]
    # Its retry, once the first has finished, gets the first's answer.
    assert await _send_once(s, chat_id, "req-1", "task", ran) == answered[0] and ran == ["task"]
    await s.model.wait_calls(1)
    assert len(s.model.calls) == 1 and await contents(s, chat_id) == ["task"]


async def test_a_request_that_failed_may_be_retried_with_its_id(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    await run_until_waiting(s, chat_id)
    ran: list[str] = []
    with pytest.raises(FailedPrecondition):  # waiting: refused, and the id keeps nothing
        await _send_once(s, chat_id, "req-2", "task", ran)
    await s.chats.cancel(OWNER, chat_id)
    assert await _send_once(s, chat_id, "req-2", "task", ran) == f"{chat_id} run 2 message 8".encode()
    assert ran == ["task", "task"]
