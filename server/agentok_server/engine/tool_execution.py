"""Running one call of a server-run tool: the arguments read as AutoGen reads them, then the http or python runner.

A call whose arguments are not JSON gets AutoGen's error text (docs/autogen-semantics.md, "Tools"); JSON that is
not an object, which crashes an AutoGen chat, gets an error result saying so. Every failure is an error result
the model reads, never an exception (ports.ToolRunner).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..domain.model import Tool, ToolCall, ToolKind, ToolResult
from .http_tool import HttpToolCaller
from .python_tool import PythonToolRunner, arguments_error

PYTHON_DISABLED = "Error: python tools run only on servers with AGENTOK_CODE_EXECUTION_ENABLED=true"


class ArgumentsError(Exception):
    """The call's arguments are not JSON; the message is AutoGen's text for the model."""


def parse_arguments(text: str) -> Any:
    """The arguments as AutoGen's execute_function reads them: newlines outside strings dropped, raw newlines
    and tabs inside strings escaped, then json.loads. Raises ArgumentsError with AutoGen's text."""
    try:
        return json.loads(_autogen_formatted(text))
    except json.JSONDecodeError as exc:
        raise ArgumentsError(f"Error: {exc}\n The argument must be in JSON format.") from None


def _autogen_formatted(text: str) -> str:
    """AutoGen's ConversableAgent._format_json_str: a quote not preceded by a backslash toggles "inside a
    string" (so an escaped backslash before a closing quote confuses it, as it confuses AutoGen)."""
    out: list[str] = []
    inside = False
    previous = " "
    for char in text:
        if char == '"' and previous != "\\":
            inside = not inside
        previous = char
        if char == "\n":
            if inside:
                out.append("\\n")
            continue
        out.append("\\t" if inside and char == "\t" else char)
    return "".join(out)


class ToolExecutor:
    """Runs the calls of http and python tools (ports.ToolRunner); client tools are the caller's backend's."""

    def __init__(
        self, http: HttpToolCaller, python: PythonToolRunner, *, python_enabled: bool, concurrency: int = 8
    ) -> None:
        """`concurrency`: the most calls running at once (requests, subprocesses), across every run: a
        tenant's model that calls many tools in parallel, in many chats, waits for a slot instead of spawning
        without bound."""
        self._http = http
        self._python = python
        self._python_enabled = python_enabled
        self._slots = asyncio.Semaphore(concurrency)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(self, tool: Tool, call: ToolCall, chat_id: str) -> ToolResult:
        if tool.kind is ToolKind.CLIENT:
            raise ValueError(f"tool {tool.id} is a client tool: the caller's backend runs it, not the server")
        if tool.kind is ToolKind.PYTHON and not self._python_enabled:
            return ToolResult(call.call_id, PYTHON_DISABLED, is_error=True)
        try:
            arguments = parse_arguments(call.arguments)
        except ArgumentsError as exc:
            return ToolResult(call.call_id, str(exc), is_error=True)
        refused = arguments_error(arguments)
        if refused is not None:
            return ToolResult(call.call_id, refused, is_error=True)
        async with self._slots:
            if tool.kind is ToolKind.HTTP:
                return await self._http.call(tool.url, tool.secrets, arguments, call.call_id, chat_id)
            return await self._python.call(tool.code, tool.secrets, arguments, call.call_id)
