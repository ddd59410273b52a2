"""The run manager in memory: runs rebuilt from their journals after a restart (through resume_all, the path a
starting server takes), journals that no longer replay, lost leases, and the budgets that end a run. A real
RunManager and ChatService on the in-memory store (tests/support/memory_services.py); a restart is a new
RunManager on the same store."""

from __future__ import annotations

from typing import Any

import pytest

from agentok_server.domain.model import ChatStatus, TimeoutAction

from ..support.api import two_agent_flow
from ..support.memory_services import (
    ASKING,
    OWNER,
    MakeServices,
    contents,
    new_chat,
    run_until_waiting,
    until_status,
)

CODE = "```python\nprint(6 * 7)\n```"


async def test_a_waiting_run_taken_over_after_a_crash_asks_nothing_again(services: MakeServices) -> None:
    first = services()
    chat_id = await new_chat(first, ASKING)
    waiting = await run_until_waiting(first, chat_id)
    stored = await first.store.events_after(chat_id, 0)
    await first.runs.stop(chat_id)  # the process dies: the run stops where it is, its lease still held
    assert first.store.lease_holder(chat_id) == first.store.replica_id
    first.store.expire_lease(chat_id)  # ... and nobody renews it

    peer = services(first.store.replica("replica-b"))
    await peer.runs.resume_all()
    assert peer.runs.is_waiting(chat_id) and peer.store.lease_holder(chat_id) == "replica-b"
    assert peer.model.calls == [] and await peer.store.events_after(chat_id, 0) == stored
    assert await peer.chats.get(OWNER, chat_id) == waiting  # the same question, asked once

    with peer.hub.subscribe(chat_id) as sub:
        await peer.chats.send_input(OWNER, chat_id, "more")
        await peer.model.wait_calls(1)
        said = [m["content"] for m in peer.model.calls[0][1:]]  # after the system message
        assert said == ["task", "r1", "more"]  # the whole conversation, rebuilt from the journal
        peer.model.reply("r2")
        await until_status(sub, ChatStatus.WAITING)
        await peer.chats.send_input(OWNER, chat_id, "exit")
        await until_status(sub, ChatStatus.COMPLETED)
    assert await contents(peer, chat_id) == ["task", "r1", "more", "r2"]
    journal = await peer.store.journal(chat_id, waiting.run.run_no)
    assert [(e.kind, e.value) for e in journal] == [
        ("llm", "r1"),
        ("say", None),
        ("human", "more"),
        ("say", None),
        ("llm", "r2"),
        ("say", None),
        ("human", "exit"),
    ]
    assert len(first.model.calls) == len(peer.model.calls) == 1  # each reply asked for once


async def test_a_run_stopped_mid_model_call_repeats_only_that_call_after_a_restart(services: MakeServices) -> None:
    first = services()
    chat_id = await new_chat(first, two_agent_flow(a={"human_input_mode": "NEVER"}, edge={"max_turns": 3}))
    with first.hub.subscribe(chat_id) as sub:
        await first.chats.send_message(OWNER, chat_id, "task")
        first.model.reply("r1")
        await first.model.wait_calls(2)  # the second reply is pending when the server stops
    await first.runs.shutdown()
    assert await contents(first, chat_id) == ["task", "r1", ""]

    again = services(first.store)  # the same replica, restarted
    with again.hub.subscribe(chat_id) as sub:
        await again.runs.resume_all()
        await again.model.wait_calls(1)
        assert again.model.calls == first.model.calls[1:]  # r1 came from the journal; the lost call is made again
        again.model.reply("r2", "r3")
        await until_status(sub, ChatStatus.COMPLETED)
    assert await contents(again, chat_id) == ["task", "r1", "", "r2", "", "r3"]  # nothing stored twice
    assert len(again.model.calls) == 2 and again.model.unanswered_replies == 0
    journal = await again.store.journal(chat_id, 1)
    assert [e.value for e in journal if e.kind == "llm"] == ["r1", "r2", "r3"]


async def test_a_journal_that_no_longer_replays_ends_the_chat_in_error(services: MakeServices) -> None:
    """Journaled with code execution off, resumed with it on: where the user proxy auto-replied it would now
    run the code, so the run can't be rebuilt."""
    first = services(code_execution_enabled=False)
    flow = two_agent_flow(
        a={"human_input_mode": "ALWAYS", "enable_code_execution": True},
        b={"disable_llm": True, "default_auto_reply": CODE},
        edge={"max_turns": 3},
    )
    chat_id = await new_chat(first, flow)
    with first.hub.subscribe(chat_id) as sub:
        await first.chats.send_message(OWNER, chat_id, "hello")
        await until_status(sub, ChatStatus.WAITING)
        await first.chats.send_input(OWNER, chat_id, "")  # skip: the auto-reply, empty without code execution
        await until_status(sub, ChatStatus.WAITING)
    said = await contents(first, chat_id)
    assert said == ["hello", CODE, "", CODE]
    await first.runs.shutdown()

    again = services(first.store, code_execution_enabled=True)
    await again.runs.resume_all()
    chat = await again.chats.get(OWNER, chat_id)
    assert chat.status is ChatStatus.ERROR
    assert "could not be resumed after a restart" in chat.error
    assert "where the run stored a message before the restart, it now ran code" in chat.error
    assert "AGENTOK_CODE_EXECUTION_ENABLED" in chat.error
    assert await contents(again, chat_id) == said and again.code.calls == [] and first.code.calls == []
    assert again.runs.get(chat_id) is None and again.store.lease_holder(chat_id) is None
    # An end like any other: a new message starts a new run.
    restarted, _ = await again.chats.send_message(OWNER, chat_id, "again")
    assert (restarted.status, restarted.run.run_no) == (ChatStatus.RUNNING, 2)


@pytest.mark.parametrize("how", ["taken while live", "lapsed and acquired"])
async def test_a_run_whose_lease_another_replica_took_stops_here(services: MakeServices, how: str) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    await s.chats.send_message(OWNER, chat_id, "task")
    await s.model.wait_calls(1)
    stored = await s.store.events_after(chat_id, 0)
    if how == "taken while live":
        s.store.take_lease(chat_id, "replica-b")
    else:
        s.store.expire_lease(chat_id)
        peer = s.store.replica("replica-b")
        assert await peer.acquire_lease(chat_id, "replica-b", s.runs.lease_until())

    await s.runs.tend_leases()
    assert s.runs.get(chat_id) is None
    s.model.reply("late")  # the stopped call never takes it
    assert s.model.unanswered_replies == 1
    assert await s.store.events_after(chat_id, 0) == stored and s.store.refused_steps == 0
    assert s.store.lease_holder(chat_id) == "replica-b"  # not taken back: its holder is alive


async def test_a_step_after_the_lease_was_lost_writes_nothing(services: MakeServices) -> None:
    """Before the keeper's next round notices, the run's own next step is refused by the lease fence."""
    s = services()
    chat_id = await new_chat(s, ASKING)
    await s.chats.send_message(OWNER, chat_id, "task")
    await s.model.wait_calls(1)
    stored = await s.store.events_after(chat_id, 0)
    s.store.take_lease(chat_id, "replica-b")
    run = s.runs.get(chat_id)
    task = s.runs.task(run) if run is not None else None
    assert task is not None
    s.model.reply("r1")
    await task  # the run ends quietly: the chat is someone else's now
    assert s.store.refused_steps == 1 and await s.store.events_after(chat_id, 0) == stored
    assert (await s.chats.get(OWNER, chat_id)).status is ChatStatus.RUNNING


async def test_a_lapsed_lease_nobody_took_is_renewed_and_the_run_goes_on(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, ASKING)
    await s.chats.send_message(OWNER, chat_id, "task")
    await s.model.wait_calls(1)
    s.store.expire_lease(chat_id)
    await s.runs.tend_leases()
    assert s.runs.get(chat_id) is not None and s.store.lease_holder(chat_id) == s.store.replica_id
    with s.hub.subscribe(chat_id) as sub:
        s.model.reply("r1")
        await until_status(sub, ChatStatus.WAITING)
    assert await contents(s, chat_id) == ["task", "r1"]


async def test_the_turn_budget_ends_a_run_completed(services: MakeServices) -> None:
    s = services()
    chat_id = await new_chat(s, two_agent_flow(a={"human_input_mode": "NEVER"}), max_agent_turns=3)
    s.model.reply("r1", "r2", "r3")
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "task")
        await until_status(sub, ChatStatus.COMPLETED)
    said = await contents(s, chat_id)
    assert said == ["task", "r1", "", "r2", "The run ended: its budget of 3 agent turns was reached."]
    # The user proxy's auto-reply would have been the fourth turn: the run ended instead of storing it.
    assert len(s.model.calls) == 2 and s.model.unanswered_replies == 1
    assert s.runs.get(chat_id) is None and s.store.lease_holder(chat_id) is None


async def _unanswered(services: MakeServices, action: TimeoutAction, **edge: Any) -> tuple[list[str], list[Any]]:
    """A run whose person never answers within 1 ms (the timeout elapses; the test waits only for its end)."""
    s = services()
    graph = two_agent_flow(a={"human_input_mode": "ALWAYS"}, edge=edge)
    chat_id = await new_chat(s, graph, input_timeout_seconds=0.001, input_timeout_action=action)
    s.model.reply("r1", "r2")
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "task")
        asked = await until_status(sub, ChatStatus.WAITING)
        assert asked.status is not None and asked.status.input_prompt
        await until_status(sub, ChatStatus.COMPLETED)
    assert s.store.lease_holder(chat_id) is None
    journal = await s.store.journal(chat_id, 1)
    return await contents(s, chat_id), [(e.kind, e.value) for e in journal if e.kind == "human"]


async def test_an_unanswered_question_ends_the_run_when_the_timeout_says_end(services: MakeServices) -> None:
    said, answers = await _unanswered(services, TimeoutAction.END)
    assert said == ["task", "r1", "The run ended: nobody answered within 0.001 seconds."]
    assert answers == []


async def test_an_unanswered_question_gets_the_empty_reply_when_the_timeout_says_skip(services: MakeServices) -> None:
    said, answers = await _unanswered(services, TimeoutAction.SKIP, max_turns=2)
    assert said == ["task", "r1", "Nobody answered within 0.001 seconds: the empty reply was used.", "", "r2"]
    assert answers == [("human", "")]
