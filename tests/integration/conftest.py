"""Storage fixtures: every storage test runs on a real SQLite file and on a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlmodel import SQLModel

from agentok_server.storage.repository import Repository, make_engine

from ..support.postgres import create_database, drop_database


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    """The same storage contract on both databases."""
    url = f"sqlite:///{tmp_path / 'test.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    r = Repository(make_engine(url), replica_id="test-replica")
    if request.param == "postgresql":  # one database per module: start each test from empty tables
        async with r.engine.begin() as conn:  # type: ignore[union-attr]
            await conn.run_sync(SQLModel.metadata.drop_all)
    await r.create_schema()
    yield r
    await r.dispose()
