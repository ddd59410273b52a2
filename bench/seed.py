"""What the workloads read, made through the API where it is small (flows, chats) and straight in SQL where it
is large (a million messages, a hundred thousand chats): history built by runs would take hours."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
from google.protobuf import struct_pb2

from agentok.v1 import chat_service_pb2 as cs
from agentok.v1 import chat_service_pb2_grpc, flow_service_pb2_grpc
from agentok.v1 import flow_service_pb2 as fs

# A person answers the assistant (ALWAYS); no model needed, so the figures measure the service alone.
HITL_FLOW = {
    "nodes": [
        {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
        {"id": "u", "type": "user", "data": {"name": "User", "human_input_mode": "NEVER", "default_auto_reply": "ok"}},
        {
            "id": "a",
            "type": "conversable",
            "data": {"name": "Agent", "disable_llm": True, "default_auto_reply": "done", "human_input_mode": "ALWAYS"},
        },
    ],
    "edges": [{"source": "i", "target": "u"}, {"source": "u", "target": "a", "type": "converse"}],
}
# A person (ALWAYS) talks with a fixed-reply agent: each answer adds two messages.
ECHO_FLOW = {
    "nodes": [
        {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
        {"id": "u", "type": "user", "data": {"name": "User", "human_input_mode": "ALWAYS"}},
        {
            "id": "a",
            "type": "conversable",
            "data": {"name": "Agent", "disable_llm": True, "default_auto_reply": "pong"},
        },
    ],
    "edges": [{"source": "i", "target": "u"}, {"source": "u", "target": "a", "type": "converse"}],
}
_FOREVER = {"max_consecutive_auto_reply": 10_000_000}
# Two fixed-reply agents and nobody to ask: the run goes on until its turn budget ends it (or it is cancelled).
NOISY_FLOW = {
    "nodes": [
        {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
        {
            "id": "u",
            "type": "user",
            "data": {"name": "User", "human_input_mode": "NEVER", "default_auto_reply": "ping", **_FOREVER},
        },
        {
            "id": "a",
            "type": "conversable",
            "data": {"name": "Agent", "disable_llm": True, "default_auto_reply": "pong", **_FOREVER},
        },
    ],
    "edges": [{"source": "i", "target": "u"}, {"source": "u", "target": "a", "type": "converse"}],
}


def metadata(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


def setup_chat(edge: str, key: str, flow: dict[str, Any], max_agent_turns: int = 0) -> tuple[str, str]:
    """A flow and a chat of it, through the edge: (flow id, chat id). A just-started Envoy may not have seen its
    key-check endpoint healthy yet (UNAVAILABLE for a moment): asked again for up to 15 s."""
    for _ in range(30):
        try:
            return _setup_chat(edge, key, flow, max_agent_turns)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                raise
            time.sleep(0.5)
    return _setup_chat(edge, key, flow, max_agent_turns)


def _setup_chat(edge: str, key: str, flow: dict[str, Any], max_agent_turns: int) -> tuple[str, str]:
    md = metadata(key)
    with grpc.insecure_channel(edge) as ch:
        graph = struct_pb2.Struct()
        graph.update(flow)
        flow_id = (
            flow_service_pb2_grpc.FlowServiceStub(ch)
            .CreateFlow(fs.CreateFlowRequest(name="bench", flow=graph), metadata=md, timeout=10)
            .flow.id
        )
        request = cs.CreateChatRequest(
            name="bench", from_type="flow", from_flow=flow_id, max_agent_turns=max_agent_turns
        )
        chat = chat_service_pb2_grpc.ChatServiceStub(ch).CreateChat(request, metadata=md, timeout=10).chat
    return flow_id, chat.id


_BATCH = 50_000
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _message_rows(chat_id: str, count: int) -> Iterator[tuple[Any, ...]]:
    # Alternating user/assistant messages of a typical short length.
    for seq in range(1, count + 1):
        sender, receiver = ("User", "Agent") if seq % 2 else ("Agent", "User")
        yield (
            f"{chat_id}-m{seq}",
            chat_id,
            seq,
            "user" if seq % 2 else "assistant",
            sender,
            receiver,
            f"message {seq}: a reply of about the length a chat's turns have, give or take a few words",
            EPOCH + timedelta(milliseconds=seq),
        )


_MESSAGE_COLUMNS = ("id", "chat_id", "seq", "type", "sender", "receiver", "content", "created_at")


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///").removeprefix("sqlite+aiosqlite:///")


def _sqlite_time(when: datetime) -> str:
    # As SQLAlchemy stores a DateTime in SQLite: the UTC wall time, no zone.
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def insert_messages(url: str, chat_id: str, count: int) -> None:
    """`count` messages in chat `chat_id` (which has none yet), seq 1..count, and the chat's last_seq after them."""
    if url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(url), timeout=60) as db:
            marks = ",".join("?" * len(_MESSAGE_COLUMNS))
            rows = ((*r[:-1], _sqlite_time(r[-1])) for r in _message_rows(chat_id, count))
            db.executemany(f"INSERT INTO message ({','.join(_MESSAGE_COLUMNS)}) VALUES ({marks})", rows)
            db.execute("UPDATE chat SET last_seq = ? WHERE id = ?", (count, chat_id))
        return

    async def insert() -> None:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            await conn.copy_records_to_table("message", records=_message_rows(chat_id, count), columns=_MESSAGE_COLUMNS)
            await conn.execute("UPDATE chat SET last_seq = $1 WHERE id = $2", count, chat_id)
        finally:
            await conn.close()

    asyncio.run(insert())


def clone_chats(url: str, template_id: str, count: int) -> list[tuple[datetime, str]]:
    """`count` copies of chat `template_id` (same owner), created a millisecond apart; their (created_at, id)
    newest first, the order ListChats pages them in. SQLite only (the history workloads run on the default)."""
    made = [(EPOCH + timedelta(milliseconds=n), f"{template_id}-c{n:07d}") for n in range(count)]
    with sqlite3.connect(_sqlite_path(url), timeout=60) as db:
        db.row_factory = sqlite3.Row
        template = dict(db.execute("SELECT * FROM chat WHERE id = ?", (template_id,)).fetchone())
        columns = list(template)
        marks = ",".join("?" * len(columns))

        def rows() -> Iterator[list[Any]]:
            for when, chat_id in made:
                row = {**template, "id": chat_id, "created_at": _sqlite_time(when), "updated_at": _sqlite_time(when)}
                yield [row[c] for c in columns]

        db.executemany(f"INSERT INTO chat ({','.join(columns)}) VALUES ({marks})", rows())
    made.sort(reverse=True)
    return made
