"""Running one call of a python tool (Agentok Studio's format; python_tool_schema.py reads one) in the code
execution sandbox (code_execution.run_sandboxed: subprocess, fresh scratch directory, minimal environment, time
limit, output cap), as AutoGen 0.14.1 runs a registered function (docs/autogen-semantics.md, "Tools"): the
tool's `{{NAME}}` placeholders filled from its variables, arguments validated and coerced by a pydantic model
named after the function, a coroutine function awaited, the return value turned into text as AutoGen does,
any exception the model's `Error: <exception>`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

from ..domain.model import ToolResult
from .code_execution import run_sandboxed, scratch_directory
from .python_tool_schema import PLACEHOLDER, PythonToolError, tool_function_name


def fill_variables(code: str, variables: Mapping[str, str]) -> str:
    """The code with each `{{NAME}}` replaced by the variable's value as a Python string literal: upstream
    replaces it with `env_<id>['NAME']`, an expression whose value is the variable's text, so a placeholder is
    an expression (`TavilyClient(api_key={{TAVILY_API_KEY}})`), not text inside a string. A placeholder with no
    variable is left as it is, as upstream leaves it to fail when that line runs (upstream: KeyError; here the
    name is undefined: `Error: name 'TAVILY_API_KEY' is not defined`)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return repr(variables[name]) if name in variables else match.group(0)

    return PLACEHOLDER.sub(value, code)


def arguments_error(arguments: Any) -> str | None:
    """The error result's text when `arguments` (parsed JSON) cannot be a call's keyword arguments. AutoGen
    crashes the chat on those (docs/autogen-semantics.md); the service tells the model instead."""
    if isinstance(arguments, dict):
        return None
    return f"Error: the arguments must be a JSON object, not {_json_kind(arguments)}"


class PythonToolRunner:
    """Runs one call of a python tool in the code execution sandbox."""

    def __init__(self, *, timeout_seconds: float, output_limit: int) -> None:
        self._timeout = timeout_seconds
        self._limit = output_limit

    async def call(self, code: str, variables: Mapping[str, str], arguments: Any, call_id: str) -> ToolResult:
        """The call's result as the model sees it; every failure is an error result (is_error), never an
        exception (cancellation aside: it kills the process and propagates). Error texts never quote a
        variable's value."""
        refused = arguments_error(arguments)
        if refused is not None:
            return ToolResult(call_id, refused, is_error=True)
        try:
            name = tool_function_name(code)
        except PythonToolError as exc:
            return ToolResult(call_id, f"Error: {exc}", is_error=True)
        with scratch_directory("agentok-tool-") as scratch:
            (scratch / _MODULE_FILE).write_text(fill_variables(code, variables), encoding="utf-8")
            (scratch / _RUNNER_FILE).write_text(_RUNNER, encoding="utf-8")
            done = await run_sandboxed(
                [sys.executable, "-I", "-B", _RUNNER_FILE, name],  # -B: no __pycache__ beside the tool
                scratch,
                time_limit=self._timeout,
                # The frame's header comes on top of the result the cap is for.
                output_limit=self._limit + len(_FRAME_ERROR),
                stdin=json.dumps(arguments).encode(),
            )
        if done.timed_out:
            return ToolResult(call_id, f"Error: the tool ran longer than {self._timeout:g} seconds", is_error=True)
        if done.output.startswith(_FRAME_OK):
            ok, body = True, done.output[len(_FRAME_OK) :]
        elif done.output.startswith(_FRAME_ERROR):
            ok, body = False, done.output[len(_FRAME_ERROR) :]
        else:
            # Killed, or it ended the process itself (os._exit, a crash) before the runner could answer.
            why = f"exited with code {done.exitcode}" if done.exitcode else "ended"
            return ToolResult(call_id, f"Error: the tool's process {why} without returning a result", True)
        if done.truncated or len(body) > self._limit:
            return ToolResult(call_id, f"Error: the tool's result is larger than {self._limit} bytes", True)
        content = body.decode(errors="replace")
        return ToolResult(call_id, content if ok else _redacted(content, variables), is_error=not ok)


def _redacted(text: str, variables: Mapping[str, str]) -> str:
    """`text` without the variables' values (an exception may quote a URL with its key, say). Values shorter than
    4 characters are no credential and would garble the text: they stay."""
    for value in sorted(variables.values(), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "<redacted>")
    return text


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# The sandboxed half: the files written into the scratch directory and the frame the runner answers in.

_MODULE_FILE: Final = "tool.py"
_RUNNER_FILE: Final = "_agentok_runner.py"
_FRAME_OK: Final = b"agentok-tool-result ok\n"
_FRAME_ERROR: Final = b"agentok-tool-result error\n"

# Runs in the sandbox's interpreter (the server's, `python -I`): standard library, and pydantic when it is there
# (the server's environment has it), as AutoGen validates arguments with it. Stdout and stderr are pointed at
# /dev/null before the tool is imported, so nothing the tool prints (or its children print) can pass for the
# result, which goes to a private copy of the original stdout. AutoGen shows the model no printed output either.
_RUNNER_SOURCE: Final = r'''
import asyncio, importlib.util, inspect, json, os, sys, typing

result_out = os.fdopen(os.dup(1), "wb")  # os.dup: not inherited by anything the tool starts
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 1)
os.dup2(devnull, 2)


def validated(func, arguments):
    """As AutoGen's fast_depends does: a pydantic model named after the function, lax mode, extra keys ignored."""
    try:
        import pydantic
    except ImportError:
        return arguments
    hints = typing.get_type_hints(func, include_extras=True)
    fields = {}
    for name, param in inspect.signature(func).parameters.items():
        default = ... if param.default is param.empty else param.default
        fields[name] = (hints.get(name, typing.Any), default)
    try:
        model = pydantic.create_model(
            func.__name__, __config__=pydantic.ConfigDict(arbitrary_types_allowed=True), **fields
        )
    except Exception:
        return arguments  # hints pydantic cannot model: called as given
    checked = model(**arguments)
    return {name: getattr(checked, name) for name in fields}


def as_text(value):
    """AutoGen 0.14.1's serialize_to_str."""
    if isinstance(value, str):
        return value
    try:
        import pydantic
    except ImportError:
        return str(value)
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()

    class _SerializableResult(pydantic.BaseModel):
        result: typing.Any

    try:
        return str(_SerializableResult(result=value).model_dump()["result"])
    except Exception:
        pass
    try:
        return json.dumps(value, ensure_ascii=False)
    except Exception:
        return str(value)


async def awaited(awaitable):
    return await awaitable


def run(name):
    try:
        arguments = json.loads(sys.stdin.buffer.read())
        spec = importlib.util.spec_from_file_location("agentok_tool", "tool.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["agentok_tool"] = module
        spec.loader.exec_module(module)
        func = getattr(module, name)
        result = func(**validated(func, arguments))
        if inspect.isawaitable(result):
            result = asyncio.run(awaited(result))
        return True, as_text(result)
    except BaseException as exc:  # SystemExit too: the tool's failure is the model's to read
        return False, f"Error: {exc}"


ok, text = run(sys.argv[1])
result_out.write(FRAME_OK if ok else FRAME_ERROR)
result_out.write(text.encode("utf-8", "replace"))
result_out.flush()
'''
_RUNNER: Final = _RUNNER_SOURCE.replace("FRAME_OK", repr(_FRAME_OK)).replace("FRAME_ERROR", repr(_FRAME_ERROR))
