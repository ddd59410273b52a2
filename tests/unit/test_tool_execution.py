"""ToolExecutor (engine/tool_execution.py): a call's arguments read as AutoGen reads them, then dispatched to the
real http caller (a local tool server, listed in the egress allow-list) or the real python runner (subprocess)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentok_server.domain.model import Tool, ToolCall, ToolKind, ToolResult
from agentok_server.engine.egress import EgressPolicy
from agentok_server.engine.http_tool import HttpToolCaller
from agentok_server.engine.python_tool import PythonToolRunner
from agentok_server.engine.tool_execution import PYTHON_DISABLED, ArgumentsError, ToolExecutor, parse_arguments

from .test_http_tool import ToolServer, serving
from .test_python_tool import CALCULATOR

NOT_JSON = " The argument must be in JSON format."


def tool(kind: ToolKind, **fields: object) -> Tool:
    return Tool(
        id="t1",
        owner="o",
        name="calculator",
        description="",
        parameters={},
        kind=kind,
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
async def server() -> AsyncIterator[ToolServer]:
    async with serving() as tool_server:
        yield tool_server


@pytest.fixture
async def executor(server: ToolServer) -> AsyncIterator[ToolExecutor]:
    made = ToolExecutor(
        HttpToolCaller(EgressPolicy(f"127.0.0.1:{server.port}"), timeout=10, response_limit=10_000),
        PythonToolRunner(timeout_seconds=20, output_limit=10_000),
        python_enabled=True,
    )
    yield made
    await made.aclose()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{a:2}", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ('{"a": 1', "Expecting ',' delimiter: line 1 column 8 (char 7)"),
    ],
)
def test_arguments_that_are_not_json_get_autogens_text(text: str, error: str) -> None:
    with pytest.raises(ArgumentsError) as info:
        parse_arguments(text)
    assert str(info.value) == f"Error: {error}\n{NOT_JSON}"


def test_arguments_are_formatted_as_autogen_formats_them_first() -> None:
    # Newlines outside strings are dropped, raw newlines and tabs inside strings escaped.
    assert parse_arguments('{\n"q": "one\ntwo\tthree",\n "n": 2\n}') == {"q": "one\ntwo\tthree", "n": 2}
    assert parse_arguments('{"q": "say \\"hi\\"\nthen"}') == {"q": 'say "hi"\nthen'}
    assert parse_arguments("[1, 2]") == [1, 2]  # JSON, if not an object: the executor refuses it


async def test_a_python_call_runs_the_code_with_the_secrets_as_variables(executor: ToolExecutor) -> None:
    calc = tool(ToolKind.PYTHON, code=CALCULATOR)
    assert await executor.run(calc, ToolCall("c1", "calculator", '{"a": 2,\n "b": 3, "operator": "*"}'), "chat") == (
        ToolResult("c1", "6")
    )
    secret = tool(ToolKind.PYTHON, code="def f() -> str:\n    return {{KEY}}\n", secrets={"KEY": "k-1"})
    assert await executor.run(secret, ToolCall("c2", "f", "{}"), "chat") == ToolResult("c2", "k-1")


async def test_an_http_call_posts_to_the_url_with_the_secrets_as_headers(
    executor: ToolExecutor,
    server: ToolServer,
) -> None:
    search = tool(ToolKind.HTTP, url=f"{server.base}/ok", secrets={"Authorization": "Bearer k-2"})
    result = await executor.run(search, ToolCall("c3", "search", '{"query": "Vancouver"}'), "chat_9")
    assert result == ToolResult("c3", '{"query": "Vancouver"}')
    (request,) = server.requests
    assert request.json() == {"arguments": {"query": "Vancouver"}, "call_id": "c3", "chat_id": "chat_9"}
    assert request.headers["authorization"] == "Bearer k-2" and request.headers["idempotency-key"] == "c3"


async def test_bad_arguments_are_error_results_and_nothing_is_called(
    executor: ToolExecutor,
    server: ToolServer,
) -> None:
    search = tool(ToolKind.HTTP, url=f"{server.base}/ok")
    assert await executor.run(search, ToolCall("c4", "search", "{a:2}"), "chat") == ToolResult(
        "c4", f"Error: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n{NOT_JSON}", True
    )
    assert await executor.run(search, ToolCall("c5", "search", "[1]"), "chat") == ToolResult(
        "c5", "Error: the arguments must be a JSON object, not an array", True
    )
    assert server.connections == 0


async def test_python_tools_are_refused_where_code_execution_is_off(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"def f() -> str:\n    open({str(marker)!r}, 'w').close()\n    return 'ran'\n"
    off = ToolExecutor(
        HttpToolCaller(EgressPolicy(""), timeout=1, response_limit=10),
        PythonToolRunner(timeout_seconds=20, output_limit=10_000),
        python_enabled=False,
    )
    try:
        result = await off.run(tool(ToolKind.PYTHON, code=code), ToolCall("c6", "f", "{}"), "chat")
    finally:
        await off.aclose()
    assert result == ToolResult("c6", PYTHON_DISABLED, is_error=True)
    assert PYTHON_DISABLED == "Error: python tools run only on servers with AGENTOK_CODE_EXECUTION_ENABLED=true"
    assert not _exists(marker)


async def test_client_tools_are_never_run_by_the_server(executor: ToolExecutor) -> None:
    with pytest.raises(ValueError, match="client tool"):
        await executor.run(tool(ToolKind.CLIENT), ToolCall("c7", "f", json.dumps({})), "chat")


def _exists(path: Path) -> bool:
    return path.exists()


async def test_no_more_calls_run_at_once_than_the_executor_allows(server: ToolServer) -> None:
    """Two calls of a stalled tool with one slot: the second request is not sent until the first ends. A probe
    on an executor of its own, started after the second call, reaches the server first: the second waits."""

    def executor_with(slots: int) -> ToolExecutor:
        return ToolExecutor(
            HttpToolCaller(EgressPolicy(f"127.0.0.1:{server.port}"), timeout=10, response_limit=10_000),
            PythonToolRunner(timeout_seconds=20, output_limit=10_000),
            python_enabled=True,
            concurrency=slots,
        )

    one_slot, other = executor_with(1), executor_with(1)
    stalled = tool(ToolKind.HTTP, url=f"{server.base}/stall")
    first = asyncio.create_task(one_slot.run(stalled, ToolCall("c1", "calculator", "{}"), "chat"))
    await server.arrived.wait()
    second = asyncio.create_task(one_slot.run(stalled, ToolCall("c2", "calculator", "{}"), "chat"))
    probe = asyncio.create_task(other.run(stalled, ToolCall("probe", "calculator", "{}"), "chat"))
    while True:
        server.arrived.clear()  # cleared before the check, with no await between: no arrival is missed
        if len(server.requests) >= 2:
            break
        await server.arrived.wait()
    assert [r.headers["idempotency-key"] for r in server.requests] == ["c1", "probe"]
    server.release.set()
    await asyncio.gather(first, second, probe)
    assert [r.headers["idempotency-key"] for r in server.requests][2:] == ["c2"]
    await one_slot.aclose()
    await other.aclose()
