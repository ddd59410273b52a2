"""The database schema's version, by Alembic: upgrade it (`agentok db upgrade`), and check it before serving.

The server never changes the schema itself: replicas sharing a database would race, and an operator should
choose when a migration runs. `agentok run` (the development launcher) upgrades the embedded default itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .urls import async_url

MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_HINT = "run `agentok db upgrade` (with the same DATABASE_URL / AGENTOK_DATA_DIR as the server)"


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


def _state_of_url(url: str) -> tuple[str | None, bool]:
    url = async_url(url)
    if url.startswith("postgresql+asyncpg"):

        async def read() -> tuple[str | None, bool]:
            engine = create_async_engine(url)
            try:
                return await _state_of(engine)
            finally:
                await engine.dispose()

        return asyncio.run(read())
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return _state(conn)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database is at (None: no migration ever ran). Not inside a running event loop."""
    return _state_of_url(url)[0]


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrates to the newest revision; returns (before, after). Not inside a running event loop."""
    before, has_tables = _state_of_url(url)
    if before is None and has_tables:
        raise SchemaOutOfDate(_predates_migrations())
    command.upgrade(_config(url), "head")
    return before, head_revision()


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
        "move it aside (for the SQLite default, the data directory's agentok.db) and run `agentok db upgrade`"
    )
