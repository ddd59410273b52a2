"""All SQL lives here. Methods are async so a PostgreSQL implementation can await its driver;
on SQLite they run inline: a short local transaction is cheaper than a hop to a worker thread."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, delete, event, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from ..domain.model import (
    ApiKey,
    Budget,
    Chat,
    ChatEvent,
    ChatStatus,
    Flow,
    JournalEntry,
    KeyScope,
    Message,
    NewMessage,
)
from ..domain.ports import Claim, RunLimitReached, StepItem, StepResult
from . import convert
from .tables import (
    ApiKeyRow,
    ChatRow,
    FlowRow,
    IdempotencyRow,
    MessageRow,
    RunStepRow,
    ServerSecretRow,
    StatusEventRow,
)
from .urls import async_url

CHAT = ChatRow.__table__  # type: ignore[attr-defined]
MESSAGE = MessageRow.__table__  # type: ignore[attr-defined]
STATUS_EVENT = StatusEventRow.__table__  # type: ignore[attr-defined]
FLOW = FlowRow.__table__  # type: ignore[attr-defined]
API_KEY = ApiKeyRow.__table__  # type: ignore[attr-defined]
SECRET = ServerSecretRow.__table__  # type: ignore[attr-defined]
RUN_STEP = RunStepRow.__table__  # type: ignore[attr-defined]
IDEMPOTENCY = IdempotencyRow.__table__  # type: ignore[attr-defined]

_IN_RUN = [ChatStatus.RUNNING.value, ChatStatus.WAITING.value]
# Statements on the hot path (every call authenticates; GetChat is the polling call) are built once.
_CHAT_COLUMNS = [c for c in CHAT.c if c.name != "graph"]  # all but the flow snapshot, which only runs need
_GET_CHAT = select(*_CHAT_COLUMNS).where(CHAT.c.id == bindparam("chat_id"), CHAT.c.owner == bindparam("owner"))
_GET_CHAT_ANY_OWNER = select(*_CHAT_COLUMNS).where(CHAT.c.id == bindparam("chat_id"))
# Every replica LISTENs on this channel; a payload names the chat and the seqs a step committed.
NOTIFY_CHANNEL = "agentok_chat_events"
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")
_KEY_FOR_HASH = select(API_KEY).where(API_KEY.c.secret_hash == bindparam("secret_hash"), API_KEY.c.revoked_at.is_(None))


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def make_engine(url: str) -> Engine | AsyncEngine:
    """SQLite: a sync engine, used inline (see Repository). PostgreSQL: an async engine on asyncpg."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; NORMAL: no fsync per commit (still crash-safe in WAL).
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        return engine
    # No pre-ping (a round trip per checkout): a connection that broke is discarded when it fails, and
    # recycling bounds how long an idle one can go stale behind a proxy.
    return create_async_engine(async_url(url), pool_size=10, max_overflow=20, pool_recycle=1800)


class _InlineConnection:
    """A sync SQLite connection behind the awaitable `execute` the repository uses for every database.
    The call runs inline (no worker thread, no suspension), so a transaction on it never yields to the
    event loop and two repository calls can't interleave on the held connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._conn.execute(statement, parameters)


# What the repository's methods execute on: an _InlineConnection (SQLite) or an AsyncConnection (PostgreSQL).
Conn = Any


class Repository:
    """`replica_id` names this server process in run leases and in the change notifications it sends."""

    def __init__(self, engine: Engine | AsyncEngine, *, replica_id: str = "") -> None:
        self._engine = engine
        self.replica_id = replica_id
        self.dialect = engine.dialect.name
        self._reader: _InlineConnection | None = None
        self._writer: Connection | None = None
        # Reads on PostgreSQL: autocommit, one statement, no BEGIN/ROLLBACK round trips around it.
        self._read_engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if isinstance(engine, AsyncEngine) else None
        )
        if isinstance(engine, Engine):
            # Held connections: a pool checkout and reset costs ~5x the query itself. Safe because every
            # repository call runs to completion on the event-loop thread (no await suspends inside), so calls
            # never interleave on a connection; WAL lets the autocommit reader see each commit at once.
            self._reader = _InlineConnection(engine.connect())
            self._writer = engine.connect()

    @property
    def engine(self) -> Engine | AsyncEngine:
        return self._engine

    @property
    def notifies(self) -> bool:
        """Whether other processes learn of each committed step (PostgreSQL's NOTIFY)."""
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Conn]:
        if self._reader is not None:
            yield self._reader
        else:
            assert self._read_engine is not None
            async with self._read_engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[Conn]:
        """One transaction: committed when the block ends, rolled back whole if it raises."""
        if self._writer is not None:
            with self._writer.begin():
                yield _InlineConnection(self._writer)
        else:
            assert isinstance(self._engine, AsyncEngine)
            async with self._engine.begin() as conn:
                yield conn

    async def create_schema(self) -> None:
        """Tables straight from the models (tests of the storage layer); deployments use `agentok db upgrade`."""
        if isinstance(self._engine, AsyncEngine):
            async with self._engine.begin() as conn:
                await conn.run_sync(SQLModel.metadata.create_all)
        else:
            SQLModel.metadata.create_all(self._engine)

    async def dispose(self) -> None:
        if self._reader is not None:
            self._reader._conn.close()
        if self._writer is not None:
            self._writer.close()
        if isinstance(self._engine, AsyncEngine):
            await self._engine.dispose()
        else:
            self._engine.dispose()

    async def _notify(self, conn: Conn, payload: dict[str, Any]) -> None:
        """Inside the step's transaction: PostgreSQL delivers it at commit, in commit order, or never."""
        if self.notifies:
            payload["o"] = self.replica_id
            await conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "payload": json.dumps(payload)})

    # --- API keys -------------------------------------------------------------------------------

    async def insert_key(
        self,
        *,
        name: str,
        owner: str,
        prefix: str,
        secret_hash: str,
        scope: KeyScope = KeyScope.CHAT,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        row: dict[str, Any] = {
            "id": new_id(),
            "name": name,
            "owner": owner,
            "prefix": prefix,
            "secret_hash": secret_hash,
            "scope": scope.value,
            "created_at": now(),
            "expires_at": expires_at,
            "last_used_at": None,
            "revoked_at": None,
        }
        async with self._write() as conn:
            await conn.execute(API_KEY.insert().values(**row))
        return convert.api_key(ApiKeyRow(**row))

    async def list_keys(
        self, owner: str | None = None, limit: int | None = None, after: tuple[datetime, str] | None = None
    ) -> list[ApiKey]:
        """All keys, revoked ones too, oldest first (the CLI); or one owner's active keys, newest first."""
        if owner is None:
            query = select(API_KEY).order_by(API_KEY.c.created_at, API_KEY.c.id)
        else:
            query = select(API_KEY).where(API_KEY.c.owner == owner, API_KEY.c.revoked_at.is_(None))
            if after:
                query = query.where(_before(API_KEY, after))
            query = query.order_by(API_KEY.c.created_at.desc(), API_KEY.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [convert.api_key(r) for r in (await conn.execute(query)).all()]

    async def count_active_keys(self) -> int:
        async with self._read() as conn:
            return len((await conn.execute(select(API_KEY.c.id).where(API_KEY.c.revoked_at.is_(None)))).all())

    async def revoke_key(self, key_id: str, owner: str | None = None) -> bool:
        query = update(API_KEY).where(API_KEY.c.id == key_id, API_KEY.c.revoked_at.is_(None))
        if owner is not None:
            query = query.where(API_KEY.c.owner == owner)
        async with self._write() as conn:
            res = await conn.execute(query.values(revoked_at=now()))
        return bool(res.rowcount)

    async def get_key(self, key_id: str, owner: str) -> ApiKey | None:
        query = select(API_KEY).where(API_KEY.c.id == key_id, API_KEY.c.owner == owner)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return convert.api_key(row) if row else None

    async def key_for_hash(self, secret_hash: str) -> ApiKey | None:
        """The active (not revoked) key with this secret hash; expiry is the caller's to judge."""
        async with self._read() as conn:
            row = (await conn.execute(_KEY_FOR_HASH, {"secret_hash": secret_hash})).first()
        return convert.api_key(row) if row else None

    async def touch_key(self, key_id: str, when: datetime) -> None:
        async with self._write() as conn:
            await conn.execute(update(API_KEY).where(API_KEY.c.id == key_id).values(last_used_at=when))

    async def server_secret(self, name: str, make: Callable[[], str]) -> str:
        """The named secret, created with `make()` by whichever process asks first."""
        async with self._read() as conn:
            row = (await conn.execute(select(SECRET.c.value).where(SECRET.c.name == name))).first()
        if row is not None:
            return str(row.value)
        try:
            async with self._write() as conn:
                await conn.execute(SECRET.insert().values(name=name, value=make()))
        except IntegrityError:
            pass  # another process created it first: use theirs
        async with self._read() as conn:
            return str((await conn.execute(select(SECRET.c.value).where(SECRET.c.name == name))).scalar_one())

    # --- flows ----------------------------------------------------------------------------------

    async def insert_flow(self, *, owner: str, name: str, graph: dict[str, Any], warnings: list[str]) -> Flow:
        row: dict[str, Any] = {"id": new_id(), "owner": owner, "name": name, "graph": graph, "warnings": warnings}
        row["created_at"] = now()
        async with self._write() as conn:
            await conn.execute(FLOW.insert().values(**row))
        return convert.flow(FlowRow(**row))

    async def get_flow(self, owner: str, flow_id: str) -> Flow | None:
        async with self._read() as conn:
            row = (await conn.execute(select(FLOW).where(FLOW.c.id == flow_id, FLOW.c.owner == owner))).first()
        return convert.flow(row) if row else None

    async def list_flows(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Flow]:
        query = select(FLOW).where(FLOW.c.owner == owner)
        if after:
            query = query.where(_before(FLOW, after))
        query = query.order_by(FLOW.c.created_at.desc(), FLOW.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [convert.flow(r) for r in (await conn.execute(query)).all()]

    async def delete_flow(self, owner: str, flow_id: str) -> bool:
        async with self._write() as conn:
            res = await conn.execute(delete(FLOW).where(FLOW.c.id == flow_id, FLOW.c.owner == owner))
        return bool(res.rowcount)

    # --- chats ----------------------------------------------------------------------------------

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
        budget = budget or Budget()
        at = now()
        row: dict[str, Any] = {
            "id": new_id(),
            "owner": owner,
            "name": name,
            "from_type": from_type,
            "from_flow": from_flow,
            "graph": graph,
            "status": ChatStatus.READY.value,
            "error": "",
            "input_prompt": "",
            "last_seq": 0,
            "created_at": at,
            "updated_at": at,
            "max_agent_turns": budget.max_agent_turns,
            "input_timeout_seconds": budget.input_timeout_seconds,
            "input_timeout_action": budget.input_timeout_action.value,
            "run_no": 0,
            "run_input": "",
            "run_steps": 0,
            "input_deadline": None,
        }
        async with self._write() as conn:
            await conn.execute(CHAT.insert().values(**row))
        return convert.chat(ChatRow(**row))

    async def get_chat(self, owner: str, chat_id: str) -> Chat | None:
        async with self._read() as conn:
            row = (await conn.execute(_GET_CHAT, {"chat_id": chat_id, "owner": owner})).first()
        return convert.chat(row) if row else None

    async def get_chat_graph(self, chat_id: str) -> dict[str, Any] | None:
        async with self._read() as conn:
            row = (await conn.execute(select(CHAT.c.graph).where(CHAT.c.id == chat_id))).first()
        return row.graph if row else None

    async def list_chats(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Chat]:
        query = select(*_CHAT_COLUMNS).where(CHAT.c.owner == owner)
        if after:
            query = query.where(_before(CHAT, after))
        query = query.order_by(CHAT.c.created_at.desc(), CHAT.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [convert.chat(r) for r in (await conn.execute(query)).all()]

    async def list_chats_in_status(self, statuses: Sequence[ChatStatus]) -> list[Chat]:
        query = select(*_CHAT_COLUMNS).where(CHAT.c.status.in_([s.value for s in statuses]))
        async with self._read() as conn:
            return [convert.chat(r) for r in (await conn.execute(query)).all()]

    async def delete_chat(self, owner: str, chat_id: str) -> Chat | None:
        """Deletes the chat with its history in one transaction; returns it as it was."""
        async with self._write() as conn:
            row = (
                await conn.execute(select(*_CHAT_COLUMNS).where(CHAT.c.id == chat_id, CHAT.c.owner == owner))
            ).first()
            if row is None:
                return None
            await conn.execute(delete(MESSAGE).where(MESSAGE.c.chat_id == chat_id))
            await conn.execute(delete(RUN_STEP).where(RUN_STEP.c.chat_id == chat_id))
            await conn.execute(delete(STATUS_EVENT).where(STATUS_EVENT.c.chat_id == chat_id))
            await conn.execute(delete(CHAT).where(CHAT.c.id == chat_id))
            await self._notify(conn, {"c": chat_id, "s": row.last_seq, "d": True})
        return convert.chat(row)

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
    ) -> StepResult | None:
        """Appends messages, status changes and run-journal entries to a chat as one transaction.

        Returns None, writing nothing, when the chat is gone (or not the owner's), its status is not in
        `require`, or `run_no` is given and is no longer the chat's run: the checks and the writes share the
        transaction, so two concurrent callers cannot both pass them. `start_run` begins a new run (its
        first message) with an empty journal.

        `holder` fences a run's own steps: they are written only while that replica holds the chat's run
        lease (a replica that lost it to a takeover writes nothing more). `lease_until` (with `holder`)
        grants or extends the lease in the same transaction, as a new run does. A step that leaves the
        run's statuses releases the lease.

        `max_runs_per_owner` (with `start_run` and `owner`) raises RunLimitReached, writing nothing, when the
        owner already has that many runs in progress. The count shares the transaction that starts the run,
        and starts are serialized per owner (PostgreSQL: an advisory lock held to commit; SQLite: its one
        writer), so two racing starts cannot both pass it.
        """
        at = now()
        async with self._write() as conn:
            cap = max_runs_per_owner if start_run is not None else None
            if cap is not None:
                assert owner is not None, "the run cap counts one owner's runs"
                if conn.dialect.name == "postgresql":
                    await conn.execute(_LOCK_OWNER_RUNS, {"owner": owner})
            row = await _lock_chat(conn, chat_id, owner)
            if row is None or (require is not None and ChatStatus(row.status) not in require):
                return None
            if run_no is not None and row.run_no != run_no:
                return None
            if holder is not None and lease_until is None and row.lease_holder != holder:
                return None
            if cap is not None and await _runs_in_progress(conn, row.owner) >= cap:
                raise RunLimitReached(cap)
            seq = row.last_seq
            events: list[ChatEvent] = []
            values: dict[str, Any] = {"updated_at": at}
            current_run, steps = row.run_no, row.run_steps
            if start_run is not None:
                current_run, steps = current_run + 1, 0
                values.update(run_no=current_run, run_input=start_run)
            for entry in journal:
                steps += 1
                await conn.execute(
                    RUN_STEP.insert().values(
                        chat_id=chat_id,
                        run_no=current_run,
                        step_no=steps,
                        kind=entry.kind,
                        value=entry.value,
                        created_at=at,
                    )
                )
            values["run_steps"] = steps
            for item in items:
                seq += 1
                if isinstance(item, NewMessage):
                    msg_row: dict[str, Any] = {
                        "id": new_id(),
                        "chat_id": chat_id,
                        "seq": seq,
                        "type": item.type.value,
                        "sender": item.sender,
                        "receiver": item.receiver,
                        "content": item.content,
                        "created_at": at,
                    }
                    await conn.execute(MESSAGE.insert().values(**msg_row))
                    events.append(convert.message_event(MessageRow(**msg_row)))
                else:
                    ev_row: dict[str, Any] = {
                        "chat_id": chat_id,
                        "seq": seq,
                        "status": item.status.value,
                        "error": item.error,
                        "input_prompt": item.input_prompt,
                        "created_at": at,
                    }
                    await conn.execute(STATUS_EVENT.insert().values(**ev_row))
                    events.append(convert.status_event(StatusEventRow(**ev_row)))
                    values.update(
                        status=item.status.value,
                        error=item.error,
                        input_prompt=item.input_prompt,
                        input_deadline=item.input_deadline,
                    )
            values["last_seq"] = seq
            if lease_until is not None:
                values.update(lease_holder=holder, lease_expires_at=lease_until)
            if not ChatStatus(values.get("status", row.status)).in_run:
                values.update(lease_holder=None, lease_expires_at=None)
            await conn.execute(update(CHAT).where(CHAT.c.id == chat_id).values(**values))
            if events:
                first = events[0].seq
                await self._notify(conn, {"c": chat_id, "f": first, "s": seq, "st": values.get("status", row.status)})
            updated = row._asdict() | values
        return StepResult(chat=convert.chat(_AttrDict(updated)), events=events)

    async def count_runs_in_progress(self, owner: str) -> int:
        """The owner's chats whose run is in progress (running or waiting for a person)."""
        async with self._read() as conn:
            return await _runs_in_progress(conn, owner)

    async def journal(
        self, chat_id: str, run_no: int, after_step: int = 0, limit: int | None = None
    ) -> list[JournalEntry]:
        query = (
            select(RUN_STEP.c.kind, RUN_STEP.c.value)
            .where(RUN_STEP.c.chat_id == chat_id, RUN_STEP.c.run_no == run_no, RUN_STEP.c.step_no > after_step)
            .order_by(RUN_STEP.c.step_no)
            .limit(limit)
        )
        async with self._read() as conn:
            return [JournalEntry(kind=r.kind, value=r.value) for r in (await conn.execute(query)).all()]

    # --- run leases -----------------------------------------------------------------------------

    async def acquire_lease(self, chat_id: str, holder: str, until: datetime) -> bool:
        """Takes the chat's run lease if its run is in progress and nobody else holds a live lease."""
        at = now()
        query = (
            update(CHAT)
            .where(
                CHAT.c.id == chat_id,
                CHAT.c.status.in_(_IN_RUN),
                CHAT.c.lease_holder.is_(None) | (CHAT.c.lease_holder == holder) | (CHAT.c.lease_expires_at < at),
            )
            .values(lease_holder=holder, lease_expires_at=until)
        )
        async with self._write() as conn:
            return bool((await conn.execute(query)).rowcount)

    async def renew_leases(self, holder: str, chat_ids: Sequence[str], until: datetime) -> dict[str, ChatStatus]:
        """Extends the holder's leases on these chats; returns the ones it still holds, with their status
        (a chat missing from the answer was deleted, ended by someone else, or taken over)."""
        if not chat_ids:
            return {}
        query = (
            update(CHAT)
            .where(CHAT.c.id.in_(list(chat_ids)), CHAT.c.lease_holder == holder, CHAT.c.status.in_(_IN_RUN))
            .values(lease_expires_at=until)
            .returning(CHAT.c.id, CHAT.c.status)
        )
        async with self._write() as conn:
            return {r.id: ChatStatus(r.status) for r in (await conn.execute(query)).all()}

    async def release_leases(self, holder: str) -> None:
        """Shutdown: the holder's runs may be taken over at once instead of when their leases lapse."""
        query = update(CHAT).where(CHAT.c.lease_holder == holder).values(lease_expires_at=now())
        async with self._write() as conn:
            await conn.execute(query)

    async def unheld_runs(self, limit: int = 100) -> list[str]:
        """Chats whose run is in progress but held by nobody alive: candidates for a takeover."""
        at = now()
        query = (
            select(CHAT.c.id)
            .where(
                CHAT.c.status.in_(_IN_RUN),
                CHAT.c.lease_holder.is_(None) | (CHAT.c.lease_expires_at < at),
            )
            .limit(limit)
        )
        async with self._read() as conn:
            return [r.id for r in (await conn.execute(query)).all()]

    async def held_runs(self, holder: str) -> list[str]:
        """Chats whose run this holder's lease covers (a restarted replica reclaims them at once)."""
        query = select(CHAT.c.id).where(CHAT.c.status.in_(_IN_RUN), CHAT.c.lease_holder == holder)
        async with self._read() as conn:
            return [r.id for r in (await conn.execute(query)).all()]

    async def get_chat_any_owner(self, chat_id: str) -> Chat | None:
        async with self._read() as conn:
            row = (await conn.execute(_GET_CHAT_ANY_OWNER, {"chat_id": chat_id})).first()
        return convert.chat(row) if row else None

    # --- idempotent writes ----------------------------------------------------------------------

    async def claim_request(
        self, owner: str, method: str, request_id: str, stale_before: datetime, *, fingerprint: str | None = None
    ) -> Claim:
        """Claims a request_id for a write about to run, for the request whose `fingerprint` is given (None:
        any). Claimed when this caller must do it; else the recorded response, or none while another caller's
        attempt is in progress. A claim older than `stale_before` with no response (its process died
        mid-write) is taken over. An id first used for a request with another fingerprint is `reused`, in any
        state, and nothing changes; a row from before fingerprints (NULL) matches any request."""
        key = (
            (IDEMPOTENCY.c.owner == owner) & (IDEMPOTENCY.c.method == method) & (IDEMPOTENCY.c.request_id == request_id)
        )
        claim = IDEMPOTENCY.insert().values(
            owner=owner, method=method, request_id=request_id, response=None, created_at=now(), fingerprint=fingerprint
        )
        try:
            async with self._write() as conn:
                await conn.execute(claim)
            return Claim(claimed=True)
        except IntegrityError:
            pass  # claimed before: by a finished attempt, one in progress, or an abandoned one
        async with self._write() as conn:
            columns = (IDEMPOTENCY.c.response, IDEMPOTENCY.c.created_at, IDEMPOTENCY.c.fingerprint)
            row = (await conn.execute(select(*columns).where(key))).first()
            if row is None:  # released meanwhile (that attempt failed): claim it afresh
                await conn.execute(claim)
                return Claim(claimed=True)
            if None not in (row.fingerprint, fingerprint) and row.fingerprint != fingerprint:
                return Claim(claimed=False, reused=True)
            if row.response is not None:
                return Claim(claimed=False, response=bytes(row.response))
            if convert.utc(row.created_at) < stale_before:
                taken = await conn.execute(
                    update(IDEMPOTENCY)
                    .where(key, IDEMPOTENCY.c.response.is_(None), IDEMPOTENCY.c.created_at == row.created_at)
                    .values(created_at=now(), fingerprint=fingerprint or row.fingerprint)
                )
                return Claim(claimed=bool(taken.rowcount))
        return Claim(claimed=False)

    async def record_response(self, owner: str, method: str, request_id: str, response: bytes) -> None:
        async with self._write() as conn:
            await conn.execute(
                update(IDEMPOTENCY)
                .where(
                    IDEMPOTENCY.c.owner == owner, IDEMPOTENCY.c.method == method, IDEMPOTENCY.c.request_id == request_id
                )
                .values(response=response)
            )

    async def release_claim(self, owner: str, method: str, request_id: str) -> None:
        """The write failed: a retry may run it again."""
        async with self._write() as conn:
            await conn.execute(
                delete(IDEMPOTENCY).where(
                    IDEMPOTENCY.c.owner == owner,
                    IDEMPOTENCY.c.method == method,
                    IDEMPOTENCY.c.request_id == request_id,
                    IDEMPOTENCY.c.response.is_(None),
                )
            )

    # --- history --------------------------------------------------------------------------------

    async def list_messages(self, chat_id: str, limit: int, after_seq: int) -> list[Message]:
        query = (
            select(MESSAGE)
            .where(MESSAGE.c.chat_id == chat_id, MESSAGE.c.seq > after_seq)
            .order_by(MESSAGE.c.seq)
            .limit(limit)
        )
        async with self._read() as conn:
            return [convert.message(r) for r in (await conn.execute(query)).all()]

    async def events_after(self, chat_id: str, after_seq: int) -> list[ChatEvent]:
        async with self._read() as conn:
            msgs = (
                await conn.execute(select(MESSAGE).where(MESSAGE.c.chat_id == chat_id, MESSAGE.c.seq > after_seq))
            ).all()
            statuses = (
                await conn.execute(
                    select(STATUS_EVENT).where(STATUS_EVENT.c.chat_id == chat_id, STATUS_EVENT.c.seq > after_seq)
                )
            ).all()
        events = [convert.message_event(r) for r in msgs] + [convert.status_event(r) for r in statuses]
        events.sort(key=lambda e: e.seq)
        return events


class _AttrDict(dict[str, Any]):
    """Lets the row converters read a merged dict like a row."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def _before(table: Any, after: tuple[datetime, str]) -> Any:
    created_at, row_id = after
    return (table.c.created_at < created_at) | ((table.c.created_at == created_at) & (table.c.id < row_id))


# Serializes one owner's run starts on PostgreSQL until commit; the first key keeps this lock's hashes apart
# from any other advisory lock's. Two owners whose names hash alike merely wait for each other.
_OWNER_RUNS_LOCK_CLASS = 0x61676B72  # "agkr"
_LOCK_OWNER_RUNS = text(f"SELECT pg_advisory_xact_lock({_OWNER_RUNS_LOCK_CLASS}, hashtext(:owner))")
_COUNT_RUNS_IN_PROGRESS = select(func.count()).where(CHAT.c.owner == bindparam("owner"), CHAT.c.status.in_(_IN_RUN))


async def _runs_in_progress(conn: Conn, owner: str) -> int:
    return int((await conn.execute(_COUNT_RUNS_IN_PROGRESS, {"owner": owner})).scalar_one())


async def _lock_chat(conn: Conn, chat_id: str, owner: str | None) -> Any:
    query = _GET_CHAT if owner is not None else _GET_CHAT_ANY_OWNER
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return (await conn.execute(query, {"chat_id": chat_id, "owner": owner})).first()
