"""Reading a python tool (Agentok Studio's format: a module whose one top-level function is the tool, with type
hints on its parameters and a docstring; imports, constants and type aliases beside it, as in upstream's
Calculator sample) statically, for the function the model is offered: its name, its docstring's first paragraph,
and a JSON Schema of its parameters as AutoGen writes one for a registered function (pydantic's schema of each
hint, the parameter's name as its description unless `Annotated[T, "text"]` gives one, defaults not required).
ast only: the server never executes a tenant's code in its own process. Running a tool: python_tool.py.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

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

# Static analysis.


def tool_function_name(code: str) -> str:
    """The name of the module's one top-level function: all a call needs of the code before it runs."""
    return _the_function(_parsed(code)).name


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
