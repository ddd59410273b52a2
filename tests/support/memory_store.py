"""An in-memory implementation of the domain's storage ports (server/agentok_server/domain/ports.py), for unit
tests of ChatService and the run manager that need no database and no socket.

It follows storage/repository/ rule for rule (the same preconditions in apply_step, the same lease rules,
the same idempotency claims); tests/unit/test_memory_store.py runs the same scenarios against both so this
fake cannot drift from the real thing. Like cosmicpython's FakeRepository it satisfies the Protocols
structurally, inheriting from none of them.

Every call first lets the event loop run others (as an awaited database driver does), then does all its work
with no await in between: that is what the real store's transaction guarantees, and the yield is what lets two
racing callers both read before either writes.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from agentok_server.domain.model import (
    Budget,
    Chat,
    ChatEvent,
    ChatStatus,
    EventKind,
    Flow,
    JournalEntry,
    Message,
    NewMessage,
    RunState,
    Tool,
)
from agentok_server.domain.ports import (
    ChatsAndFlows,
    Claim,
    IdempotencyStore,
    RunLimitReached,
    RunStore,
    StepItem,
    StepResult,
    ToolStore,
)

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class _ChatRow:
    chat: Chat
    graph: dict[str, Any]
    events: list[ChatEvent] = field(default_factory=list)
    journal: dict[int, list[JournalEntry]] = field(default_factory=dict)  # run_no -> entries, step 1 first
    lease_holder: str | None = None
    lease_expires_at: datetime | None = None


@dataclass
class _ClaimRow:
    response: bytes | None
    created_at: datetime
    fingerprint: str | None


@dataclass
class _Tables:
    """The data every replica's view of the store shares."""

    chats: dict[str, _ChatRow] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    claims: dict[tuple[str, str, str], _ClaimRow] = field(default_factory=dict)
    tools: dict[tuple[str, str], Tool] = field(default_factory=dict)  # (owner, id): ids are per owner


class MemoryStore:
    """ChatStore, RunStore, FlowStore, ToolStore and IdempotencyStore, in dicts."""

    def __init__(self, *, replica_id: str = "replica-a", tables: _Tables | None = None) -> None:
        self._replica_id = replica_id
        self._t = tables or _Tables()
        # apply_step calls through this view that wrote nothing (a lost race, a fence): what a test can't see
        # in the data, since a refused step leaves none.
        self.refused_steps = 0

    @property
    def replica_id(self) -> str:
        return self._replica_id

    def replica(self, replica_id: str) -> MemoryStore:
        """The same data as another replica sees it (a peer that takes runs over)."""
        return MemoryStore(replica_id=replica_id, tables=self._t)

    # -- what a test does to the data as another process would ------------------------------------------

    def take_lease(self, chat_id: str, holder: str) -> None:
        """Another replica holds the run's lease now, and keeps renewing it."""
        row = self._t.chats[chat_id]
        row.lease_holder, row.lease_expires_at = holder, _now() + timedelta(days=1)

    def expire_lease(self, chat_id: str) -> None:
        """The holder stopped renewing (it died): its lease has lapsed."""
        self._t.chats[chat_id].lease_expires_at = _now() - timedelta(days=1)

    def lease_holder(self, chat_id: str) -> str | None:
        return self._t.chats[chat_id].lease_holder

    # -- flows --------------------------------------------------------------------------------------------

    async def insert_flow(self, *, owner: str, name: str, graph: dict[str, Any], warnings: list[str]) -> Flow:
        await asyncio.sleep(0)
        # Copies in and out, as a database's rows are: nobody shares a graph with the store.
        graph, warnings = copy.deepcopy(graph), list(warnings)
        flow = Flow(id=_new_id(), owner=owner, name=name, graph=graph, warnings=warnings, created_at=_now())
        self._t.flows[flow.id] = flow
        return flow

    async def get_flow(self, owner: str, flow_id: str) -> Flow | None:
        await asyncio.sleep(0)
        return self._flow(owner, flow_id)

    def _flow(self, owner: str, flow_id: str) -> Flow | None:
        flow = self._t.flows.get(flow_id)
        return flow if flow is not None and flow.owner == owner else None

    async def list_flows(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Flow]:
        await asyncio.sleep(0)
        rows = [f for f in self._t.flows.values() if f.owner == owner]
        return _page(rows, limit, after, lambda f: (f.created_at, f.id))

    async def delete_flow(self, owner: str, flow_id: str) -> bool:
        await asyncio.sleep(0)
        if self._flow(owner, flow_id) is None:
            return False
        del self._t.flows[flow_id]
        return True

    # -- tools --------------------------------------------------------------------------------------------

    async def insert_tool(self, tool: Tool) -> Tool | None:
        await asyncio.sleep(0)
        key = (tool.owner, tool.id or _new_id())
        if key in self._t.tools:
            return None
        at = _now()
        stored = _copied(tool, id=key[1], created_at=at, updated_at=at)
        self._t.tools[key] = stored
        return stored

    async def get_tool(self, owner: str, tool_id: str) -> Tool | None:
        await asyncio.sleep(0)
        return self._t.tools.get((owner, tool_id))

    async def get_tools(self, owner: str, ids: Sequence[str]) -> dict[str, Tool]:
        await asyncio.sleep(0)
        return {i: self._t.tools[(owner, i)] for i in ids if (owner, i) in self._t.tools}

    async def list_tools(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Tool]:
        await asyncio.sleep(0)
        rows = [t for (o, _), t in self._t.tools.items() if o == owner]
        return _page(rows, limit, after, lambda t: (t.created_at, t.id))

    async def update_tool(self, tool: Tool) -> Tool | None:
        await asyncio.sleep(0)
        key = (tool.owner, tool.id)
        current = self._t.tools.get(key)
        if current is None:
            return None
        stored = _copied(tool, created_at=current.created_at, updated_at=_now())
        self._t.tools[key] = stored
        return stored

    async def delete_tool(self, owner: str, tool_id: str) -> bool:
        await asyncio.sleep(0)
        return self._t.tools.pop((owner, tool_id), None) is not None

    # -- chats --------------------------------------------------------------------------------------------

    async def insert_chat(
        self,
        *,
        owner: str,
        name: str,
        from_type: str,
        from_flow: str,
        graph: dict[str, Any],
        budget: Budget | None = None,
    ) -> Chat:
        await asyncio.sleep(0)
        at = _now()
        chat = Chat(
            id=_new_id(),
            owner=owner,
            name=name,
            from_type=from_type,
            from_flow=from_flow,
            status=ChatStatus.READY,
            error="",
            input_prompt="",
            last_seq=0,
            created_at=at,
            updated_at=at,
            budget=budget or Budget(),
            run=RunState(),
        )
        self._t.chats[chat.id] = _ChatRow(chat=chat, graph=copy.deepcopy(graph))
        return chat

    def _row(self, chat_id: str, owner: str | None = None) -> _ChatRow | None:
        row = self._t.chats.get(chat_id)
        return row if row is not None and owner in (None, row.chat.owner) else None

    async def get_chat(self, owner: str, chat_id: str) -> Chat | None:
        await asyncio.sleep(0)
        row = self._row(chat_id, owner)
        return row.chat if row is not None else None

    async def get_chat_any_owner(self, chat_id: str) -> Chat | None:
        await asyncio.sleep(0)
        row = self._row(chat_id)
        return row.chat if row is not None else None

    async def get_chat_graph(self, chat_id: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        row = self._row(chat_id)
        return copy.deepcopy(row.graph) if row is not None else None

    async def list_chats(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Chat]:
        await asyncio.sleep(0)
        rows = [r.chat for r in self._t.chats.values() if r.chat.owner == owner]
        return _page(rows, limit, after, lambda c: (c.created_at, c.id))

    async def delete_chat(self, owner: str, chat_id: str) -> Chat | None:
        """Deletes the chat with its history and journals; returns it as it was."""
        await asyncio.sleep(0)
        row = self._row(chat_id, owner)
        if row is None:
            return None
        del self._t.chats[chat_id]
        return row.chat

    async def list_messages(self, chat_id: str, limit: int, after_seq: int) -> list[Message]:
        await asyncio.sleep(0)
        row = self._row(chat_id)
        events = row.events if row is not None else []
        return [e.message for e in events if e.message is not None and e.seq > after_seq][:limit]

    async def events_after(self, chat_id: str, after_seq: int) -> list[ChatEvent]:
        await asyncio.sleep(0)
        row = self._row(chat_id)
        return [e for e in row.events if e.seq > after_seq] if row is not None else []

    async def apply_step(
        self,
        chat_id: str,
        items: Sequence[StepItem],
        *,
        require: Sequence[ChatStatus] | None = None,
        owner: str | None = None,
        journal: Sequence[JournalEntry] = (),
        start_run: str | None = None,
        run_no: int | None = None,
        holder: str | None = None,
        lease_until: datetime | None = None,
        max_runs_per_owner: int | None = None,
        at_step: int | None = None,
    ) -> StepResult | None:
        """As Repository.apply_step: every check first, then every write, with nothing between them."""
        await asyncio.sleep(0)
        cap = max_runs_per_owner if start_run is not None else None
        assert cap is None or owner is not None, "the run cap counts one owner's runs"
        row = self._row(chat_id, owner)
        if (
            row is None
            or (require is not None and row.chat.status not in require)
            or (run_no is not None and row.chat.run.run_no != run_no)
            # The fence names the holder only: a lapsed lease lets its holder write until someone takes it.
            or (holder is not None and lease_until is None and row.lease_holder != holder)
            or (at_step is not None and row.chat.run.run_steps != at_step)
        ):
            self.refused_steps += 1
            return None
        chat = row.chat
        if cap is not None and self._runs_in_progress(chat.owner) >= cap:
            raise RunLimitReached(cap)
        at = _now()
        run = chat.run
        if start_run is not None:
            run = dataclasses.replace(run, run_no=run.run_no + 1, run_input=start_run, run_steps=0)
        if journal:
            row.journal.setdefault(run.run_no, []).extend(journal)
            run = dataclasses.replace(run, run_steps=run.run_steps + len(journal))
        seq, events = chat.last_seq, []
        status, error, prompt, pending = chat.status, chat.error, chat.input_prompt, chat.pending_tool_calls
        for item in items:
            seq += 1
            if isinstance(item, NewMessage):
                message = Message(
                    id=_new_id(),
                    chat_id=chat_id,
                    seq=seq,
                    type=item.type,
                    sender=item.sender,
                    receiver=item.receiver,
                    content=item.content,
                    created_at=at,
                    tool_calls=item.tool_calls,
                    tool_responses=item.tool_responses,
                    usage=item.usage,
                )
                events.append(ChatEvent(chat_id=chat_id, seq=seq, time=at, kind=EventKind.MESSAGE, message=message))
            else:
                # As stored: the event carries the status, error and prompt; the deadline is kept on the chat.
                change = dataclasses.replace(item, input_deadline=None)
                events.append(ChatEvent(chat_id=chat_id, seq=seq, time=at, kind=EventKind.STATUS, status=change))
                status, error, prompt, pending = item.status, item.error, item.input_prompt, item.pending_tool_calls
                run = dataclasses.replace(run, input_deadline=item.input_deadline)
        row.events += events
        if lease_until is not None:
            row.lease_holder, row.lease_expires_at = holder, lease_until
        if not status.in_run:
            row.lease_holder, row.lease_expires_at = None, None
        row.chat = dataclasses.replace(
            chat,
            status=status,
            error=error,
            input_prompt=prompt,
            pending_tool_calls=pending,
            last_seq=seq,
            updated_at=at,
            run=run,
            usage=chat.usage.after(journal, new_run=start_run is not None),
        )
        return StepResult(chat=row.chat, events=events)

    def _runs_in_progress(self, owner: str) -> int:
        return sum(1 for r in self._t.chats.values() if r.chat.owner == owner and r.chat.status.in_run)

    # -- runs and leases ----------------------------------------------------------------------------------

    async def journal(
        self, chat_id: str, run_no: int, after_step: int = 0, limit: int | None = None
    ) -> list[JournalEntry]:
        await asyncio.sleep(0)
        row = self._row(chat_id)
        entries = row.journal.get(run_no, []) if row is not None else []
        # Entry i is step i + 1: a run's steps are numbered from 1 with no gaps.
        return entries[after_step : None if limit is None else after_step + limit]

    async def acquire_lease(self, chat_id: str, holder: str, until: datetime) -> bool:
        await asyncio.sleep(0)
        row = self._row(chat_id)
        if row is None or not row.chat.status.in_run:
            return False
        expires = row.lease_expires_at
        if row.lease_holder not in (None, holder) and (expires is None or expires >= _now()):
            return False
        row.lease_holder, row.lease_expires_at = holder, until
        return True

    async def renew_leases(self, holder: str, chat_ids: Sequence[str], until: datetime) -> dict[str, ChatStatus]:
        await asyncio.sleep(0)
        alive: dict[str, ChatStatus] = {}
        for chat_id in chat_ids:
            row = self._row(chat_id)
            if row is not None and row.lease_holder == holder and row.chat.status.in_run:
                row.lease_expires_at = until
                alive[chat_id] = row.chat.status
        return alive

    async def release_leases(self, holder: str) -> None:
        await asyncio.sleep(0)
        at = _now()
        for row in self._t.chats.values():
            if row.lease_holder == holder:
                row.lease_expires_at = at

    async def unheld_runs(self, limit: int = 100) -> list[str]:
        await asyncio.sleep(0)
        at = _now()
        return [
            chat_id
            for chat_id, row in self._t.chats.items()
            if row.chat.status.in_run
            and (row.lease_holder is None or (row.lease_expires_at is not None and row.lease_expires_at < at))
        ][:limit]

    async def held_runs(self, holder: str) -> list[str]:
        await asyncio.sleep(0)
        return [c for c, r in self._t.chats.items() if r.chat.status.in_run and r.lease_holder == holder]

    # -- idempotent writes --------------------------------------------------------------------------------

    async def claim_request(
        self, owner: str, method: str, request_id: str, stale_before: datetime, *, fingerprint: str | None = None
    ) -> Claim:
        await asyncio.sleep(0)
        key = (owner, method, request_id)
        row = self._t.claims.get(key)
        if row is None:
            self._t.claims[key] = _ClaimRow(response=None, created_at=_now(), fingerprint=fingerprint)
            return Claim(claimed=True)
        if None not in (row.fingerprint, fingerprint) and row.fingerprint != fingerprint:
            return Claim(claimed=False, reused=True)
        if row.response is not None:
            return Claim(claimed=False, response=row.response)
        if row.created_at < stale_before:  # its attempt died mid-write: this caller redoes it
            row.created_at, row.fingerprint = _now(), fingerprint or row.fingerprint
            return Claim(claimed=True)
        return Claim(claimed=False)

    async def record_response(self, owner: str, method: str, request_id: str, response: bytes) -> None:
        await asyncio.sleep(0)
        row = self._t.claims.get((owner, method, request_id))
        if row is not None:
            row.response = response

    async def release_claim(self, owner: str, method: str, request_id: str) -> None:
        await asyncio.sleep(0)
        key = (owner, method, request_id)
        row = self._t.claims.get(key)
        if row is not None and row.response is None:
            del self._t.claims[key]


def _copied(tool: Tool, **changes: Any) -> Tool:
    """The tool as a row stores it: nobody shares its schema or secrets with the store."""
    parameters, secrets = copy.deepcopy(tool.parameters), dict(tool.secrets)
    return dataclasses.replace(tool, parameters=parameters, secrets=secrets, **changes)


def _page(rows: list[T], limit: int, after: tuple[datetime, str] | None, key: Callable[[T], Any]) -> list[T]:
    """Newest first, after the (created_at, id) cursor, as the real store's keyset pages are."""
    rows = sorted(rows, key=key, reverse=True)
    if after is not None:
        rows = [r for r in rows if key(r) < after]
    return rows[:limit]


def _satisfies_the_ports(store: MemoryStore) -> tuple[ChatsAndFlows, RunStore, IdempotencyStore, ToolStore]:
    """Never called: mypy checks here that MemoryStore is each port ChatService, RunManager and ToolService
    take."""
    return store, store, store, store
