"""A run rebuilt from a long journal (after a restart, or taken over from a replica that died) shares the
event loop while it replays: on SQLite nothing in a replayed step suspends, so without a yield per step the
whole replay would run as one callback and stall every other call. Real storage (SQLite file, PostgreSQL),
a real RunManager; the one part replaced is the model, which these fixed-reply agents never call."""

from __future__ import annotations

import asyncio

from agentok_server.domain.chats import ChatService
from agentok_server.domain.events import EventHub
from agentok_server.domain.model import Budget, ChatStatus
from agentok_server.domain.runs import JOURNAL_PAGE, RunManager
from agentok_server.settings import Settings
from agentok_server.storage.repository import Repository

from .test_run_limits import ENDLESS_FLOW, NoCode, NoModel, NoTools

TURNS = JOURNAL_PAGE + 200  # more than one page of journal: the rebuilt run reads it in pages


async def test_a_long_replay_lets_other_tasks_run_between_its_steps(repo: Repository) -> None:
    settings = Settings(default_max_agent_turns=TURNS, max_agent_turns_limit=TURNS)
    hub = EventHub()
    first = RunManager(repo, hub, NoModel(), settings, executor=NoCode(), tools=NoTools())
    chats = ChatService(repo, hub, first, keepalive_seconds=60, default_budget=Budget(max_agent_turns=TURNS))
    flow = await repo.insert_flow(owner="alice", name="f", graph=ENDLESS_FLOW, warnings=[])
    chat_id = (await chats.create("alice", "c", "flow", flow.id)).id
    started, _ = await chats.send_message("alice", chat_id, "go")
    async for event in await chats.watch("alice", chat_id, started.last_seq):
        if event.seq >= JOURNAL_PAGE + 50:
            break
    await first.stop(chat_id)  # as the process dying mid-run leaves it: running, with its journal
    journaled = len(await repo.journal(chat_id, started.run.run_no))
    assert journaled > JOURNAL_PAGE

    # The replica comes back (same id, so it reclaims its run at once) and rebuilds the run.
    again = RunManager(repo, hub, NoModel(), settings, executor=NoCode(), tools=NoTools())
    (run,) = await again.take_over([chat_id])
    progress = []
    while not run.live.is_set():
        progress.append(run.steps)
        await asyncio.sleep(0)
    # This task ran between (nearly) every two replayed steps, instead of once before and once after them all.
    assert len(progress) >= journaled // 2, progress[:10]
    assert max(b - a for a, b in zip(progress, progress[1:], strict=False)) <= 2

    # The rebuilt run went on exactly where it was: every turn once, then the budget's note.
    async for event in await chats.watch("alice", chat_id, 0):
        if event.status is not None and event.status.status is ChatStatus.COMPLETED:
            break
    messages = await repo.list_messages(chat_id, 10 * TURNS, 0)
    assert [m.content for m in messages[1:-1]] == ["pong", "ping"] * (TURNS // 2)
    assert f"budget of {TURNS} agent turns" in messages[-1].content
    await again.shutdown()
