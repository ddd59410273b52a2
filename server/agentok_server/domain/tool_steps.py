"""How a run's tool steps are written down: the journal values of a model reply that may call tools, and of
tool results (the server's, with the message that carries them; a client's, as SendInput stores them); the
question a chat shows while it waits for a client's results, and which results a client may send.

A journal value is JSON text with short keys: the journal is read back only by this module, and a long run
holds thousands of entries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..engine.tool_calls import ModelReply
from .errors import invalid_field
from .model import ToolCall, ToolResult
from .text import check_text, storable

PROPOSE = "llm_tools"  # a model reply to a request that offered tools
SERVER_RESULTS = "tool"  # results of the server-run calls of one message
CLIENT_RESULTS = "tool_results"  # results a client sent (SendInput), any subset of the pending calls


def encode_reply(reply: ModelReply) -> str:
    calls = [[c.call_id, c.name, c.arguments] for c in reply.tool_calls]
    return json.dumps({"c": reply.content, "t": calls}, ensure_ascii=False)


def decode_reply(value: str | None) -> ModelReply:
    data = json.loads(value or "{}")
    return ModelReply(data.get("c", ""), tuple(ToolCall(*call) for call in data.get("t", [])))


def encode_results(results: Sequence[ToolResult]) -> str:
    return json.dumps([[r.call_id, r.content, r.is_error] for r in results], ensure_ascii=False)


def decode_results(value: str | None) -> list[ToolResult]:
    return [ToolResult(call_id, content, bool(is_error)) for call_id, content, is_error in json.loads(value or "[]")]


def storable_reply(reply: ModelReply) -> ModelReply:
    """A model's reply as it is stored (and journaled, so a replay feeds the engine what the live run saw)."""
    calls = tuple(ToolCall(storable(c.call_id), storable(c.name), storable(c.arguments)) for c in reply.tool_calls)
    return ModelReply(storable(reply.content), calls)


def storable_results(results: Sequence[ToolResult]) -> list[ToolResult]:
    return [ToolResult(r.call_id, storable(r.content), r.is_error) for r in results]


def waiting_prompt(calls: Sequence[ToolCall]) -> str:
    """The chat's input_prompt while it waits for a client's results: derived from the calls alone, so that a
    run rebuilt while waiting recognizes the question it had asked."""
    names = ", ".join(f"{c.name} ({c.call_id})" for c in calls)
    return f"Waiting for the results of {len(calls)} client tool call(s): {names}. Answer with tool_results."


def answer_pending(pending: Sequence[ToolCall], results: Sequence[ToolResult]) -> tuple[ToolCall, ...]:
    """Checks a client's results against the calls its chat waits for; returns the calls still open after
    them. A result for a call that is not pending (unknown, or answered already) is the client's mistake:
    INVALID_ARGUMENT naming it, and nothing is stored."""
    open_ids = {c.call_id for c in pending}
    seen: set[str] = set()
    for i, result in enumerate(results):
        field = f"tool_results[{i}]"
        if not result.call_id:
            raise invalid_field(f"{field}.call_id", "is required")
        if result.call_id in seen:
            raise invalid_field(f"{field}.call_id", f"answers call {result.call_id!r} a second time")
        if result.call_id not in open_ids:
            raise invalid_field(
                f"{field}.call_id",
                f"the chat has no pending tool call {result.call_id!r} (unknown, or answered already)",
                reason="TOOL_CALL_NOT_PENDING",
            )
        check_text(f"{field}.content", result.content)
        seen.add(result.call_id)
    return tuple(c for c in pending if c.call_id not in seen)
