"""Domain types: plain dataclasses, independent of SQL tables and proto messages."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ChatStatus(enum.StrEnum):
    READY = "ready"
    RUNNING = "running"
    WAITING = "wait_for_human_input"
    COMPLETED = "completed"
    ERROR = "error"

    @property
    def in_run(self) -> bool:
        return self in (ChatStatus.RUNNING, ChatStatus.WAITING)


class MessageType(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"  # the results of tool calls, from the agent that ran them (AutoGen's role "tool")


@dataclass(frozen=True)
class ToolCall:
    """One call a model proposed (OpenAI's `tool_calls[]`): `arguments` is the JSON text as written."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult:
    """The result of one call, as the model will see it; `is_error`: the call failed and content says why."""

    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Usage:
    """Tokens a model call used, as the provider reported them (OpenAI's `usage`); None for a count it left
    out. A sum of usages (a chat's totals) has a count wherever any part had one."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @property
    def reported(self) -> bool:
        return any(n is not None for n in (self.prompt_tokens, self.completion_tokens, self.total_tokens))

    @property
    def tokens(self) -> int:
        """What a token budget counts: the provider's total, or prompt plus completion when it gave none."""
        if self.total_tokens is not None:
            return self.total_tokens
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def __add__(self, other: Usage) -> Usage:
        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            add(self.prompt_tokens, other.prompt_tokens),
            add(self.completion_tokens, other.completion_tokens),
            add(self.total_tokens, other.total_tokens),
        )


@dataclass(frozen=True)
class ChatUsage:
    """A chat's running totals: the current (or last) run's, and all its runs'. Counts are 0 until a
    provider reports any; `total_tokens` sums what budgets count (Usage.tokens)."""

    run: Usage = Usage(0, 0, 0)
    total: Usage = Usage(0, 0, 0)

    def after(self, journal: Iterable[JournalEntry], *, new_run: bool = False) -> ChatUsage:
        """The totals once a step journals `journal` (whose model replies carry their usage); a step that
        starts a run starts the run's count from zero."""
        used = sum((e.usage for e in journal if e.usage is not None), Usage())
        counted = Usage(used.prompt_tokens or 0, used.completion_tokens or 0, used.tokens)
        return ChatUsage(run=(Usage(0, 0, 0) if new_run else self.run) + counted, total=self.total + counted)


@dataclass(frozen=True)
class Chat:
    id: str
    owner: str
    name: str
    from_type: str
    from_flow: str
    status: ChatStatus
    error: str
    input_prompt: str
    last_seq: int
    created_at: datetime
    updated_at: datetime
    budget: Budget
    run: RunState
    # The client tool calls the chat waits for (status WAITING); empty when it waits for a person's text.
    pending_tool_calls: tuple[ToolCall, ...] = ()
    usage: ChatUsage = ChatUsage()


class TimeoutAction(enum.StrEnum):
    SKIP = "skip"  # answer AutoGen's empty reply and go on
    END = "end"  # end the run


@dataclass(frozen=True)
class Budget:
    """Per-chat limits, fixed at creation: 0 / 0.0 mean none."""

    max_agent_turns: int = 0
    input_timeout_seconds: float = 0.0
    input_timeout_action: TimeoutAction = TimeoutAction.SKIP
    max_tokens_per_run: int = 0


@dataclass(frozen=True)
class RunState:
    run_no: int = 0
    run_input: str = ""
    run_steps: int = 0
    input_deadline: datetime | None = None


@dataclass(frozen=True)
class JournalEntry:
    kind: str  # "say" | "llm" | "human" | "choice" | "exec" | "tool" | "tool_results"
    value: str | None = None
    # A model reply's usage (kinds "llm" and "tool"): replayed, it counts against the budget again.
    usage: Usage | None = None


@dataclass(frozen=True)
class Message:
    id: str
    chat_id: str
    seq: int
    type: MessageType
    sender: str
    receiver: str
    content: str
    created_at: datetime
    tool_calls: tuple[ToolCall, ...] = ()
    tool_responses: tuple[ToolResult, ...] = ()
    # What the model call(s) that produced the message used; None when no provider reported usage.
    usage: Usage | None = None


@dataclass(frozen=True)
class NewMessage:
    """A message the engine or a client produced, before storage gives it an id and a seq."""

    type: MessageType
    sender: str
    receiver: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_responses: tuple[ToolResult, ...] = ()
    usage: Usage | None = None


@dataclass(frozen=True)
class StatusChange:
    status: ChatStatus
    error: str = ""
    input_prompt: str = ""
    # When the question times out (wait_for_human_input with a deadline); kept on the chat, not in events.
    input_deadline: datetime | None = None
    # With WAITING: the client tool calls waited for (replacing any still pending); else they are cleared.
    pending_tool_calls: tuple[ToolCall, ...] = ()


class EventKind(enum.StrEnum):
    MESSAGE = "message"
    STATUS = "status"
    DELETED = "deleted"
    KEEPALIVE = "keepalive"
    SHUTDOWN = "shutdown"
    DELTA = "delta"  # live only: never stored, journaled or replayed


@dataclass(frozen=True)
class MessageDelta:
    """Text a model appended to a reply it is still writing. `draft_id` names the reply (the run and the
    journal step its model call will be stored at: stable across replicas and restarts); the stored message
    that follows carries the whole text, so a delta may be dropped without losing anything."""

    draft_id: str
    sender: str
    text: str


@dataclass(frozen=True)
class ChatEvent:
    chat_id: str
    seq: int
    time: datetime
    kind: EventKind
    message: Message | None = None
    status: StatusChange | None = None
    delta: MessageDelta | None = None


@dataclass(frozen=True)
class Flow:
    id: str
    owner: str
    name: str
    graph: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    created_at: datetime | None = None


class ToolKind(enum.StrEnum):
    HTTP = "http"  # the server POSTs each call to a URL
    PYTHON = "python"  # the server runs Agentok Studio's Python tool in the code sandbox
    CLIENT = "client"  # the caller's backend runs it and answers through SendInput


@dataclass(frozen=True)
class Tool:
    """A function agents may call. `secrets` are the http tool's header values or the python tool's
    variables: stored and used, never returned (transport shows their names only)."""

    id: str
    owner: str
    name: str
    description: str
    parameters: dict[str, Any]
    kind: ToolKind
    url: str = ""  # http
    code: str = ""  # python
    secrets: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class KeyScope(enum.StrEnum):
    CHAT = "chat"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    owner: str
    prefix: str
    scope: KeyScope
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class AuthMethod(enum.StrEnum):
    API_KEY = "api_key"
    BEARER = "bearer"


@dataclass(frozen=True)
class Identity:
    """Who is calling, as established at the edge (or by the server for direct gRPC calls)."""

    owner: str
    method: AuthMethod
    scope: KeyScope  # bearer tokens act with the owner's full rights
    key_id: str = ""

    @property
    def may_manage_keys(self) -> bool:
        return self.method is AuthMethod.BEARER or self.scope is KeyScope.ADMIN
