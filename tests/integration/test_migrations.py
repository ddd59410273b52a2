"""Alembic migrations on a real SQLite file and a real PostgreSQL database: they build exactly the schema
the models describe, the server's check refuses any other revision, and the CLI reports both."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


async def sync(fn: object, *args: str) -> Any:
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


# What builds from before migrations and before the replica work created on SQLite (SQLModel's create_all of
# their models, as printed by SQLite): revision 0001's tables without the run lease columns and the status
# index. Written out here, not imported: it must stay what those builds made, whatever the code becomes.
PRE_MIGRATION_DDL = [
    """CREATE TABLE api_key (id VARCHAR NOT NULL, name VARCHAR NOT NULL, owner VARCHAR NOT NULL,
        prefix VARCHAR NOT NULL, secret_hash VARCHAR NOT NULL, scope VARCHAR NOT NULL,
        created_at DATETIME NOT NULL, expires_at DATETIME, last_used_at DATETIME, revoked_at DATETIME,
        PRIMARY KEY (id))""",
    "CREATE INDEX ix_api_key_owner ON api_key (owner)",
    "CREATE UNIQUE INDEX ix_api_key_secret_hash ON api_key (secret_hash)",
    "CREATE TABLE server_secret (name VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY (name))",
    """CREATE TABLE flow (id VARCHAR NOT NULL, owner VARCHAR NOT NULL, name VARCHAR NOT NULL,
        graph JSON NOT NULL, warnings JSON NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id))""",
    "CREATE INDEX ix_flow_owner_created ON flow (owner, created_at, id)",
    """CREATE TABLE chat (id VARCHAR NOT NULL, owner VARCHAR NOT NULL, name VARCHAR NOT NULL,
        from_type VARCHAR NOT NULL, from_flow VARCHAR NOT NULL, graph JSON NOT NULL, status VARCHAR NOT NULL,
        error VARCHAR NOT NULL, input_prompt VARCHAR NOT NULL, last_seq INTEGER NOT NULL,
        created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, max_agent_turns INTEGER NOT NULL,
        input_timeout_seconds FLOAT NOT NULL, input_timeout_action VARCHAR NOT NULL, run_no INTEGER NOT NULL,
        run_input VARCHAR NOT NULL, run_steps INTEGER NOT NULL, input_deadline DATETIME, PRIMARY KEY (id))""",
    "CREATE INDEX ix_chat_owner_created ON chat (owner, created_at, id)",
    """CREATE TABLE idempotency (owner VARCHAR NOT NULL, method VARCHAR NOT NULL, request_id VARCHAR NOT NULL,
        response BLOB NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (owner, method, request_id))""",
    """CREATE TABLE run_step (chat_id VARCHAR NOT NULL, run_no INTEGER NOT NULL, step_no INTEGER NOT NULL,
        kind VARCHAR NOT NULL, value VARCHAR, created_at DATETIME NOT NULL,
        PRIMARY KEY (chat_id, run_no, step_no), FOREIGN KEY(chat_id) REFERENCES chat (id) ON DELETE CASCADE)""",
    """CREATE TABLE message (id VARCHAR NOT NULL, chat_id VARCHAR NOT NULL, seq INTEGER NOT NULL,
        type VARCHAR NOT NULL, sender VARCHAR NOT NULL, receiver VARCHAR NOT NULL, content VARCHAR NOT NULL,
        created_at DATETIME NOT NULL, PRIMARY KEY (id), CONSTRAINT uq_message_chat_seq UNIQUE (chat_id, seq),
        FOREIGN KEY(chat_id) REFERENCES chat (id) ON DELETE CASCADE)""",
    """CREATE TABLE status_event (chat_id VARCHAR NOT NULL, seq INTEGER NOT NULL, status VARCHAR NOT NULL,
        error VARCHAR NOT NULL, input_prompt VARCHAR NOT NULL, created_at DATETIME NOT NULL,
        PRIMARY KEY (chat_id, seq), FOREIGN KEY(chat_id) REFERENCES chat (id) ON DELETE CASCADE)""",
]
# A little of everything an early build stored: a key, a flow, a chat waiting for its person, its messages.
PRE_MIGRATION_ROWS = [
    """INSERT INTO api_key VALUES ('key1', 'dev', 'alice', 'atk_abcd', 'hash1', 'chat',
        '2026-11-01 10:00:00.000000', NULL, NULL, NULL)""",
    """INSERT INTO flow VALUES ('flow1', 'alice', 'f', '{"nodes": [], "edges": []}', '[]',
        '2026-11-01 10:00:01.000000')""",
    """INSERT INTO chat VALUES ('chat1', 'alice', 'c', 'flow', 'flow1', '{"nodes": [], "edges": []}',
        'wait_for_human_input', '', 'your turn', 2, '2026-11-01 10:00:02.000000', '2026-11-01 10:00:03.000000',
        200, 0.0, 'skip', 1, 'hello', 1, NULL)""",
    """INSERT INTO message VALUES ('m1', 'chat1', 1, 'user', 'User', 'Assistant', 'hello',
        '2026-11-01 10:00:02.000000')""",
    """INSERT INTO status_event VALUES ('chat1', 2, 'wait_for_human_input', '', 'your turn',
        '2026-11-01 10:00:03.000000')""",
    "INSERT INTO run_step VALUES ('chat1', 1, 1, 'say', NULL, '2026-11-01 10:00:02.000000')",
]


def _sqlite_with(path: Path, statements: list[str]) -> str:
    """A SQLite file built by raw SQL (not by this build's code); returns its URL."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    return url


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query))]
    finally:
        engine.dispose()


def _sqlite_differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return _differences(conn)
    finally:
        engine.dispose()


async def test_a_database_made_before_migrations_is_adopted_with_its_data(tmp_path: Path) -> None:
    url = _sqlite_with(tmp_path / "old.db", PRE_MIGRATION_DDL + PRE_MIGRATION_ROWS)
    # The server refuses it, saying what to run (not "move it aside").
    with pytest.raises(schema.SchemaOutOfDate, match="no migration history.*run `agentok db upgrade`.*adopts it"):
        await _check(url)

    assert await sync(schema.upgrade, url) == (schema.PRE_MIGRATIONS, schema.head_revision())

    await _check(url)  # the server accepts it now
    assert _sqlite_differences(url) == []  # exactly the schema a fresh upgrade builds
    assert _rows(url, "SELECT id, owner, secret_hash FROM api_key") == [("key1", "alice", "hash1")]
    assert _rows(url, "SELECT id, name FROM flow") == [("flow1", "f")]
    assert _rows(url, "SELECT id, status, last_seq, run_steps, lease_holder, lease_expires_at FROM chat") == [
        ("chat1", "wait_for_human_input", 2, 1, None, None)
    ]
    assert _rows(url, "SELECT content FROM message") == [("hello",)]
    assert _rows(url, "SELECT seq, status FROM status_event") == [(2, "wait_for_human_input")]
    assert await sync(schema.upgrade, url) == (schema.head_revision(), schema.head_revision())


async def test_a_database_with_revision_0001s_tables_but_no_history_is_adopted(url: str) -> None:
    """What builds between the replica work and migrations made (on PostgreSQL too): 0001 exactly, unstamped."""
    await sync(schema.upgrade, url)
    await sync(schema.downgrade, url, "0001")
    engine = make_engine(url)
    try:
        if isinstance(engine, Engine):
            with engine.begin() as conn:
                conn.execute(text("DROP TABLE alembic_version"))
        else:
            async with engine.begin() as aconn:
                await aconn.execute(text("DROP TABLE alembic_version"))
    finally:
        if isinstance(engine, Engine):
            engine.dispose()
        else:
            await engine.dispose()
    assert await sync(schema.current_revision, url) is None
    assert await sync(schema.upgrade, url) == (schema.PRE_MIGRATIONS, schema.head_revision())  # type: ignore[misc]
    await _check(url)


def test_a_half_adopted_database_is_finished(tmp_path: Path) -> None:
    """An adoption interrupted after adding the lease columns (SQLite commits DDL as it goes) is finished."""
    url = _sqlite_with(
        tmp_path / "half.db",
        [
            *PRE_MIGRATION_DDL,
            "ALTER TABLE chat ADD COLUMN lease_holder VARCHAR",
            "ALTER TABLE chat ADD COLUMN lease_expires_at DATETIME",
        ],
    )
    assert schema.upgrade(url) == (schema.PRE_MIGRATIONS, schema.head_revision())
    assert _sqlite_differences(url) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("CREATE TABLE notes (id INTEGER PRIMARY KEY)", "tables notes are unknown"),
        ("DROP TABLE status_event", "tables status_event are missing"),
        ("ALTER TABLE flow ADD COLUMN colour VARCHAR", "flow has unknown columns colour"),
        ("ALTER TABLE message DROP COLUMN receiver", "message lacks columns receiver"),
    ],
)
def test_any_other_unversioned_schema_is_refused_and_left_alone(tmp_path: Path, change: str, reason: str) -> None:
    url = _sqlite_with(tmp_path / "other.db", [*PRE_MIGRATION_DDL, change])
    before = _rows(url, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    with pytest.raises(schema.SchemaOutOfDate, match=f"not what an early agentok build made .*{reason}.*move this"):
        schema.upgrade(url)
    assert _rows(url, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == before  # untouched
    assert schema.current_revision(url) is None


def test_an_unversioned_database_of_something_else_is_refused(tmp_path: Path) -> None:
    url = _sqlite_with(tmp_path / "chat-only.db", ["CREATE TABLE chat (id INTEGER PRIMARY KEY)"])
    with pytest.raises(schema.SchemaOutOfDate, match="tables api_key, flow.* are missing"):
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


def test_the_cli_adopts_an_early_builds_database_and_keeps_its_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _sqlite_with(data / "agentok.db", PRE_MIGRATION_DDL + PRE_MIGRATION_ROWS)
    env = {**os.environ, "AGENTOK_DATA_DIR": str(data)}

    def agentok(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "agentok"), *args], env=env, capture_output=True, text=True, timeout=60)

    serve = agentok("serve")
    assert serve.returncode == 1 and "run `agentok db upgrade`" in serve.stderr and "adopts it" in serve.stderr
    upgraded = agentok("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    adopted = "adopted a database made before migrations (its data kept) and upgraded it to revision"
    assert f"{adopted} {schema.head_revision()}" in upgraded.stdout
    listed = agentok("keys", "list")
    assert listed.returncode == 0 and listed.stdout.split("\t")[:3] == ["key1", "dev", "alice"], listed
