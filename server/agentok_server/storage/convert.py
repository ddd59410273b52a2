"""Rows -> domain types (one direction; the repository builds rows from domain values itself)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..domain.model import (
    ApiKey,
    Budget,
    Chat,
    ChatEvent,
    ChatStatus,
    ChatUsage,
    EventKind,
    Flow,
    KeyScope,
    Message,
    MessageType,
    RunState,
    StatusChange,
    TimeoutAction,
    Tool,
    ToolCall,
    ToolKind,
    ToolResult,
    Usage,
)

# A table object or a Core Row: both expose the columns as attributes.
RowLike = Any


def utc(value: datetime) -> datetime:
    """SQLite drops tzinfo; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def chat(row: RowLike) -> Chat:
    return Chat(
        id=row.id,
        owner=row.owner,
        name=row.name,
        from_type=row.from_type,
        from_flow=row.from_flow,
        status=ChatStatus(row.status),
        error=row.error,
        input_prompt=row.input_prompt,
        last_seq=row.last_seq,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        budget=Budget(
            max_agent_turns=row.max_agent_turns,
            input_timeout_seconds=row.input_timeout_seconds,
            input_timeout_action=TimeoutAction(row.input_timeout_action),
            max_tokens_per_run=row.max_tokens_per_run,
        ),
        run=RunState(
            run_no=row.run_no,
            run_input=row.run_input,
            run_steps=row.run_steps,
            input_deadline=_maybe_utc(row.input_deadline),
        ),
        pending_tool_calls=tool_calls(row.pending_tool_calls),
        usage=chat_usage(row),
    )


def chat_usage(row: RowLike) -> ChatUsage:
    return ChatUsage(
        run=Usage(row.run_prompt_tokens, row.run_completion_tokens, row.run_total_tokens),
        total=Usage(row.prompt_tokens, row.completion_tokens, row.total_tokens),
    )


def usage(row: RowLike) -> Usage | None:
    """A message's or a journal step's usage columns; None when the provider reported nothing."""
    if row.prompt_tokens is None and row.completion_tokens is None and row.total_tokens is None:
        return None  # most messages (a person's, a fixed reply's): no Usage to build and drop
    found = Usage(row.prompt_tokens, row.completion_tokens, row.total_tokens)
    return found if found.reported else None


def usage_columns(found: Usage | None) -> dict[str, int | None]:
    """The columns a message or a journal step stores its usage in (NULL for what is not reported)."""
    found = found or Usage()
    return {
        "prompt_tokens": found.prompt_tokens,
        "completion_tokens": found.completion_tokens,
        "total_tokens": found.total_tokens,
    }


# A dict lookup, not the enum's own call (which searches its members): this runs for every message read.
_MESSAGE_TYPES = {t.value: t for t in MessageType}


def message(row: RowLike) -> Message:
    return Message(
        id=row.id,
        chat_id=row.chat_id,
        seq=row.seq,
        type=_MESSAGE_TYPES[row.type],
        sender=row.sender,
        receiver=row.receiver,
        content=row.content,
        created_at=utc(row.created_at),
        tool_calls=tool_calls(row.tool_calls),
        tool_responses=tool_results(row.tool_responses),
        usage=usage(row),
    )


def message_event(row: RowLike) -> ChatEvent:
    msg = message(row)
    return ChatEvent(chat_id=msg.chat_id, seq=msg.seq, time=msg.created_at, kind=EventKind.MESSAGE, message=msg)


def status_event(row: RowLike) -> ChatEvent:
    change = StatusChange(
        status=ChatStatus(row.status),
        error=row.error,
        input_prompt=row.input_prompt,
        pending_tool_calls=tool_calls(row.pending_tool_calls),
    )
    return ChatEvent(chat_id=row.chat_id, seq=row.seq, time=utc(row.created_at), kind=EventKind.STATUS, status=change)


def flow(row: RowLike) -> Flow:
    return Flow(
        id=row.id,
        owner=row.owner,
        name=row.name,
        graph=row.graph,
        warnings=list(row.warnings),
        created_at=utc(row.created_at),
    )


def _maybe_utc(value: datetime | None) -> datetime | None:
    return utc(value) if value else None


def api_key(row: RowLike) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        owner=row.owner,
        prefix=row.prefix,
        scope=KeyScope(row.scope),
        created_at=utc(row.created_at),
        expires_at=_maybe_utc(row.expires_at),
        last_used_at=_maybe_utc(row.last_used_at),
        revoked_at=_maybe_utc(row.revoked_at),
    )


def tool_calls(value: list[dict[str, Any]] | None) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(call_id=c["call_id"], name=c["name"], arguments=c["arguments"]) for c in value or ())


def tool_results(value: list[dict[str, Any]] | None) -> tuple[ToolResult, ...]:
    return tuple(
        ToolResult(call_id=r["call_id"], content=r["content"], is_error=bool(r.get("is_error"))) for r in value or ()
    )


def tool_calls_json(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]] | None:
    """The JSON column's value: NULL rather than [] when there are none (most messages)."""
    return [{"call_id": c.call_id, "name": c.name, "arguments": c.arguments} for c in calls] or None


def tool_results_json(results: tuple[ToolResult, ...]) -> list[dict[str, Any]] | None:
    return [{"call_id": r.call_id, "content": r.content, "is_error": r.is_error} for r in results] or None


def tool(row: RowLike) -> Tool:
    return Tool(
        id=row.id,
        owner=row.owner,
        name=row.name,
        description=row.description,
        parameters=dict(row.parameters),
        kind=ToolKind(row.kind),
        url=row.url,
        code=row.code,
        secrets=dict(row.secrets),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
    )
