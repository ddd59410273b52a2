"""Python tools in Agentok Studio's own format: a module whose one top-level function is the tool, with type hints
on its parameters and a docstring (imports, constants and type aliases beside it, as in upstream's Calculator
sample), whose `{{NAME}}` placeholders the tool's variables fill.

Two halves. `describe_python_tool` reads the module statically (ast; the server never executes a tenant's code
in its own process) for the function the model is offered: its name, its docstring's first paragraph, and a JSON
Schema of its parameters as AutoGen writes one for a registered function (pydantic's schema of each hint, the
parameter's name as its description unless `Annotated[T, "text"]` gives one, defaults not required).
`PythonToolRunner` runs one call in the code execution sandbox (code_execution.run_sandboxed: subprocess, fresh
scratch directory, minimal environment, time limit, output cap), as AutoGen 0.14.1 runs a registered function
(docs/autogen-semantics.md, "Tools"): arguments validated and coerced by a pydantic model named after the
function, a coroutine function awaited, the return value turned into text as AutoGen does, any exception the
model's `Error: <exception>`.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..domain.model import ToolResult
from .code_execution import run_sandboxed, scratch_directory

# Upstream's placeholder (codegen.replace_env_placeholders: `{{ NAME }}`, spaces allowed), for the names a
# variable may have (domain/tools.py VARIABLE).
PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# What a placeholder reads as while the module is only parsed: a bare name is an expression wherever upstream's
# `env_<id>['NAME']` is one (`api_key={{KEY}}`, `{{KEY}}.strip()`), and plain text inside a string literal.
_PARSE_STAND_IN: Final = "None"

_SCALARS: Final = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_LITERAL_TYPES: Final[dict[type, str]] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_MAX_ALIAS_EXPANSIONS: Final = 100
_SUPPORTED: Final = "str, int, float, bool, list, list[X], dict, dict[str, X], Any, Literal, Optional or Annotated"


class PythonToolError(Exception):
    """The code is not a python tool the server can describe or run; the message says why, for the tenant."""


@dataclass(frozen=True)
class PythonToolInfo:
    """The function a python tool offers the model: what CreateTool takes by default."""

    name: str
    description: str
    parameters: dict[str, Any]


def describe_python_tool(code: str) -> PythonToolInfo:
    """The tool's function, its description and its parameters' JSON Schema, read without running anything.
    Raises PythonToolError naming what is wrong (not one top-level function, a parameter without a type hint or
    with one this reader cannot turn into a schema, *args, ...)."""
    tree = _parsed(code)
    func = _the_function(tree)
    aliases = _aliases(tree)
    args = func.args
    if args.posonlyargs:
        raise PythonToolError(f"{func.name}: positional-only parameters ('/') cannot be called with named arguments")
    for stars, rest in (("*", args.vararg), ("**", args.kwarg)):
        if rest is not None:
            raise PythonToolError(f"{func.name}: {stars}{rest.arg} is not supported; name each parameter")
    # Defaults belong to the last positional parameters, and kw_defaults to the keyword-only ones (None: none).
    defaults: list[ast.expr | None] = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
    defaults += args.kw_defaults
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg, default in zip([*args.args, *args.kwonlyargs], defaults, strict=True):
        if arg.annotation is None:
            raise PythonToolError(f"{func.name}: parameter {arg.arg!r} has no type hint")
        schema, described = _Schema(aliases, func.name, arg.arg).of(arg.annotation)
        if default is None:
            required.append(arg.arg)
        else:
            value = _literal(default)
            if value is not _NO_VALUE:
                schema["default"] = value
        schema["description"] = described if described is not None else arg.arg
        properties[arg.arg] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return PythonToolInfo(name=func.name, description=_first_paragraph(ast.get_docstring(func)), parameters=parameters)


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
            name = _the_function(_parsed(code)).name
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


# Static analysis.


def _parsed(code: str) -> ast.Module:
    try:
        return ast.parse(PLACEHOLDER.sub(_PARSE_STAND_IN, code))
    except SyntaxError as exc:
        raise PythonToolError(f"the code does not parse: {exc.msg} (line {exc.lineno})") from None
    except ValueError as exc:  # "source code string cannot contain null bytes"
        raise PythonToolError(f"the code does not parse: {exc}") from None


def _the_function(tree: ast.Module) -> ast.FunctionDef | ast.AsyncFunctionDef:
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(functions) != 1:
        found = ", ".join(f.name for f in functions) or "none"
        raise PythonToolError(f"the code must define exactly one top-level function, the tool (found: {found})")
    return functions[0]


def _aliases(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level names bound to an expression a hint may use (`Operator = Literal["+", "-"]`,
    `Operator: TypeAlias = ...`, `type Operator = ...`); the last binding wins, as at run time."""
    aliases: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            aliases[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            aliases[node.target.id] = node.value
        elif sys.version_info >= (3, 12) and isinstance(node, ast.TypeAlias) and isinstance(node.name, ast.Name):
            aliases[node.name.id] = node.value
        elif isinstance(node, ast.Import | ast.ImportFrom | ast.ClassDef):
            # A name imported or defined here is not an alias; `from typing import List` keeps List's meaning.
            for bound in _bound_names(node):
                aliases.pop(bound, None)
    return aliases


def _bound_names(node: ast.Import | ast.ImportFrom | ast.ClassDef) -> list[str]:
    if isinstance(node, ast.ClassDef):
        return [node.name]
    return [(alias.asname or alias.name).split(".")[0] for alias in node.names]


class _Schema:
    """The JSON Schema of one parameter's hint, as pydantic (and so AutoGen) writes it for the supported hints."""

    def __init__(self, aliases: Mapping[str, ast.expr], function: str, parameter: str) -> None:
        self._aliases = aliases
        self._where = f"{function}: parameter {parameter!r}"
        self._expansions = 0

    def of(self, node: ast.expr) -> tuple[dict[str, Any], str | None]:
        """(schema, description from Annotated or None)."""
        node = self._resolved(node)
        if isinstance(node, ast.Subscript) and _name(node.value) == "Annotated":
            items = _items(node.slice)
            schema, described = self.of(items[0])
            # AutoGen reads the first metadata item, when it is a string, as the description.
            first = items[1] if len(items) > 1 else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                described = first.value
            return schema, described
        return self._schema(node), None

    def _schema(self, node: ast.expr) -> dict[str, Any]:
        node = self._resolved(node)
        if isinstance(node, ast.Constant) and node.value is None:
            return {"type": "null"}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | Y
            return self._union([*_union_members(node.left), *_union_members(node.right)])
        name = _name(node)
        if name in _SCALARS:
            return {"type": _SCALARS[name]}
        if name in ("list", "List", "Sequence"):
            return {"items": {}, "type": "array"}
        if name in ("dict", "Dict", "Mapping"):
            return {"additionalProperties": True, "type": "object"}
        if name == "Any":
            return {}
        if isinstance(node, ast.Subscript):
            outer, items = _name(node.value), _items(node.slice)
            if outer == "Annotated":
                return self.of(node)[0]
            if outer in ("list", "List", "Sequence") and len(items) == 1:
                return {"items": self._schema(items[0]), "type": "array"}
            if outer in ("dict", "Dict", "Mapping") and len(items) == 2 and _name(self._resolved(items[0])) == "str":
                return {"additionalProperties": self._schema(items[1]), "type": "object"}
            if outer == "Optional" and len(items) == 1:
                return self._union([items[0], ast.Constant(None)])
            if outer == "Union":
                return self._union(items)
            if outer == "Literal":
                return self._literal(items)
        raise PythonToolError(f"{self._where}: the type hint {ast.unparse(node)} is not supported (use {_SUPPORTED})")

    def _union(self, members: list[ast.expr]) -> dict[str, Any]:
        schemas: list[dict[str, Any]] = []
        for member in members:
            schema = self._schema(member)
            if schema not in schemas:
                schemas.append(schema)
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}

    def _literal(self, items: list[ast.expr]) -> dict[str, Any]:
        values = [_literal(item) for item in items]
        if any(v is _NO_VALUE or not isinstance(v, str | int | float | bool | None) for v in values):
            raise PythonToolError(f"{self._where}: Literal takes strings, numbers, booleans or None")
        schema: dict[str, Any] = {"enum": values}
        kinds = {type(v) for v in values}
        if len(kinds) == 1 and (json_type := _LITERAL_TYPES.get(kinds.pop())):
            schema["type"] = json_type  # pydantic names the type when all members share one
        return schema

    def _resolved(self, node: ast.expr) -> ast.expr:
        """A module-level alias replaced by what it stands for; a string hint ("int") by its expression."""
        while True:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                try:
                    node = ast.parse(text, mode="eval").body
                except SyntaxError:
                    raise PythonToolError(f"{self._where}: the type hint {text!r} does not parse") from None
                continue
            if isinstance(node, ast.Name) and node.id in self._aliases:
                self._expansions += 1
                if self._expansions > _MAX_ALIAS_EXPANSIONS:
                    raise PythonToolError(f"{self._where}: its type aliases nest too deeply or refer to themselves")
                node = self._aliases[node.id]
                continue
            return node


def _name(node: ast.expr) -> str | None:
    """`int` -> "int", `typing.List` -> "List"; else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _items(node: ast.expr) -> list[ast.expr]:
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def _union_members(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return [*_union_members(node.left), *_union_members(node.right)]
    return [node]


_NO_VALUE: Final = object()


def _literal(node: ast.expr) -> Any:
    """The JSON value of a literal (a default, a Literal member), or _NO_VALUE if it is none (a call, a name)."""
    try:
        value = ast.literal_eval(node)
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return _NO_VALUE
    return list(value) if isinstance(value, tuple) else value


def _first_paragraph(docstring: str | None) -> str:
    """Its first paragraph on one line (upstream takes the first line, which cuts a sentence that wraps)."""
    if not docstring:
        return ""
    return " ".join(re.split(r"\n\s*\n", docstring.strip())[0].split())


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
