"""SQLModel tables. Kept apart from domain types; storage/convert.py maps between them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def _time(*, nullable: bool = False) -> Any:
    """A UTC timestamp column: timezone-aware on PostgreSQL (asyncpg refuses to mix aware and naive values);
    SQLite stores the UTC wall time and convert.utc() puts the zone back."""
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable)  # type: ignore[call-overload]


def _counter() -> Any:
    """A token count that starts at zero (64-bit: a chat's all-time total may pass 2**31)."""
    return Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})  # type: ignore[call-overload]


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(primary_key=True)
    name: str
    owner: str = Field(index=True)
    prefix: str
    # SHA-256 of the secret: keys are 256-bit random, so a fast hash is enough (no brute force possible).
    secret_hash: str = Field(unique=True, index=True)
    scope: str = "chat"
    created_at: datetime = _time()
    expires_at: datetime | None = _time(nullable=True)
    # Updated at most once a minute per key: a write on every call would cost more than the call.
    last_used_at: datetime | None = _time(nullable=True)
    revoked_at: datetime | None = _time(nullable=True)


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
    created_at: datetime = _time()


class ToolRow(SQLModel, table=True):
    """A tool. Its id is unique per owner, not globally: tenants choose ids (flows exported from Agentok Studio
    name theirs), and a global key would tell one tenant which ids another has taken."""

    __tablename__ = "tool"
    __table_args__ = (Index("ix_tool_owner_created", "owner", "created_at", "id"),)

    owner: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    kind: str
    url: str = ""
    code: str = ""
    # Header values (http) or variables (python): used by the server, never returned by the API.
    secrets: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()


class ChatRow(SQLModel, table=True):
    __tablename__ = "chat"
    __table_args__ = (
        Index("ix_chat_owner_created", "owner", "created_at", "id"),
        # The lease keeper's scan for runs nobody holds.
        Index("ix_chat_status", "status"),
    )

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
    created_at: datetime = _time()
    updated_at: datetime = _time()
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
    input_deadline: datetime | None = _time(nullable=True)
    # Which server replica executes the current run, until when (it renews the lease while the run lives).
    # A replica whose lease lapsed can write no more steps; another one takes the run over from its journal.
    lease_holder: str | None = None
    lease_expires_at: datetime | None = _time(nullable=True)
    # The client tool calls the chat waits for (status wait_for_human_input): [{call_id, name, arguments}].
    pending_tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Most tokens (as the provider counts them) one run may use; 0: no limit.
    max_tokens_per_run: int = _counter()
    # The tokens the provider reported: this run's (reset when a run starts) and the chat's all-time totals.
    run_prompt_tokens: int = _counter()
    run_completion_tokens: int = _counter()
    run_total_tokens: int = _counter()
    prompt_tokens: int = _counter()
    completion_tokens: int = _counter()
    total_tokens: int = _counter()


class RunStepRow(SQLModel, table=True):
    """One nondeterministic result of a run (a model reply, a person's answer, a choice) or a stored message,
    in the order the engine met them: the journal a run is replayed from after a restart."""

    __tablename__ = "run_step"

    chat_id: str = Field(foreign_key="chat.id", ondelete="CASCADE", primary_key=True)
    run_no: int = Field(primary_key=True)
    step_no: int = Field(primary_key=True)
    kind: str
    value: str | None = None
    created_at: datetime = _time()
    # A model reply's usage as the provider reported it (NULL when it did not): replaying the journal
    # counts the same tokens against the run's budget as the live run did.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class IdempotencyRow(SQLModel, table=True):
    """The first response to a write that carried a request_id: a retry gets it back instead of a redo.
    The row is claimed (response still NULL) before the write runs, so a retry racing the first attempt,
    on any replica, is told to wait instead of doing the write again."""

    __tablename__ = "idempotency"

    owner: str = Field(primary_key=True)
    method: str = Field(primary_key=True)
    request_id: str = Field(primary_key=True)
    response: bytes | None = None
    created_at: datetime = _time()
    # SHA-256 (hex) of the request the id was first used for (AIP-155: the same id with another request is
    # refused). NULL on rows written before migration 0003, which match any request.
    fingerprint: str | None = None


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
    created_at: datetime = _time()
    # [{call_id, name, arguments}] and [{call_id, content, is_error}]; NULL on messages without them.
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    tool_responses: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The usage the provider reported for the model call(s) that produced the message; NULL when none did.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class StatusEventRow(SQLModel, table=True):
    """Status changes, stored so that WatchChat can replay them after `after_seq`."""

    __tablename__ = "status_event"

    chat_id: str = Field(foreign_key="chat.id", ondelete="CASCADE", primary_key=True)
    seq: int = Field(primary_key=True)
    status: str
    error: str = ""
    input_prompt: str = ""
    created_at: datetime = _time()
    pending_tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
