"""Throw-away databases in the machine's PostgreSQL (`make test` makes sure one is running).

AGENTOK_TEST_POSTGRES_URL points elsewhere; the default is the local server with trust auth."""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get("AGENTOK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn(ADMIN_URL), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # On its own thread: callers may be inside a running event loop (async fixtures).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def create_database() -> str:
    """A new empty database; returns its URL (postgresql://, as a user would write it)."""
    name = f"agentok_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    return make_url(ADMIN_URL).set(drivername="postgresql", database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dsn(url: str) -> str:
    """A database URL as asyncpg.connect() takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
