"""What the domain needs from storage, declared by the domain: one Protocol per concern, and the types the
port speaks in. `storage.repository.Repository` implements all of them (the composition root, app.py, hands
it to each service); the domain never imports storage, and a test can hand it an in-memory store instead.

Storage reports outcomes in the port's terms (None for a missing row or a lost race, `Claim`,
`RunLimitReached`); the domain decides which error a client sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..engine.code_execution import CodeBlock
from ..engine.llm import Endpoint, OnDelta
from ..engine.tool_calls import ModelReply
from .model import (
    ApiKey,
    Budget,
    Chat,
    ChatEvent,
    ChatStatus,
    Flow,
    JournalEntry,
    KeyScope,
    Message,
    NewMessage,
    StatusChange,
    Tool,
    ToolCall,
    ToolResult,
)

# What one step of a run appends to a chat, in order.
StepItem = NewMessage | StatusChange


@dataclass(frozen=True)
class StepResult:
    """The chat after a step, and the events the step committed (for watchers)."""

    chat: Chat
    events: list[ChatEvent]


@dataclass(frozen=True)
class Claim:
    """What claiming a request_id found (IdempotencyStore.claim_request)."""

    claimed: bool  # this caller must do the write
    response: bytes | None = None  # the first attempt's response, when it finished
    reused: bool = False  # the id was first used for a different request


class RunLimitReached(Exception):
    """Starting the run would give its owner more runs in progress than `limit`; nothing was written."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} runs in progress")
        self.limit = limit


class ModelClient(Protocol):
    """What a run calls for a model's reply (engine/llm.py LlmClient; a test's scripted model)."""

    async def complete(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None
    ) -> ModelReply:
        """A text reply (its tool_calls empty) and its usage; `on_delta` hears the text as it is written."""
        ...

    async def propose(
        self,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        on_delta: OnDelta | None = None,
    ) -> ModelReply: ...


class CodeRunner(Protocol):
    """What a run calls to execute an agent's code blocks (engine/code_execution.py CodeExecutor)."""

    async def run(self, blocks: list[CodeBlock]) -> str: ...


class ToolRunner(Protocol):
    """What a run calls to execute one call of a server-run (http or python) tool
    (engine/tool_execution.py ToolExecutor). A failure is an error result, never an exception."""

    async def run(self, tool: Tool, call: ToolCall, chat_id: str) -> ToolResult: ...


class KeyStore(Protocol):
    async def insert_key(
        self,
        *,
        name: str,
        owner: str,
        prefix: str,
        secret_hash: str,
        scope: KeyScope = KeyScope.CHAT,
        expires_at: datetime | None = None,
    ) -> ApiKey: ...

    async def list_keys(
        self, owner: str | None = None, limit: int | None = None, after: tuple[datetime, str] | None = None
    ) -> list[ApiKey]: ...

    async def revoke_key(self, key_id: str, owner: str | None = None) -> bool: ...

    async def get_key(self, key_id: str, owner: str) -> ApiKey | None: ...

    async def key_for_hash(self, secret_hash: str) -> ApiKey | None: ...

    async def touch_key(self, key_id: str, when: datetime) -> None: ...


class FlowStore(Protocol):
    async def insert_flow(self, *, owner: str, name: str, graph: dict[str, Any], warnings: list[str]) -> Flow: ...

    async def get_flow(self, owner: str, flow_id: str) -> Flow | None: ...

    async def list_flows(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Flow]: ...

    async def delete_flow(self, owner: str, flow_id: str) -> bool: ...


class ToolLookup(Protocol):
    """What a run, and a flow that binds tools, need of the stored tools."""

    async def get_tools(self, owner: str, ids: Sequence[str]) -> dict[str, Tool]:
        """The owner's tools among `ids`, by id; an id the owner has no tool for is absent."""
        ...


class ToolStore(ToolLookup, Protocol):
    """Tools, keyed by (owner, id): ids are per owner (a client may choose one, see domain/tools.py)."""

    async def insert_tool(self, tool: Tool) -> Tool | None:
        """Stores `tool` as given (a new id when `tool.id` is empty), its created_at and updated_at now;
        None, storing nothing, when its owner already has a tool with that id."""
        ...

    async def get_tool(self, owner: str, tool_id: str) -> Tool | None: ...

    async def list_tools(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Tool]: ...

    async def update_tool(self, tool: Tool) -> Tool | None:
        """Replaces every field of the tool (owner, id) but created_at, updated_at now; None if it is gone."""
        ...

    async def delete_tool(self, owner: str, tool_id: str) -> bool: ...


class ChatStore(Protocol):
    """Chats, their messages and events, and the steps runs append to them."""

    async def insert_chat(
        self,
        *,
        owner: str,
        name: str,
        from_type: str,
        from_flow: str,
        graph: dict[str, Any],
        budget: Budget | None = None,
    ) -> Chat: ...

    async def get_chat(self, owner: str, chat_id: str) -> Chat | None: ...

    async def get_chat_any_owner(self, chat_id: str) -> Chat | None: ...

    async def get_chat_graph(self, chat_id: str) -> dict[str, Any] | None: ...

    async def list_chats(self, owner: str, limit: int, after: tuple[datetime, str] | None) -> list[Chat]: ...

    async def delete_chat(self, owner: str, chat_id: str) -> Chat | None: ...

    async def list_messages(self, chat_id: str, limit: int, after_seq: int) -> list[Message]: ...

    async def events_after(self, chat_id: str, after_seq: int) -> list[ChatEvent]: ...

    async def apply_step(
        self,
        chat_id: str,
        items: Sequence[StepItem],
        *,
        require: Sequence[ChatStatus] | None = None,
        owner: str | None = None,
        journal: Sequence[JournalEntry] = (),
        start_run: str | None = None,
        run_no: int | None = None,
        holder: str | None = None,
        lease_until: datetime | None = None,
        max_runs_per_owner: int | None = None,
        at_step: int | None = None,
    ) -> StepResult | None:
        """Appends `items` (and `journal` entries) as one transaction; None when the chat is gone or the
        precondition (`require`, `run_no`, the lease `holder`) no longer holds. With `start_run` and
        `max_runs_per_owner`, raises RunLimitReached (writing nothing) when the owner is at the cap."""
        ...


class RunStore(ChatStore, ToolLookup, Protocol):
    """What runs need besides chats: their journals and the leases that say which replica executes them."""

    @property
    def replica_id(self) -> str: ...

    async def journal(
        self, chat_id: str, run_no: int, after_step: int = 0, limit: int | None = None
    ) -> list[JournalEntry]: ...

    async def acquire_lease(self, chat_id: str, holder: str, until: datetime) -> bool: ...

    async def renew_leases(self, holder: str, chat_ids: Sequence[str], until: datetime) -> dict[str, ChatStatus]: ...

    async def release_leases(self, holder: str) -> None: ...

    async def unheld_runs(self, limit: int = 100) -> list[str]: ...

    async def held_runs(self, holder: str) -> list[str]: ...


class IdempotencyStore(Protocol):
    async def claim_request(
        self, owner: str, method: str, request_id: str, stale_before: datetime, *, fingerprint: str | None = None
    ) -> Claim: ...

    async def record_response(self, owner: str, method: str, request_id: str, response: bytes) -> None: ...

    async def release_claim(self, owner: str, method: str, request_id: str) -> None: ...


class ChatsAndFlows(ChatStore, FlowStore, ToolStore, Protocol):
    """ChatService's view: chats, the flows a chat is created from, and the tools those flows bind."""
