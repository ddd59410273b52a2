"""What every part of the repository stands on: the engine, its held connections, one read and one write
context, and the tables as Core objects.

Methods are async so PostgreSQL can await its driver; on SQLite they run inline: a short local transaction
is cheaper than a hop to a worker thread.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from ..tables import (
    ApiKeyRow,
    ChatRow,
    FlowRow,
    IdempotencyRow,
    MessageRow,
    RunStepRow,
    ServerSecretRow,
    StatusEventRow,
)
from ..urls import async_url

CHAT = ChatRow.__table__  # type: ignore[attr-defined]
MESSAGE = MessageRow.__table__  # type: ignore[attr-defined]
STATUS_EVENT = StatusEventRow.__table__  # type: ignore[attr-defined]
FLOW = FlowRow.__table__  # type: ignore[attr-defined]
API_KEY = ApiKeyRow.__table__  # type: ignore[attr-defined]
SECRET = ServerSecretRow.__table__  # type: ignore[attr-defined]
RUN_STEP = RunStepRow.__table__  # type: ignore[attr-defined]
IDEMPOTENCY = IdempotencyRow.__table__  # type: ignore[attr-defined]


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def make_engine(url: str) -> Engine | AsyncEngine:
    """SQLite: a sync engine, used inline (see Database). PostgreSQL: an async engine on asyncpg."""
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


class InlineConnection:
    """A sync SQLite connection behind the awaitable `execute` the repository uses for every database.
    The call runs inline (no worker thread, no suspension), so a transaction on it never yields to the
    event loop and two repository calls can't interleave on the held connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._conn.execute(statement, parameters)

    def close(self) -> None:
        self._conn.close()


# What the repository's methods execute on: an InlineConnection (SQLite) or an AsyncConnection (PostgreSQL).
Conn = Any


class Database:
    """`replica_id` names this server process in run leases and in the change notifications it sends."""

    def __init__(self, engine: Engine | AsyncEngine, *, replica_id: str = "") -> None:
        self._engine = engine
        self.replica_id = replica_id
        self.dialect = engine.dialect.name
        self._reader: InlineConnection | None = None
        self._writer: Connection | None = None
        # Reads on PostgreSQL: autocommit, one statement, no BEGIN/ROLLBACK round trips around it.
        self._read_engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if isinstance(engine, AsyncEngine) else None
        )
        if isinstance(engine, Engine):
            # Held connections: a pool checkout and reset costs ~5x the query itself. Safe because every
            # repository call runs to completion on the event-loop thread (no await suspends inside), so calls
            # never interleave on a connection; WAL lets the autocommit reader see each commit at once.
            self._reader = InlineConnection(engine.connect())
            self._writer = engine.connect()

    @property
    def engine(self) -> Engine | AsyncEngine:
        return self._engine

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
                yield InlineConnection(self._writer)
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
            self._reader.close()
        if self._writer is not None:
            self._writer.close()
        if isinstance(self._engine, AsyncEngine):
            await self._engine.dispose()
        else:
            self._engine.dispose()


def before(table: Any, after: tuple[datetime, str]) -> Any:
    """Keyset pagination, newest first: rows strictly before the page token's (created_at, id)."""
    created_at, row_id = after
    # The same rows as `created_at < t OR (created_at = t AND id < i)`, said so that the planner seeks the
    # (owner, created_at, id) index to t: given the OR alone, SQLite bound only owner and walked every newer row
    # (the last page of 100,000 chats was 5x the first: make bench, history).
    return (table.c.created_at <= created_at) & ((table.c.created_at < created_at) | (table.c.id < row_id))
