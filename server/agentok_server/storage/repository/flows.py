"""Flows: the Agentok Studio graphs chats are created from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from ...domain.model import Flow
from .. import convert
from ..tables import FlowRow
from .base import FLOW, Database, before, new_id, now


class FlowQueries(Database):
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
            query = query.where(before(FLOW, after))
        query = query.order_by(FLOW.c.created_at.desc(), FLOW.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [convert.flow(r) for r in (await conn.execute(query)).all()]

    async def delete_flow(self, owner: str, flow_id: str) -> bool:
        async with self._write() as conn:
            res = await conn.execute(delete(FLOW).where(FLOW.c.id == flow_id, FLOW.c.owner == owner))
        return bool(res.rowcount)
