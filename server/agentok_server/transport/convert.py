"""Domain types -> proto messages (requests are read field by field in the servicers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2

from agentok.v1 import api_key_pb2, chat_enums_pb2, chat_pb2, flow_pb2, tool_pb2, tool_service_pb2

from ..domain.errors import invalid_field
from ..domain.flows import public_graph
from ..domain.model import (
    ApiKey,
    Chat,
    ChatEvent,
    ChatStatus,
    EventKind,
    Flow,
    KeyScope,
    Message,
    MessageType,
    TimeoutAction,
    Tool,
    ToolCall,
    ToolKind,
    ToolResult,
    Usage,
)
from ..domain.tools import Implementation, ToolDraft

_E = TypeVar("_E")
_STATUS = {s: chat_enums_pb2.ChatStatus.Value.Value(s.value) for s in ChatStatus}
_TYPE = {t: chat_enums_pb2.MessageType.Value.Value(t.value) for t in MessageType}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """Timestamp.FromDatetime's value (a naive time is UTC) at a third of its cost: every chat and message read
    converts one or two, and its pure-Python arithmetic showed in the profile of a ListMessages page."""
    since = (value if value.tzinfo else value.replace(tzinfo=UTC)) - _EPOCH
    return timestamp_pb2.Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


_TIMEOUT_ACTION = {
    TimeoutAction.SKIP: chat_pb2.HUMAN_INPUT_TIMEOUT_ACTION_SKIP,
    TimeoutAction.END: chat_pb2.HUMAN_INPUT_TIMEOUT_ACTION_END_RUN,
}
_TIMEOUT_ACTION_FROM_PROTO: dict[int, TimeoutAction | None] = {
    chat_pb2.HUMAN_INPUT_TIMEOUT_ACTION_UNSPECIFIED: None,
    chat_pb2.HUMAN_INPUT_TIMEOUT_ACTION_SKIP: TimeoutAction.SKIP,
    chat_pb2.HUMAN_INPUT_TIMEOUT_ACTION_END_RUN: TimeoutAction.END,
}
_SCOPE_FROM_PROTO = {
    api_key_pb2.ApiKey.SCOPE_UNSPECIFIED: KeyScope.CHAT,
    api_key_pb2.ApiKey.SCOPE_CHAT: KeyScope.CHAT,
    api_key_pb2.ApiKey.SCOPE_ADMIN: KeyScope.ADMIN,
}


def _known(table: dict[int, _E], field: str, value: int) -> _E:
    # proto3 enums are open: a client may send any number, which must be a 400, not a KeyError.
    if value not in table:
        raise invalid_field(field, f"unknown value {value}")
    return table[value]


def timeout_action_from_proto(value: int) -> TimeoutAction | None:
    return _known(_TIMEOUT_ACTION_FROM_PROTO, "human_input_timeout_action", value)


def scope_from_proto(value: int) -> KeyScope:
    return _known(_SCOPE_FROM_PROTO, "scope", value)


def chat(c: Chat) -> chat_pb2.Chat:
    out = chat_pb2.Chat(
        id=c.id,
        name=c.name,
        from_type=c.from_type,
        from_flow=c.from_flow,
        status=_STATUS[c.status],
        error=c.error,
        created_at=timestamp(c.created_at),
        updated_at=timestamp(c.updated_at),
        input_prompt=c.input_prompt,
        last_seq=c.last_seq,
        max_agent_turns=c.budget.max_agent_turns,
        human_input_timeout_action=_TIMEOUT_ACTION[c.budget.input_timeout_action],
        pending_tool_calls=tool_calls(c.pending_tool_calls),
        run_usage=usage(c.usage.run),
        usage=usage(c.usage.total),
        max_tokens_per_run=_int32(c.budget.max_tokens_per_run),
    )
    if c.budget.input_timeout_seconds:
        out.human_input_timeout.FromTimedelta(timedelta(seconds=c.budget.input_timeout_seconds))
    if c.run.input_deadline is not None and c.status is ChatStatus.WAITING:
        out.input_deadline.CopyFrom(timestamp(c.run.input_deadline))
    return out


_INT32_MAX = 2**31 - 1


def _int32(count: int) -> int:
    """A count as the API's int32 (plain JSON numbers on REST): a chat's all-time total may pass it."""
    return min(count, _INT32_MAX)


def usage(u: Usage) -> chat_pb2.Usage:
    counts = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }
    return chat_pb2.Usage(**{name: _int32(n) for name, n in counts.items() if n is not None})


def message(m: Message) -> chat_pb2.Message:
    out = chat_pb2.Message(
        id=m.id,
        chat_id=m.chat_id,
        seq=m.seq,
        type=_TYPE[m.type],
        sender=m.sender,
        receiver=m.receiver,
        content=m.content,
        created_at=timestamp(m.created_at),
        tool_calls=tool_calls(m.tool_calls),
        tool_responses=[
            chat_pb2.ToolResult(call_id=r.call_id, content=r.content, is_error=r.is_error) for r in m.tool_responses
        ],
    )
    if m.usage is not None:
        out.usage.CopyFrom(usage(m.usage))
    return out


def tool_calls(calls: Sequence[ToolCall]) -> list[chat_pb2.ToolCall]:
    return [chat_pb2.ToolCall(call_id=c.call_id, name=c.name, arguments=c.arguments) for c in calls]


def tool_results_from_proto(results: Sequence[chat_pb2.ToolResult]) -> list[ToolResult]:
    return [ToolResult(call_id=r.call_id, content=r.content, is_error=r.is_error) for r in results]


def event(e: ChatEvent) -> chat_pb2.ChatEvent:
    out = chat_pb2.ChatEvent(seq=e.seq, chat_id=e.chat_id, time=timestamp(e.time))
    if e.kind is EventKind.MESSAGE and e.message is not None:
        out.message_added.CopyFrom(message(e.message))
    elif e.kind is EventKind.STATUS and e.status is not None:
        out.status_changed.CopyFrom(
            chat_pb2.StatusChanged(
                status=_STATUS[e.status.status],
                error=e.status.error,
                input_prompt=e.status.input_prompt,
                pending_tool_calls=tool_calls(e.status.pending_tool_calls),
            )
        )
    elif e.kind is EventKind.DELETED:
        out.chat_deleted.SetInParent()
    elif e.kind is EventKind.SHUTDOWN:
        out.server_shutdown.SetInParent()
    elif e.kind is EventKind.DELTA and e.delta is not None:
        out.message_delta.CopyFrom(
            chat_pb2.MessageDelta(draft_id=e.delta.draft_id, sender=e.delta.sender, text=e.delta.text)
        )
    else:
        out.keep_alive.SetInParent()
    return out


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A request's Struct as plain Python values, as json_format.MessageToDict gives them (numbers are
    floats) except that NaN and ±Infinity come through as floats instead of raising: the domain refuses
    them with the field they are in (domain.flows.check_finite_numbers). Protobuf's decoder has already
    limited the nesting depth, so recursion is bounded."""
    return {key: _value(value) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    if kind is None or kind == "null_value":
        return None
    return getattr(value, kind)


def flow(f: Flow) -> flow_pb2.Flow:
    graph = struct_pb2.Struct()
    graph.update(public_graph(f.graph))
    out = flow_pb2.Flow(id=f.id, name=f.name, flow=graph, warnings=f.warnings)
    if f.created_at is not None:
        out.created_at.CopyFrom(timestamp(f.created_at))
    return out


_SCOPE = {KeyScope.CHAT: api_key_pb2.ApiKey.SCOPE_CHAT, KeyScope.ADMIN: api_key_pb2.ApiKey.SCOPE_ADMIN}


def api_key(k: ApiKey) -> api_key_pb2.ApiKey:
    out = api_key_pb2.ApiKey(
        id=k.id, name=k.name, owner=k.owner, prefix=k.prefix, scope=_SCOPE[k.scope], created_at=timestamp(k.created_at)
    )
    if k.last_used_at is not None:
        out.last_used_at.CopyFrom(timestamp(k.last_used_at))
    if k.expires_at is not None:
        out.expires_at.CopyFrom(timestamp(k.expires_at))
    return out


def tool(t: Tool) -> tool_pb2.Tool:
    """The tool as clients read it: its secrets (header values, variables) by name only, never their values."""
    out = tool_pb2.Tool(id=t.id, name=t.name, description=t.description)
    out.parameters.update(t.parameters)
    names = sorted(t.secrets)
    if t.kind is ToolKind.HTTP:
        out.http.CopyFrom(tool_pb2.HttpTool(url=t.url, header_names=names))
    elif t.kind is ToolKind.PYTHON:
        out.python.CopyFrom(tool_pb2.PythonTool(code=t.code, variable_names=names))
    else:
        out.client.SetInParent()
    if t.created_at is not None:
        out.created_at.CopyFrom(timestamp(t.created_at))
    if t.updated_at is not None:
        out.updated_at.CopyFrom(timestamp(t.updated_at))
    return out


def tool_draft(message: tool_service_pb2.CreateToolRequest | tool_pb2.Tool) -> ToolDraft:
    """The tool fields of a CreateToolRequest or of UpdateTool's `tool` (the output-only ones ignored)."""
    kind = message.WhichOneof("implementation")
    implementation: Implementation | None = None
    if kind == "http":
        implementation = Implementation(ToolKind.HTTP, url=message.http.url, secrets=dict(message.http.headers))
    elif kind == "python":
        code, variables = message.python.code, dict(message.python.variables)
        implementation = Implementation(ToolKind.PYTHON, code=code, secrets=variables)
    elif kind == "client":
        implementation = Implementation(ToolKind.CLIENT)
    return ToolDraft(
        name=message.name,
        description=message.description,
        parameters=struct_to_dict(message.parameters) if message.HasField("parameters") else None,
        implementation=implementation,
    )
