"""Alembic migrations on a real SQLite file and a real PostgreSQL database: they build exactly the schema
the models describe, the server's check refuses any other revision, and the CLI reports both."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from agentok_server.storage import schema
from agentok_server.storage import tables as _tables  # noqa: F401  (the models compared against)
from agentok_server.storage.repository import make_engine

from ..support.postgres import create_database, drop_database
from ..support.stack import VENV_BIN


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'agentok.db'}"
        return
    created = create_database()
    yield created
    drop_database(created)


def _differences(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


async def sync(fn: object, *args: str) -> object:
    """The schema functions run their own event loop (as the CLI does): off this test's loop."""
    return await asyncio.to_thread(fn, *args)  # type: ignore[arg-type]


async def _check(url: str) -> None:
    engine = make_engine(url)
    try:
        await schema.check(engine)
    finally:
        if isinstance(engine, Engine):
            engine.dispose()
        else:
            await engine.dispose()


async def test_upgrade_builds_exactly_the_models_schema(url: str) -> None:
    with pytest.raises(schema.SchemaOutOfDate, match="no agentok schema yet: run `agentok db upgrade`"):
        await _check(url)
    before, after = await sync(schema.upgrade, url)  # type: ignore[misc]
    assert (before, after) == (None, schema.head_revision())
    await _check(url)  # passes now
    assert await sync(schema.upgrade, url) == (after, after)  # a second upgrade changes nothing
    engine = make_engine(url)
    try:
        if isinstance(engine, Engine):
            with engine.connect() as conn:
                diffs = _differences(conn)
        else:
            async with engine.connect() as aconn:
                diffs = await aconn.run_sync(_differences)
    finally:
        if isinstance(engine, Engine):
            engine.dispose()
        else:
            await engine.dispose()
    # A model changed without a migration fails here.
    assert diffs == []


async def test_downgrade_to_nothing_and_back(url: str) -> None:
    await sync(schema.upgrade, url)
    await sync(schema.downgrade, url, "base")
    assert await sync(schema.current_revision, url) is None
    with pytest.raises(schema.SchemaOutOfDate):
        await _check(url)
    await sync(schema.upgrade, url)
    assert await sync(schema.current_revision, url) == schema.head_revision()


async def test_an_unknown_revision_is_refused_with_what_to_do(url: str) -> None:
    await sync(schema.upgrade, url)
    engine = make_engine(url)
    try:
        if isinstance(engine, Engine):
            with engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
        else:
            async with engine.begin() as aconn:
                await aconn.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
    finally:
        if isinstance(engine, Engine):
            engine.dispose()
        else:
            await engine.dispose()
    with pytest.raises(schema.SchemaOutOfDate, match="f00dcafe, which this build does not know"):
        await _check(url)


def test_a_database_made_before_migrations_is_named_as_such(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    SQLModel.metadata.create_all(engine)  # what early builds did
    engine.dispose()
    with pytest.raises(schema.SchemaOutOfDate, match="no migration history"):
        schema.upgrade(url)


def test_the_cli_reports_upgrades_and_the_server_refuses_an_old_schema(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTOK_DATA_DIR": str(tmp_path / "data")}

    def agentok(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "agentok"), *args], env=env, capture_output=True, text=True, timeout=60)

    current = agentok("db", "current")
    assert current.returncode == 1 and "run `agentok db upgrade`" in current.stdout
    serve = agentok("serve")
    assert serve.returncode == 1 and "no agentok schema yet: run `agentok db upgrade`" in serve.stderr
    keys = agentok("keys", "create", "k")
    assert keys.returncode == 1 and "agentok db upgrade" in keys.stderr
    upgraded = agentok("db", "upgrade")
    assert upgraded.returncode == 0 and f"from empty to revision {schema.head_revision()}" in upgraded.stdout
    assert agentok("db", "current").returncode == 0
    assert agentok("keys", "create", "k").returncode == 0
