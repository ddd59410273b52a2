"""Tools: the functions flows bind to their edges. Keyed by (owner, id): clients may choose ids."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, StatementError

from ...domain.model import Tool
from .. import convert
from ..tables import ToolRow
from .base import Database, before, new_id, now

TOOL = ToolRow.__table__  # type: ignore[attr-defined]


class ToolStorageFailed(Exception):
    """A tool could not be written. SQLAlchemy's own errors quote the statement's parameters, which hold the
    tool's secrets (header values, variables): this one names only what failed, so no log line carries them."""


class _IdTaken(ToolStorageFailed):
    """The primary key (owner, id) is the only constraint a complete row can break: the owner has the id."""


@asynccontextmanager
async def _without_parameters(what: str) -> AsyncIterator[None]:
    """Wraps a write transaction (outside it, so it has rolled back when this converts its error)."""
    try:
        yield
    except IntegrityError:
        raise _IdTaken(f"{what} failed: the id is taken") from None
    except StatementError as err:
        cause = type(err.orig).__name__ if err.orig is not None else type(err).__name__
        raise ToolStorageFailed(f"{what} failed ({cause})") from None


def _values(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "kind": tool.kind.value,
        "url": tool.url,
        "code": tool.code,
        "secrets": dict(tool.secrets),
    }


class ToolQueries(Database):
    async def insert_tool(self, tool: Tool) -> Tool | None:
        at = now()
        row = {"owner": tool.owner, "id": tool.id or new_id(), **_values(tool), "created_at": at, "updated_at": at}
        try:
            async with _without_parameters("storing the tool"), self._write() as conn:
                await conn.execute(TOOL.insert().values(**row))
        except _IdTaken:  # also the second of two racing creates
            return None
        return convert.tool(ToolRow(**row))

    async def get_tool(self, owner: str, tool_id: str) -> Tool | None:
        async with self._read() as conn:
            row = (await conn.execute(select(TOOL).where(TOOL.c.owner == owner, TOOL.c.id == tool_id))).first()
        return convert.tool(row) if row else None

    async def get_tools(self, owner: str, ids: Sequence[str]) -> dict[str, Tool]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = select(TOOL).where(TOOL.c.owner == owner, TOOL.c.id.in_(wanted))
        async with self._read() as conn:
            return {row.id: convert.tool(row) for row in (await conn.execute(query)).all()}

    async def list_tools(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Tool]:
        query = select(TOOL).where(TOOL.c.owner == owner)
        if after:
            query = query.where(before(TOOL, after))
        query = query.order_by(TOOL.c.created_at.desc(), TOOL.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [convert.tool(r) for r in (await conn.execute(query)).all()]

    async def update_tool(self, tool: Tool) -> Tool | None:
        at = now()
        where = (TOOL.c.owner == tool.owner, TOOL.c.id == tool.id)
        async with _without_parameters("updating the tool"), self._write() as conn:
            res = await conn.execute(update(TOOL).where(*where).values(**_values(tool), updated_at=at))
            if not res.rowcount:
                return None
            created = (await conn.execute(select(TOOL.c.created_at).where(*where))).scalar_one()
        stored = ToolRow(owner=tool.owner, id=tool.id, **_values(tool), created_at=created, updated_at=at)
        return convert.tool(stored)

    async def delete_tool(self, owner: str, tool_id: str) -> bool:
        async with self._write() as conn:
            res = await conn.execute(delete(TOOL).where(TOOL.c.owner == owner, TOOL.c.id == tool_id))
        return bool(res.rowcount)
