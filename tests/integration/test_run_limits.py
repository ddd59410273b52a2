"""The server's caps on runs, on a real SQLite file and a real PostgreSQL database: a turn budget above the
limit is refused at creation, an owner's N+1th run in progress is refused with nothing written (also when
the starts race), and a run that ends frees its slot. A real ChatService and RunManager run the chats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from agentok_server.domain.chats import ChatService
from agentok_server.domain.errors import InvalidArgument, ResourceExhausted
from agentok_server.domain.events import EventHub
from agentok_server.domain.model import Budget, ChatStatus, ToolResult
from agentok_server.domain.runs import RunManager
from agentok_server.engine.tool_calls import ModelReply
from agentok_server.settings import Settings
from agentok_server.storage.repository import Repository

TURN_LIMIT = 50
RUN_CAP = 2

# A person answers the user proxy every turn (ALWAYS): a started run stays in progress until answered.
WAITING_FLOW: dict[str, Any] = {
    "nodes": [
        {"id": "init", "type": "initializer", "data": {"name": "Initializer"}},
        {"id": "user", "type": "user", "data": {"name": "User", "human_input_mode": "ALWAYS"}},
        {
            "id": "agent",
            "type": "conversable",
            "data": {"name": "Agent", "disable_llm": True, "default_auto_reply": "hi"},
        },
    ],
    "edges": [{"source": "init", "target": "user"}, {"source": "user", "target": "agent", "type": "converse"}],
}
# Two fixed-reply agents and nobody to ask: only the turn budget ends the run.
ENDLESS_FLOW: dict[str, Any] = {
    "nodes": [
        {"id": "init", "type": "initializer", "data": {"name": "Initializer"}},
        {
            "id": "user",
            "type": "user",
            "data": {
                "name": "User",
                "human_input_mode": "NEVER",
                "default_auto_reply": "ping",
                "max_consecutive_auto_reply": 1_000_000,
            },
        },
        {
            "id": "agent",
            "type": "conversable",
            "data": {
                "name": "Agent",
                "disable_llm": True,
                "default_auto_reply": "pong",
                "max_consecutive_auto_reply": 1_000_000,
            },
        },
    ],
    "edges": [{"source": "init", "target": "user"}, {"source": "user", "target": "agent", "type": "converse"}],
}


class NoModel:
    """The one part replaced: these flows never call a model (their agents reply with fixed text)."""

    async def complete(self, *_: object, **__: object) -> ModelReply:
        raise AssertionError("no model is called in these tests")

    async def propose(self, *_: object, **__: object) -> ModelReply:
        raise AssertionError("no model is called in these tests")


class NoCode:
    """Nor does any of their agents run code."""

    async def run(self, *_: object) -> str:
        raise AssertionError("no code is run in these tests")


class NoTools:
    """Nor do they bind tools."""

    async def run(self, *_: object) -> ToolResult:
        raise AssertionError("no tool is run in these tests")


@dataclass
class Service:
    repo: Repository
    chats: ChatService
    runs: RunManager

    async def chat(self, owner: str, flow: dict[str, Any], **budget: Any) -> str:
        flow_id = (await self.repo.insert_flow(owner=owner, name="f", graph=flow, warnings=[])).id
        return (await self.chats.create(owner, "c", "flow", flow_id, **budget)).id

    async def until(self, owner: str, chat_id: str, after_seq: int, status: ChatStatus) -> None:
        """Watches the chat (as WatchChat does) until it reaches `status`."""
        async for event in await self.chats.watch(owner, chat_id, after_seq):
            if event.status is not None and event.status.status is status:
                return
            assert event.status is None or event.status.status.in_run, event


@pytest.fixture()
async def service(repo: Repository) -> AsyncIterator[Service]:
    settings = Settings(
        default_max_agent_turns=10, max_agent_turns_limit=TURN_LIMIT, max_concurrent_runs_per_owner=RUN_CAP
    )
    hub = EventHub()
    runs = RunManager(repo, hub, NoModel(), settings, executor=NoCode(), tools=NoTools())
    chats = ChatService(
        repo,
        hub,
        runs,
        keepalive_seconds=60,
        default_budget=Budget(max_agent_turns=settings.default_max_agent_turns),
        max_agent_turns_limit=settings.max_agent_turns_limit,
        max_runs_per_owner=settings.max_concurrent_runs_per_owner,
    )
    yield Service(repo, chats, runs)
    await runs.shutdown()


async def test_a_turn_budget_above_the_limit_is_refused_naming_the_field_and_the_limit(service: Service) -> None:
    with pytest.raises(InvalidArgument) as err:
        await service.chat("alice", WAITING_FLOW, max_agent_turns=TURN_LIMIT + 1)
    assert err.value.field_violations[0][0] == "max_agent_turns"
    assert f"at most {TURN_LIMIT}" in err.value.message
    assert await service.repo.list_chats("alice", 10, None) == []
    # At the limit is fine; 0 is the server's default, not "unlimited".
    at_limit = await service.chat("alice", WAITING_FLOW, max_agent_turns=TURN_LIMIT)
    default = await service.chat("alice", WAITING_FLOW)
    assert (await service.chats.get("alice", at_limit)).budget.max_agent_turns == TURN_LIMIT
    assert (await service.chats.get("alice", default)).budget.max_agent_turns == 10


async def test_a_chat_stored_without_a_budget_runs_no_more_than_the_limit(service: Service) -> None:
    # As a chat created before the limit existed (0 meant "no limit" then) is stored.
    flow = await service.repo.insert_flow(owner="alice", name="f", graph=ENDLESS_FLOW, warnings=[])
    chat = await service.repo.insert_chat(
        owner="alice", name="old", from_type="flow", from_flow=flow.id, graph=ENDLESS_FLOW, budget=Budget()
    )
    started, _ = await service.chats.send_message("alice", chat.id, "go")
    await service.until("alice", chat.id, started.last_seq, ChatStatus.COMPLETED)
    messages = await service.repo.list_messages(chat.id, 1000, 0)
    assert len(messages) == 1 + TURN_LIMIT + 1  # the opening message, the agents' turns, the budget's note
    assert f"budget of {TURN_LIMIT} agent turns" in messages[-1].content


async def test_the_run_past_the_cap_is_refused_with_nothing_stored_until_a_run_ends(service: Service) -> None:
    waiting = []
    for _ in range(RUN_CAP):
        chat_id = await service.chat("alice", WAITING_FLOW)
        started, _ = await service.chats.send_message("alice", chat_id, "hello")
        await service.until("alice", chat_id, started.last_seq, ChatStatus.WAITING)
        waiting.append(chat_id)
    extra = await service.chat("alice", WAITING_FLOW)
    with pytest.raises(ResourceExhausted) as err:
        await service.chats.send_message("alice", extra, "one too many")
    assert err.value.reason == "TOO_MANY_RUNS"
    assert err.value.metadata == {"limit": str(RUN_CAP)} and err.value.retry_after_seconds > 0
    untouched = await service.chats.get("alice", extra)
    assert (untouched.status, untouched.last_seq, untouched.run.run_no) == (ChatStatus.READY, 0, 0)
    assert await service.repo.list_messages(extra, 10, 0) == []
    assert await service.repo.journal(extra, 1) == []
    assert await service.repo.count_runs_in_progress("alice") == RUN_CAP
    # The cap is per owner: another owner starts runs as usual.
    other = await service.chat("bob", WAITING_FLOW)
    await service.chats.send_message("bob", other, "hello")
    # Answering a waiting run is never refused: it continues a run, it starts none.
    answered = await service.chats.send_input("alice", waiting[0], "go on")
    await service.until("alice", waiting[0], answered.last_seq, ChatStatus.WAITING)
    # A run that ends frees its slot.
    ended = await service.chats.send_input("alice", waiting[0], "exit")
    await service.until("alice", waiting[0], ended.last_seq, ChatStatus.COMPLETED)
    assert await service.repo.count_runs_in_progress("alice") == RUN_CAP - 1
    chat, message = await service.chats.send_message("alice", extra, "now there is room")
    assert chat.status is ChatStatus.RUNNING and message.content == "now there is room"


async def test_racing_starts_pass_the_cap_only_as_far_as_it_goes(service: Service) -> None:
    chat_ids = [await service.chat("alice", WAITING_FLOW) for _ in range(RUN_CAP + 3)]
    results = await asyncio.gather(
        *(service.chats.send_message("alice", chat_id, "hello") for chat_id in chat_ids), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    assert len(refused) == 3 and len(results) - len(refused) == RUN_CAP, results
    assert all(r.reason == "TOO_MANY_RUNS" for r in refused)
    assert await service.repo.count_runs_in_progress("alice") == RUN_CAP
    started = [c for c in await service.repo.list_chats("alice", 10, None) if c.run.run_no > 0]
    assert len(started) == RUN_CAP
