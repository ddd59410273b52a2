"""The in-memory store (tests/support/memory_store.py) against the real Repository on a temporary SQLite file:
each scenario runs on both and must give the same results, so the fake the unit tests rely on cannot drift
from the store the server runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentok_server.domain.model import (
    Budget,
    Chat,
    ChatEvent,
    ChatStatus,
    JournalEntry,
    MessageType,
    NewMessage,
    StatusChange,
    TimeoutAction,
)
from agentok_server.domain.ports import RunLimitReached, StepResult
from agentok_server.storage.repository import Repository, make_engine

from ..support.memory_store import MemoryStore

Store = Any  # MemoryStore or Repository: both are every port, neither names a common base
IN_RUN = [ChatStatus.RUNNING, ChatStatus.WAITING]
STARTABLE = [ChatStatus.READY, ChatStatus.COMPLETED, ChatStatus.ERROR]
HOLDER = "replica-a"
LATER = datetime.now(UTC) + timedelta(days=1)
DEADLINE = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _say(content: str, sender: str = "User") -> NewMessage:
    return NewMessage(type=MessageType.USER, sender=sender, receiver="Assistant", content=content)


def _chat(chat: Chat | None) -> Any:
    """What a chat says, without the ids and times each store mints."""
    if chat is None:
        return None
    return (chat.owner, chat.name, chat.status, chat.error, chat.input_prompt, chat.last_seq, chat.budget, chat.run)


def _events(events: list[ChatEvent]) -> list[Any]:
    return [
        (e.seq, e.kind, e.status, e.message and (e.message.seq, e.message.type, e.message.sender, e.message.content))
        for e in events
    ]


def _step(result: StepResult | None) -> Any:
    return None if result is None else (_chat(result.chat), _events(result.events))


async def _new_chat(store: Store, owner: str = "alice", budget: Budget | None = None) -> Chat:
    chat: Chat = await store.insert_chat(
        owner=owner, name="c", from_type="flow", from_flow="f", graph={"nodes": [1]}, budget=budget
    )
    return chat


async def _start(store: Store, chat: Chat, text: str = "task", **kwargs: Any) -> StepResult | None:
    result: StepResult | None = await store.apply_step(
        chat.id,
        [StatusChange(ChatStatus.RUNNING), _say(text)],
        require=STARTABLE,
        owner=chat.owner,
        start_run=text,
        holder=HOLDER,
        lease_until=kwargs.pop("lease_until", LATER),
        **kwargs,
    )
    return result


async def a_run_from_start_to_end(store: Store) -> list[Any]:
    chat = await _new_chat(store, budget=Budget(7, 1.5, TimeoutAction.END))
    seen: list[Any] = [_chat(chat), _step(await _start(store, chat))]
    fence: dict[str, Any] = {"require": [ChatStatus.RUNNING], "run_no": 1, "holder": HOLDER}
    reply = NewMessage(type=MessageType.ASSISTANT, sender="Assistant", receiver="User", content="r1")
    seen.append(_step(await store.apply_step(chat.id, [], journal=[JournalEntry("llm", "r1")], **fence)))
    seen.append(_step(await store.apply_step(chat.id, [reply], journal=[JournalEntry("say")], **fence)))
    asking = StatusChange(ChatStatus.WAITING, input_prompt="your turn?", input_deadline=DEADLINE)
    seen.append(_step(await store.apply_step(chat.id, [asking], **fence)))
    seen.append(_chat(await store.get_chat("alice", chat.id)))
    seen.append(await store.held_runs(HOLDER) == [chat.id])
    answered = await store.apply_step(
        chat.id,
        [StatusChange(ChatStatus.RUNNING)],
        require=[ChatStatus.WAITING],
        owner="alice",
        journal=[JournalEntry("human", "more")],
        run_no=1,
    )
    seen.append(_step(answered))
    seen.append(_step(await store.apply_step(chat.id, [StatusChange(ChatStatus.COMPLETED)], **fence)))
    seen.append(_chat(await store.get_chat_any_owner(chat.id)))
    seen.append(await store.journal(chat.id, 1))
    seen.append(await store.journal(chat.id, 1, after_step=1, limit=1))
    seen.append(await store.held_runs(HOLDER))  # the run ended: its lease went with it
    seen.append(await store.apply_step(chat.id, [], holder=HOLDER))  # ... so its fence refuses the old holder
    seen.append(_events(await store.events_after(chat.id, 2)))
    seen.append([(m.seq, m.content) for m in await store.list_messages(chat.id, 1, 1)])
    # A second run numbers its own journal from 1, and starts with what the first one left.
    seen.append(_step(await _start(store, chat, "again")))
    seen.append(_step(await store.apply_step(chat.id, [], journal=[JournalEntry("llm", "x")], **fence | {"run_no": 2})))
    seen.append((await store.journal(chat.id, 2), await store.journal(chat.id, 1, after_step=2)))
    assert seen[-1] == ([JournalEntry("llm", "x")], [JournalEntry("human", "more")]), "a vacuous scenario"
    return seen


async def steps_that_no_longer_hold_write_nothing(store: Store) -> list[Any]:
    chat = await _new_chat(store)
    await _start(store, chat)
    fence: dict[str, Any] = {"run_no": 1, "holder": HOLDER}
    refused = [
        await store.apply_step(chat.id, [_say("x")], require=[ChatStatus.WAITING], **fence),
        await store.apply_step(chat.id, [_say("x")], require=IN_RUN, run_no=2, holder=HOLDER),
        await store.apply_step(chat.id, [_say("x")], require=IN_RUN, run_no=1, holder="replica-b"),
        await store.apply_step(chat.id, [_say("x")], owner="bob", **fence),
        await _start(store, chat),  # running: not startable
        await store.apply_step("no-such-chat", [_say("x")]),
    ]
    assert refused == [None] * len(refused)
    seen: list[Any] = [_chat(await store.get_chat("alice", chat.id)), await store.get_chat("bob", chat.id)]
    # A lapsed lease still fences by name: its holder writes until another replica takes the lease.
    seen.append(_step(await store.apply_step(chat.id, [_say("y")], **fence)))
    deleted = await store.delete_chat("alice", chat.id)
    seen.append(_chat(deleted))
    seen.append(await store.delete_chat("alice", chat.id))
    seen.append(await store.apply_step(chat.id, [_say("z")], **fence))
    seen += [await store.get_chat("alice", chat.id), await store.get_chat_graph(chat.id)]
    seen += [await store.journal(chat.id, 1), await store.events_after(chat.id, 0)]
    seen += [await store.list_messages(chat.id, 10, 0), await store.held_runs(HOLDER)]
    return seen


async def the_run_cap_writes_nothing(store: Store) -> list[Any]:
    first, second, other = await _new_chat(store), await _new_chat(store), await _new_chat(store, owner="bob")
    seen: list[Any] = [_step(await _start(store, first, max_runs_per_owner=1))]
    try:
        await _start(store, second, max_runs_per_owner=1)
        seen.append("started")
    except RunLimitReached as full:
        seen.append(("refused", full.limit))
    seen.append(_chat(await store.get_chat("alice", second.id)))  # still ready, nothing appended
    seen.append(await store.events_after(second.id, 0))
    seen.append(_step(await _start(store, other, max_runs_per_owner=1)))  # another owner's count
    # Answering a waiting run is no start: the cap does not apply.
    await store.apply_step(first.id, [StatusChange(ChatStatus.WAITING, input_prompt="?")], holder=HOLDER)
    seen.append(_step(await store.apply_step(first.id, [StatusChange(ChatStatus.RUNNING)], max_runs_per_owner=1)))
    assert seen[1] == ("refused", 1)
    return seen


async def leases_pass_between_replicas(store: Store) -> list[Any]:
    live, lapsed, ended = await _new_chat(store), await _new_chat(store), await _new_chat(store)
    await _start(store, live)
    await _start(store, lapsed, lease_until=datetime.now(UTC) - timedelta(seconds=1))
    await _start(store, ended)
    await store.apply_step(ended.id, [StatusChange(ChatStatus.COMPLETED)], holder=HOLDER)
    name = {live.id: "live", lapsed.id: "lapsed", ended.id: "ended"}

    async def names(ids: Awaitable[list[str]]) -> list[str]:
        return sorted(name[i] for i in await ids)

    seen: list[Any] = [await names(store.held_runs(HOLDER)), await names(store.unheld_runs())]
    seen.append([await store.acquire_lease(c.id, "replica-b", LATER) for c in (live, lapsed, ended)])
    seen.append([await store.acquire_lease(live.id, HOLDER, LATER)])  # its own holder renews by acquiring
    renewed = await store.renew_leases(HOLDER, [live.id, lapsed.id, ended.id, "gone"], LATER)
    seen.append({name[k]: v for k, v in renewed.items()})
    seen += [await names(store.held_runs(HOLDER)), await names(store.held_runs("replica-b"))]
    # The taker's steps pass the fence; the old holder's are refused.
    fence: dict[str, Any] = {"require": IN_RUN, "run_no": 1}
    seen.append(_step(await store.apply_step(lapsed.id, [_say("b")], holder="replica-b", **fence)))
    seen.append(_step(await store.apply_step(lapsed.id, [_say("a")], holder=HOLDER, **fence)))
    await store.release_leases(HOLDER)
    seen.append(await names(store.held_runs(HOLDER)))  # released means lapsing now, not letting go of the name
    assert seen[2] == [False, True, False]
    return seen


async def request_ids_are_claimed_once(store: Store) -> list[Any]:
    past, future = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    key = ("alice", "SendMessage", "chat/r1")
    seen: list[Any] = [
        await store.claim_request(*key, past, fingerprint="f1"),
        await store.claim_request(*key, past, fingerprint="f1"),  # in progress
        await store.claim_request(*key, past, fingerprint="f2"),  # another request
        await store.claim_request("bob", *key[1:], past, fingerprint="f2"),  # another owner's id
    ]
    claimed_at = datetime.now(UTC)
    seen += [
        await store.claim_request(*key, future, fingerprint="f1"),  # abandoned: taken over
        await store.claim_request(*key, claimed_at, fingerprint="f1"),  # the takeover's claim is new
        await store.claim_request(*key, future, fingerprint="f1"),  # ... until it too is abandoned
    ]
    await store.record_response(*key, b"first")
    await store.release_claim(*key)  # a finished write's claim stays
    seen += [await store.claim_request(*key, future, fingerprint="f1")]
    seen += [await store.claim_request(*key, future, fingerprint=None)]  # a row without fingerprint matches any
    other = ("alice", "SendInput", "chat/r2")
    await store.claim_request(*other, past, fingerprint="g")
    await store.release_claim(*other)  # the write failed: a retry runs it
    seen += [await store.claim_request(*other, past, fingerprint="h")]
    assert seen[-3].response == b"first"
    return seen


async def pages_go_newest_first(store: Store) -> list[Any]:
    chats = [await _new_chat(store) for _ in range(5)]
    await _new_chat(store, owner="bob")
    first = await store.list_chats("alice", 2, None)
    rest = await store.list_chats("alice", 10, (first[-1].created_at, first[-1].id))
    listed = [c.id for c in first + rest]
    ordered = sorted(chats, key=lambda c: (c.created_at, c.id), reverse=True)
    flows = [await store.insert_flow(owner="alice", name=f"f{i}", graph={}, warnings=["w"]) for i in range(3)]
    flow_page = await store.list_flows("alice", 2, None)
    return [
        len(first),
        listed == [c.id for c in ordered],
        await store.get_flow("bob", flows[0].id),
        (await store.get_flow("alice", flows[0].id)).warnings,
        len(flow_page),
        await store.delete_flow("bob", flows[0].id),
        await store.delete_flow("alice", flows[0].id),
        await store.get_flow("alice", flows[0].id),
    ]


SCENARIOS: list[Callable[[Store], Awaitable[list[Any]]]] = [
    a_run_from_start_to_end,
    steps_that_no_longer_hold_write_nothing,
    the_run_cap_writes_nothing,
    leases_pass_between_replicas,
    request_ids_are_claimed_once,
    pages_go_newest_first,
]


@pytest.fixture
async def repository(tmp_path: Path) -> AsyncIterator[Repository]:
    repo = Repository(make_engine(f"sqlite:///{tmp_path / 'agentok.db'}"), replica_id=HOLDER)
    await repo.create_schema()
    yield repo
    await repo.dispose()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_the_memory_store_does_what_the_repository_does(
    scenario: Callable[[Store], Awaitable[list[Any]]], repository: Repository
) -> None:
    expected = await scenario(repository)
    assert await scenario(MemoryStore(replica_id=HOLDER)) == expected
