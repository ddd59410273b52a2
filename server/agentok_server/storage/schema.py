"""The database schema's version, by Alembic: upgrade it (`agentok db upgrade`), and check it before serving.

The server never changes the schema itself: replicas sharing a database would race, and an operator should
choose when a migration runs. `agentok run` (the development launcher) upgrades the embedded default itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.sql.sqltypes import AutoString

from .urls import async_url

MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_HINT = "run `agentok db upgrade` (with the same DATABASE_URL / AGENTOK_DATA_DIR as the server)"
# What `upgrade` reports as the revision before, when it adopted a database made before migrations.
PRE_MIGRATIONS = "a schema from before migrations"

T = TypeVar("T")

# Revision 0001's tables and columns, as builds from before migrations created them (SQLModel's create_all
# at startup). Frozen: this describes what old builds made, not what today's models say.
_REVISION_0001_COLUMNS: dict[str, set[str]] = {
    "api_key": {
        "id", "name", "owner", "prefix", "secret_hash", "scope", "created_at", "expires_at", "last_used_at",
        "revoked_at",
    },
    "server_secret": {"name", "value"},
    "flow": {"id", "owner", "name", "graph", "warnings", "created_at"},
    "chat": {
        "id", "owner", "name", "from_type", "from_flow", "graph", "status", "error", "input_prompt", "last_seq",
        "created_at", "updated_at", "max_agent_turns", "input_timeout_seconds", "input_timeout_action", "run_no",
        "run_input", "run_steps", "input_deadline", "lease_holder", "lease_expires_at",
    },
    "idempotency": {"owner", "method", "request_id", "response", "created_at"},
    "run_step": {"chat_id", "run_no", "step_no", "kind", "value", "created_at"},
    "message": {"id", "chat_id", "seq", "type", "sender", "receiver", "content", "created_at"},
    "status_event": {"chat_id", "seq", "status", "error", "input_prompt", "created_at"},
}  # fmt: skip
# Builds from before the replica work had no run lease: adopting their database adds it (nullable columns,
# as 0001 declares them: no run holds a lease yet, and the first lease round takes over any run left running).
_ADDED_BY_REPLICAS: dict[str, list[Callable[[], sa.Column[object]]]] = {
    "chat": [
        lambda: sa.Column("lease_holder", AutoString(), nullable=True),
        lambda: sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    ],
}
# Revision 0001's indexes (name: table, columns, unique); the status index came with the replica work too.
_REVISION_0001_INDEXES: dict[str, tuple[str, list[str], bool]] = {
    "ix_api_key_owner": ("api_key", ["owner"], False),
    "ix_api_key_secret_hash": ("api_key", ["secret_hash"], True),
    "ix_chat_owner_created": ("chat", ["owner", "created_at", "id"], False),
    "ix_chat_status": ("chat", ["status"], False),
    "ix_flow_owner_created": ("flow", ["owner", "created_at", "id"], False),
}


class SchemaOutOfDate(Exception):
    """The database's schema is not the one this build needs; the message says what to run."""


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolates %
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config("")).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _state(conn: Connection) -> tuple[str | None, bool]:
    """(the stored revision, whether agentok's tables exist)."""
    revision = MigrationContext.configure(conn).get_current_revision()
    return revision, inspect(conn).has_table("chat")


async def _state_of(engine: Engine | AsyncEngine) -> tuple[str | None, bool]:
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as conn:
            return await conn.run_sync(_state)
    with engine.connect() as conn:
        return _state(conn)


def _on_connection(url: str, use: Callable[[Connection], T]) -> T:
    """Runs `use` on a connection to `url`, in one transaction committed at the end (asyncpg through
    run_sync on PostgreSQL, as the server and the migrations drive it)."""
    url = async_url(url)
    if url.startswith("postgresql+asyncpg"):

        async def run() -> T:
            engine = create_async_engine(url)
            try:
                async with engine.begin() as conn:
                    return await conn.run_sync(use)
            finally:
                await engine.dispose()

        return asyncio.run(run())
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            return use(conn)
    finally:
        engine.dispose()


def _state_of_url(url: str) -> tuple[str | None, bool]:
    return _on_connection(url, _state)


def current_revision(url: str) -> str | None:
    """The revision the database is at (None: no migration ever ran). Not inside a running event loop."""
    return _state_of_url(url)[0]


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrates to the newest revision; returns (before, after), before being PRE_MIGRATIONS when the
    database was made by a build from before migrations and adopted. Not inside a running event loop."""
    before, has_tables = _state_of_url(url)
    if before is None and has_tables:
        _on_connection(url, _adopt)
        before = PRE_MIGRATIONS
    command.upgrade(_config(url), "head")
    return before, head_revision()


def _adopt(conn: Connection) -> None:
    """Brings a database made before migrations to revision 0001 and stamps it so, keeping its data; refuses
    any other unversioned schema. Adds only what later pre-migration builds added (so running it again after
    an interruption is harmless)."""
    found = inspect(conn)
    tables = set(found.get_table_names()) - {"alembic_version"}
    problems = []
    if missing_tables := sorted(set(_REVISION_0001_COLUMNS) - tables):
        problems.append(f"tables {', '.join(missing_tables)} are missing")
    if unknown_tables := sorted(tables - set(_REVISION_0001_COLUMNS)):
        problems.append(f"tables {', '.join(unknown_tables)} are unknown")
    to_add: dict[str, list[sa.Column[object]]] = {}
    for table in sorted(set(_REVISION_0001_COLUMNS) & tables):
        columns = {c["name"] for c in found.get_columns(table)}
        addable = {make().name: make for make in _ADDED_BY_REPLICAS.get(table, [])}
        if missing := sorted(_REVISION_0001_COLUMNS[table] - columns - set(addable)):
            problems.append(f"{table} lacks columns {', '.join(missing)}")
        if unknown := sorted(columns - _REVISION_0001_COLUMNS[table]):
            problems.append(f"{table} has unknown columns {', '.join(unknown)}")
        to_add[table] = [make() for name, make in addable.items() if name not in columns]
    if problems:
        raise SchemaOutOfDate(
            "the database has tables but no migration history, and they are not what an early agentok build "
            f"made ({'; '.join(problems)}): point DATABASE_URL / AGENTOK_DATA_DIR at agentok's database, or "
            "move this one aside (for the SQLite default, the data directory's agentok.db) and run "
            "`agentok db upgrade` again"
        )
    indexes = {i["name"] for table in tables for i in found.get_indexes(table)}
    context = MigrationContext.configure(conn)
    op = Operations(context)
    for table, columns_to_add in to_add.items():
        for column in columns_to_add:
            op.add_column(table, column)  # nullable: SQLite adds it in place, no table copy
    for name, (table, index_columns, unique) in _REVISION_0001_INDEXES.items():
        if name not in indexes:
            op.create_index(name, table, index_columns, unique=unique)
    context.stamp(ScriptDirectory.from_config(_config("")), "0001")


def downgrade(url: str, revision: str) -> None:
    command.downgrade(_config(url), revision)


async def check(engine: Engine | AsyncEngine) -> None:
    """Raises SchemaOutOfDate unless the database is at this build's revision."""
    revision, has_tables = await _state_of(engine)
    head = head_revision()
    if revision == head:
        return
    if revision is None:
        if has_tables:
            raise SchemaOutOfDate(_predates_migrations())
        raise SchemaOutOfDate(f"the database has no agentok schema yet: {UPGRADE_HINT}")
    known = {s.revision for s in ScriptDirectory.from_config(_config("")).walk_revisions()}
    if revision not in known:
        raise SchemaOutOfDate(
            f"the database schema is at revision {revision}, which this build does not know (a newer build "
            f"migrated it): run that build, or a newer one, instead (this one needs {head})"
        )
    raise SchemaOutOfDate(f"the database schema is at revision {revision} but this server needs {head}: {UPGRADE_HINT}")


def _predates_migrations() -> str:
    return (
        "the database has agentok tables but no migration history (an early build created it): "
        f"{UPGRADE_HINT}, which adopts it and keeps its keys, flows and chats"
    )
