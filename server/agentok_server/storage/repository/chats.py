"""Chats and their history (messages and status events, in one per-chat sequence)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select

from ...domain.model import Budget, Chat, ChatEvent, ChatStatus, Message
from .. import convert
from ..tables import ChatRow
from .base import CHAT, MESSAGE, RUN_STEP, STATUS_EVENT, before, new_id, now
from .notifications import Notifications

# Statements on the hot path (GetChat is the polling call; runs lock the chat with them) are built once.
CHAT_COLUMNS = [c for c in CHAT.c if c.name != "graph"]  # all but the flow snapshot, which only runs need
GET_CHAT = select(*CHAT_COLUMNS).where(CHAT.c.id == bindparam("chat_id"), CHAT.c.owner == bindparam("owner"))
GET_CHAT_ANY_OWNER = select(*CHAT_COLUMNS).where(CHAT.c.id == bindparam("chat_id"))
# Built once, like the two above: a statement made per call costs SQLAlchemy its construction and cache key
# every time (a tenth of a ListMessages page's server time: make bench-profile).
LIST_MESSAGES = (
    select(MESSAGE)
    .where(MESSAGE.c.chat_id == bindparam("chat_id"), MESSAGE.c.seq > bindparam("after_seq"))
    .order_by(MESSAGE.c.seq)
    .limit(bindparam("limit"))
)


class ChatQueries(Notifications):
    async def insert_chat(
        self,
        *,
        owner: str,
        name: str,
        from_type: str,
        from_flow: str,
        graph: dict[str, Any],
        budget: Budget | None = None,
    ) -> Chat:
        budget = budget or Budget()
        at = now()
        row: dict[str, Any] = {
            "id": new_id(),
            "owner": owner,
            "name": name,
            "from_type": from_type,
            "from_flow": from_flow,
            "graph": graph,
            "status": ChatStatus.READY.value,
            "error": "",
            "input_prompt": "",
            "last_seq": 0,
            "created_at": at,
            "updated_at": at,
            "max_agent_turns": budget.max_agent_turns,
            "input_timeout_seconds": budget.input_timeout_seconds,
            "input_timeout_action": budget.input_timeout_action.value,
            "max_tokens_per_run": budget.max_tokens_per_run,
            "run_no": 0,
            "run_input": "",
            "run_steps": 0,
            "input_deadline": None,
        }
        async with self._write() as conn:
            await conn.execute(CHAT.insert().values(**row))
        return convert.chat(ChatRow(**row))

    async def get_chat(self, owner: str, chat_id: str) -> Chat | None:
        async with self._read() as conn:
            row = (await conn.execute(GET_CHAT, {"chat_id": chat_id, "owner": owner})).first()
        return convert.chat(row) if row else None

    async def get_chat_any_owner(self, chat_id: str) -> Chat | None:
        async with self._read() as conn:
            row = (await conn.execute(GET_CHAT_ANY_OWNER, {"chat_id": chat_id})).first()
        return convert.chat(row) if row else None

    async def get_chat_graph(self, chat_id: str) -> dict[str, Any] | None:
        async with self._read() as conn:
            row = (await conn.execute(select(CHAT.c.graph).where(CHAT.c.id == chat_id))).first()
        return row.graph if row else None

    async def list_chats(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Chat]:
        query = select(*CHAT_COLUMNS).where(CHAT.c.owner == owner)
        if after:
            query = query.where(before(CHAT, after))
        query = query.order_by(CHAT.c.created_at.desc(), CHAT.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [convert.chat(r) for r in (await conn.execute(query)).all()]

    async def delete_chat(self, owner: str, chat_id: str) -> Chat | None:
        """Deletes the chat with its history in one transaction; returns it as it was."""
        async with self._write() as conn:
            row = (await conn.execute(select(*CHAT_COLUMNS).where(CHAT.c.id == chat_id, CHAT.c.owner == owner))).first()
            if row is None:
                return None
            await conn.execute(delete(MESSAGE).where(MESSAGE.c.chat_id == chat_id))
            await conn.execute(delete(RUN_STEP).where(RUN_STEP.c.chat_id == chat_id))
            await conn.execute(delete(STATUS_EVENT).where(STATUS_EVENT.c.chat_id == chat_id))
            await conn.execute(delete(CHAT).where(CHAT.c.id == chat_id))
            await self._notify(conn, chat_id, last_seq=row.last_seq, deleted=True)
        return convert.chat(row)

    async def list_messages(self, chat_id: str, limit: int, after_seq: int) -> list[Message]:
        params = {"chat_id": chat_id, "after_seq": after_seq, "limit": limit}
        async with self._read() as conn:
            return [convert.message(r) for r in (await conn.execute(LIST_MESSAGES, params)).all()]

    async def events_after(self, chat_id: str, after_seq: int) -> list[ChatEvent]:
        async with self._read() as conn:
            msgs = (
                await conn.execute(select(MESSAGE).where(MESSAGE.c.chat_id == chat_id, MESSAGE.c.seq > after_seq))
            ).all()
            statuses = (
                await conn.execute(
                    select(STATUS_EVENT).where(STATUS_EVENT.c.chat_id == chat_id, STATUS_EVENT.c.seq > after_seq)
                )
            ).all()
        events = [convert.message_event(r) for r in msgs] + [convert.status_event(r) for r in statuses]
        events.sort(key=lambda e: e.seq)
        return events
