"""SQLModel tables. Kept apart from domain types; storage/convert.py maps between them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(primary_key=True)
    name: str
    owner: str = Field(index=True)
    prefix: str
    # SHA-256 of the secret: keys are 256-bit random, so a fast hash is enough (no brute force possible).
    secret_hash: str = Field(unique=True, index=True)
    scope: str = "chat"
    created_at: datetime
    expires_at: datetime | None = None
    # Updated at most once a minute per key: a write on every call would cost more than the call.
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ServerSecretRow(SQLModel, table=True):
    """Secrets every server process sharing the database must agree on (e.g. the edge identity key)."""

    __tablename__ = "server_secret"

    name: str = Field(primary_key=True)
    value: str


class FlowRow(SQLModel, table=True):
    __tablename__ = "flow"
    __table_args__ = (Index("ix_flow_owner_created", "owner", "created_at", "id"),)

    id: str = Field(primary_key=True)
    owner: str
    name: str
    graph: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime


class ChatRow(SQLModel, table=True):
    __tablename__ = "chat"
    __table_args__ = (Index("ix_chat_owner_created", "owner", "created_at", "id"),)

    id: str = Field(primary_key=True)
    owner: str
    name: str
    from_type: str
    from_flow: str
    # The flow as it was when the chat was created: deleting or changing the flow does not break the chat.
    graph: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str
    error: str = ""
    input_prompt: str = ""
    last_seq: int = 0
    created_at: datetime
    updated_at: datetime
    # Budgets, fixed at creation (server defaults fill what the client left out).
    max_agent_turns: int = 0
    input_timeout_seconds: float = 0.0
    input_timeout_action: str = "skip"
    # The current run: its number, the message that started it, how many journal steps it has, and when
    # the pending question (if any) times out. A run's state is its journal (RunStepRow): replaying it
    # through the engine rebuilds the conversation exactly where it was.
    run_no: int = 0
    run_input: str = ""
    run_steps: int = 0
    input_deadline: datetime | None = None


class RunStepRow(SQLModel, table=True):
    """One nondeterministic result of a run (a model reply, a person's answer, a choice) or a stored message,
    in the order the engine met them: the journal a run is replayed from after a restart."""

    __tablename__ = "run_step"

    chat_id: str = Field(foreign_key="chat.id", ondelete="CASCADE", primary_key=True)
    run_no: int = Field(primary_key=True)
    step_no: int = Field(primary_key=True)
    kind: str
    value: str | None = None
    created_at: datetime


class IdempotencyRow(SQLModel, table=True):
    """The first response to a write that carried a request_id: a retry gets it back instead of a redo."""

    __tablename__ = "idempotency"

    owner: str = Field(primary_key=True)
    method: str = Field(primary_key=True)
    request_id: str = Field(primary_key=True)
    response: bytes
    created_at: datetime


class MessageRow(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (UniqueConstraint("chat_id", "seq", name="uq_message_chat_seq"),)

    id: str = Field(primary_key=True)
    chat_id: str = Field(foreign_key="chat.id", ondelete="CASCADE")
    seq: int
    type: str
    sender: str
    receiver: str
    content: str
    created_at: datetime


class StatusEventRow(SQLModel, table=True):
    """Status changes, stored so that WatchChat can replay them after `after_seq`."""

    __tablename__ = "status_event"

    chat_id: str = Field(foreign_key="chat.id", ondelete="CASCADE", primary_key=True)
    seq: int = Field(primary_key=True)
    status: str
    error: str = ""
    input_prompt: str = ""
    created_at: datetime
