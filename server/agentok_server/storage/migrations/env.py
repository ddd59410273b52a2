"""Alembic's environment: SQLite through a sync engine (batch mode, as SQLite alters tables by copying
them), PostgreSQL through asyncpg (the server's only PostgreSQL driver) with run_sync."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from agentok_server.storage import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from agentok_server.storage.urls import async_url

target_metadata = SQLModel.metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _migrate_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_migrate)
            await conn.commit()
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (SQL script) migrations are not supported: run `agentok db upgrade`")
    url = async_url(context.config.get_main_option("sqlalchemy.url") or "")
    if url.startswith("postgresql+asyncpg"):
        asyncio.run(_migrate_async(url))
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _migrate(conn)
            conn.commit()
    finally:
        engine.dispose()


main()
