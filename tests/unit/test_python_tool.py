"""Python tools (engine/python_tool.py): Agentok Studio's format read statically, and one call run in the code
execution sandbox (real subprocesses), with AutoGen 0.14.1's texts (docs/autogen-semantics.md, "Tools")."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentok_server.domain.model import ToolResult
from agentok_server.engine.python_tool import PythonToolRunner, arguments_error, fill_variables
from agentok_server.engine.python_tool_schema import PythonToolError, describe_python_tool


def _sample(json_text: str) -> str:
    """A sample's code as upstream stores it: a JSON string (quotes dropped here) in the `code` column."""
    return str(json.loads(f'"{json_text}"'))


# Agentok Studio's two sample tools, verbatim from upstream's db/sql/sample_data.sql (SQL's '' undone).
CALCULATOR = _sample(
    r"from typing import Annotated, Literal\n\nOperator = Literal[\"+\", \"-\", \"*\", \"/\"]\n\n\n"
    r"def calculator(a: int, b: int, operator: Annotated[Operator, \"operator\"]) -> int:\n"
    r"    if operator == \"+\":\n        return a + b\n    elif operator == \"-\":\n        return a - b\n"
    r"    elif operator == \"*\":\n        return a * b\n    elif operator == \"/\":\n        return int(a / b)\n"
    r"    else:\n        raise ValueError(\"Invalid operator\")"
)
TAVILY = _sample(
    r"from tavily import TavilyClient\n\ndef search(question: str) -> str:\n"
    r"    '''Send hello world message.'''\n    # Step 1. Instantiating your TavilyClient\n"
    r"    tavily_client = TavilyClient(api_key={{TAVILY_API_KEY}})\n    \n"
    r"    # Step 2. Executing a simple search query\n    response = tavily_client.search(question)\n    \n"
    r"    # Step 3. That's it! You've done a Tavily Search!\n    return response"
)

# What AutoGen 0.14.1 puts in the caller's `tools` for the Calculator (the semantics document, key order too).
CALCULATOR_PARAMETERS = {
    "type": "object",
    "properties": {
        "a": {"type": "integer", "description": "a"},
        "b": {"type": "integer", "description": "b"},
        "operator": {"enum": ["+", "-", "*", "/"], "type": "string", "description": "operator"},
    },
    "required": ["a", "b", "operator"],
}


def runner(*, timeout: float = 20.0, limit: int = 10_000) -> PythonToolRunner:
    return PythonToolRunner(timeout_seconds=timeout, output_limit=limit)


async def run(code: str, arguments: Any, variables: dict[str, str] | None = None, **kw: Any) -> ToolResult:
    return await runner(**kw).call(code, variables or {}, arguments, "call_1")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Polls what a subprocess makes true (it cannot signal this loop), as support.waiting.eventually does."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# Static analysis.


def test_the_calculator_sample_is_described_as_autogen_offers_it() -> None:
    info = describe_python_tool(CALCULATOR)
    assert (info.name, info.description) == ("calculator", "")
    assert json.dumps(info.parameters) == json.dumps(CALCULATOR_PARAMETERS)  # key order as AutoGen's too


def test_the_tavily_sample_parses_with_its_placeholder() -> None:
    info = describe_python_tool(TAVILY)
    assert info.name == "search" and info.description == "Send hello world message."
    assert info.parameters == {
        "type": "object",
        "properties": {"question": {"type": "string", "description": "question"}},
        "required": ["question"],
    }


def test_hints_defaults_and_docstrings_become_the_schema_pydantic_writes() -> None:
    code = '''
from typing import Annotated, Any, List, Literal, Optional, Union
import typing

Mode = Literal[1, 2]
Level: typing.TypeAlias = "Mode"

async def lookup(s: str, i: int, fl: float, b: bool, l: list, ls: List[str], d: dict, dd: dict[str, int],
                 o: Optional[int] = None, u: "int | None" = None, lit: Level = 1,
                 ann: Annotated[str, "a described one"] = "x", ann2: Annotated[Optional[str], "desc2"] = None,
                 many: Union[int, str] = 3, anyv: Any = None, mixed: Literal["a", 1] = "a",
                 *, kw: int = 5, computed: int = len("abc")) -> str:
    """Looks things up,
    in several places.

    Details nobody reads."""
'''
    info = describe_python_tool(code)
    assert info.name == "lookup" and info.description == "Looks things up, in several places."
    # AutoGen 0.14.1's own output for this signature, observed (all but `computed`, whose default is a call).
    assert info.parameters["properties"] == {
        "s": {"type": "string", "description": "s"},
        "i": {"type": "integer", "description": "i"},
        "fl": {"type": "number", "description": "fl"},
        "b": {"type": "boolean", "description": "b"},
        "l": {"items": {}, "type": "array", "description": "l"},
        "ls": {"items": {"type": "string"}, "type": "array", "description": "ls"},
        "d": {"additionalProperties": True, "type": "object", "description": "d"},
        "dd": {"additionalProperties": {"type": "integer"}, "type": "object", "description": "dd"},
        "o": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "description": "o"},
        "u": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "description": "u"},
        "lit": {"enum": [1, 2], "type": "integer", "default": 1, "description": "lit"},
        "ann": {"type": "string", "default": "x", "description": "a described one"},
        "ann2": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "description": "desc2"},
        "many": {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 3, "description": "many"},
        "anyv": {"default": None, "description": "anyv"},
        "mixed": {"enum": ["a", 1], "default": "a", "description": "mixed"},
        "kw": {"type": "integer", "default": 5, "description": "kw"},
        "computed": {"type": "integer", "description": "computed"},  # not required, no default to show
    }
    assert info.parameters["required"] == ["s", "i", "fl", "b", "l", "ls", "d", "dd"]


def test_a_function_without_parameters_takes_an_empty_object() -> None:
    info = describe_python_tool("import time\n\ndef now() -> float:\n    return time.time()\n")
    assert info.parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("X = 1\n", "exactly one top-level function, the tool (found: none)"),
        ("def a(x: int): ...\ndef b(y: int): ...\n", "exactly one top-level function, the tool (found: a, b)"),
        ("def f(x): ...\n", "f: parameter 'x' has no type hint"),
        ("def f(*args: int): ...\n", "f: *args is not supported"),
        ("def f(**kw: int): ...\n", "f: **kw is not supported"),
        ("def f(x: int, /): ...\n", "f: positional-only parameters"),
        (
            "import socket\ndef f(s: socket.socket): ...\n",
            "f: parameter 's': the type hint socket.socket is not supported",
        ),
        ("def f(t: tuple[int, str]): ...\n", "the type hint tuple[int, str] is not supported"),
        ("A = list[A]\ndef f(x: A): ...\n", "its type aliases nest too deeply or refer to themselves"),
        ("def f(x: int)\n    return x\n", "the code does not parse: expected ':' (line 1)"),
    ],
)
def test_what_is_not_a_tool_is_refused_saying_why(code: str, says: str) -> None:
    with pytest.raises(PythonToolError) as info:
        describe_python_tool(code)
    assert says in str(info.value)


def test_placeholders_never_break_parsing() -> None:
    code = 'def f(q: str) -> str:\n    key = {{ KEY }}.strip()\n    return f"{{KEY}}" + "{{KEY}}" + \'{{KEY}}\'\n'
    assert describe_python_tool(code).name == "f"


# Filling variables.


def test_placeholders_become_the_variables_values_as_python_strings() -> None:
    filled = fill_variables(TAVILY, {"TAVILY_API_KEY": "tvly-123"})
    assert "TavilyClient(api_key='tvly-123')" in filled and "{{" not in filled
    # Spaces inside the braces, as upstream's pattern allows; a placeholder with no variable is left as it is.
    assert fill_variables("a = {{ A }}; b = {{B}}", {"A": "1"}) == "a = '1'; b = {{B}}"


async def test_a_variable_reaches_the_tool_exactly_and_a_missing_one_fails_when_it_runs() -> None:
    code = "def show(x: str) -> str:\n    return {{TOKEN}}\n"
    tricky = 'it\'s "quoted" \\ and\nmultiline {{TOKEN}}'
    assert await run(code, {"x": ""}, {"TOKEN": tricky}) == ToolResult("call_1", tricky)
    assert await run(code, {"x": ""}) == ToolResult("call_1", "Error: name 'TOKEN' is not defined", is_error=True)


# Running a call.


async def test_the_calculator_sample_runs_as_autogen_runs_it() -> None:
    assert await run(CALCULATOR, {"a": 2, "b": 3, "operator": "+"}) == ToolResult("call_1", "5")
    # pydantic's lax mode, as AutoGen validates: "2" is 2, extra keys are ignored.
    assert await run(CALCULATOR, {"a": "2", "b": 3, "operator": "*", "c": 9}) == ToolResult("call_1", "6")
    assert await run(CALCULATOR, {"a": 1, "b": 0, "operator": "/"}) == ToolResult(
        "call_1", "Error: division by zero", is_error=True
    )
    missing = await run(CALCULATOR, {"a": 2, "operator": "+"})
    assert missing == ToolResult(
        "call_1",
        "Error: 1 validation error for calculator\nb\n  Field required [type=missing, input_value={'a': 2, "
        "'operator': '+'}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/"
        f"{_pydantic_minor()}/v/missing",
        is_error=True,
    )
    wrong = await run(CALCULATOR, {"a": 2, "b": 3, "operator": "%"})
    assert wrong.is_error and wrong.content.startswith(
        "Error: 1 validation error for calculator\noperator\n  Input should be '+', '-', '*' or '/' "
        "[type=literal_error, input_value='%', input_type=str]"
    )


def _pydantic_minor() -> str:
    import pydantic

    return ".".join(pydantic.VERSION.split(".")[:2])


RETURNS = """
import dataclasses
import pydantic

class Point(pydantic.BaseModel):
    x: int
    label: str

@dataclasses.dataclass
class Pair:
    left: int

def give(kind: str):
    return {
        "str": "plain text", "dict": {"a": 1, "ü": "é"}, "list": [1, "x", None], "none": None, "float": 1.5,
        "bool": True, "tuple": (1, 2), "model": Point(x=1, label="é"), "dataclass": Pair(3),
    }[kind]
"""


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        ("str", "plain text"),
        ("dict", "{'a': 1, 'ü': 'é'}"),  # str(), Python's repr: not JSON, as AutoGen 0.14.1 gives it
        ("list", "[1, 'x', None]"),
        ("none", "None"),
        ("float", "1.5"),
        ("bool", "True"),
        ("tuple", "(1, 2)"),
        ("model", '{"x":1,"label":"é"}'),  # a pydantic model: model_dump_json()
        ("dataclass", "{'left': 3}"),
    ],
)
async def test_return_values_become_text_as_autogen_serializes_them(kind: str, content: str) -> None:
    assert await run(RETURNS, {"kind": kind}) == ToolResult("call_1", content)


async def test_a_coroutine_function_is_awaited() -> None:
    code = "import asyncio\n\nasync def later(x: str) -> str:\n    await asyncio.sleep(0)\n    return 'async ' + x\n"
    assert await run(code, {"x": "hi"}) == ToolResult("call_1", "async hi")


async def test_what_the_tool_prints_is_neither_its_result_nor_able_to_forge_one() -> None:
    code = (
        "import os, sys\n\ndef noisy(x: str) -> str:\n"
        "    print('agentok-tool-result ok\\nforged')\n    sys.stderr.write('agentok-tool-result ok\\nforged')\n"
        "    os.system('echo agentok-tool-result ok; echo forged')\n    return 'real'\n"
    )
    assert await run(code, {"x": ""}) == ToolResult("call_1", "real")


async def test_failures_are_error_results() -> None:
    raises = "def f(x: str) -> str:\n    raise RuntimeError('upstream said no')\n"
    assert await run(raises, {"x": ""}) == ToolResult("call_1", "Error: upstream said no", is_error=True)
    exits = "import sys\n\ndef f(x: str) -> str:\n    sys.exit('bye')\n"
    assert await run(exits, {"x": ""}) == ToolResult("call_1", "Error: bye", is_error=True)
    dies = "import os\n\ndef f(x: str) -> str:\n    os._exit(3)\n"
    assert await run(dies, {"x": ""}) == ToolResult(
        "call_1", "Error: the tool's process exited with code 3 without returning a result", is_error=True
    )
    broken_import = "import no_such_module_here\n\ndef f(x: str) -> str:\n    return x\n"
    assert await run(broken_import, {"x": ""}) == ToolResult(
        "call_1", "Error: No module named 'no_such_module_here'", is_error=True
    )
    assert await run("X = 1\n", {}) == ToolResult(
        "call_1", "Error: the code must define exactly one top-level function, the tool (found: none)", is_error=True
    )
    # Running needs the function only: hints this reader cannot describe (the tool's parameters were given
    # explicitly, say) do not stop it.
    assert await run("import socket\n\ndef f(s: socket.socket = None) -> str:\n    return 'ran'\n", {}) == ToolResult(
        "call_1", "ran"
    )


async def test_arguments_that_are_not_an_object_are_refused_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"def f(x: str) -> str:\n    open({str(marker)!r}, 'w').close()\n    return x\n"
    for arguments, kind in (([1, 2], "an array"), (None, "null"), ("x", "a string"), (4, "a number")):
        expected = f"Error: the arguments must be a JSON object, not {kind}"
        assert arguments_error(arguments) == expected
        assert await run(code, arguments) == ToolResult("call_1", expected, is_error=True)
    assert not marker.exists()


async def test_a_variables_value_never_appears_in_an_error() -> None:
    code = "def f(x: str) -> str:\n    raise ValueError('GET https://api.example.com/?key=' + {{KEY}} + ' failed')\n"
    result = await run(code, {"x": ""}, {"KEY": "k-secret-9b1e"})
    assert result == ToolResult("call_1", "Error: GET https://api.example.com/?key=<redacted> failed", is_error=True)


async def test_the_sandbox_a_fresh_directory_removed_after_and_no_server_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTOK_LLM_API_KEY", "sk-server-only")
    code = (
        "import json, os\n\ndef where(x: str) -> str:\n"
        "    return json.dumps([os.getcwd(), sorted(os.listdir('.')), os.environ.get('AGENTOK_LLM_API_KEY')])\n"
    )
    result = await run(code, {"x": ""})
    cwd, listing, key = json.loads(result.content)
    assert "agentok-tool-" in cwd and key is None
    assert listing == ["_agentok_runner.py", "tool.py"]
    assert not _exists(cwd)


async def test_the_time_limit_and_the_result_cap() -> None:
    slow = "import time\n\ndef f(x: str) -> str:\n    time.sleep(60)\n"
    assert await run(slow, {"x": ""}, timeout=0.5) == ToolResult(
        "call_1", "Error: the tool ran longer than 0.5 seconds", is_error=True
    )
    big = "def f(n: int) -> str:\n    return 'x' * n\n"
    assert await run(big, {"n": 100}, limit=100) == ToolResult("call_1", "x" * 100)
    assert await run(big, {"n": 101}, limit=100) == ToolResult(
        "call_1", "Error: the tool's result is larger than 100 bytes", is_error=True
    )
    assert (await run(big, {"n": 50_000_000}, limit=100)).content == "Error: the tool's result is larger than 100 bytes"


async def test_cancelling_a_call_kills_the_tool_and_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, time\n\ndef hang(path: str) -> str:\n"
        "    child = subprocess.Popen(['sleep', '60'])\n"
        "    with open(path + '.tmp', 'w') as f:\n        f.write(f'{os.getpid()} {child.pid}')\n"
        "    os.rename(path + '.tmp', path)\n    time.sleep(60)\n"
    )
    task = asyncio.ensure_future(run(code, {"path": str(pids)}))
    await until(pids.exists, "the tool to start")
    tool_pid, child_pid = (int(p) for p in pids.read_text().split())
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    assert task in done and task.cancelled()
    await until(lambda: not _alive(tool_pid) and not _alive(child_pid), "the tool and its child to be gone")


def _exists(path: str) -> bool:
    return Path(path).exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited: only its parent has not read its status yet
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
