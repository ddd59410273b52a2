"""Tool rules: a tool is checked whole before it is stored, at CreateTool and UpdateTool alike.

Secrets (an http tool's header values, a python tool's variables) are checked like everything else, but no
error ever quotes one: each refusal names the header or variable, never its value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from jsonschema import validators
from jsonschema.exceptions import SchemaError

from ..engine.egress import SETTING as EGRESS_SETTING
from ..engine.egress import EgressPolicy, EgressRefused, parse_url
from ..engine.flow_spec.tools import TOOL_ID
from ..engine.python_tool_schema import PythonToolError, PythonToolInfo, describe_python_tool
from . import paging
from .errors import invalid_field, tool_exists, tool_not_found
from .flows import check_finite_numbers
from .limits import check_id
from .model import Tool, ToolKind
from .ports import ToolStore
from .text import check_json_text, check_text, is_clean_text

# OpenAI's rule for function names; the model sees this one.
NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
VARIABLE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110: a field name is a token; a value is visible ASCII with spaces or tabs inside, never a line break.
HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
HEADER_VALUE: Final = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")
# Headers the server writes itself on every call (the body's type and length, the call's Idempotency-Key,
# the host it connects to, the uncompressed answer it asks for: engine/http_tool.py) or that belong to the
# connection, not the request: a tool may not set them.
RESERVED_HEADERS: Final = frozenset(
    ("content-type", "content-length", "idempotency-key", "host", "accept-encoding")
    + ("connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade")
)

# Each model request carries every tool an agent may call, description and schema included: these bound
# what one tool adds to each of them.
MAX_DESCRIPTION_CHARS: Final = 8192
MAX_PARAMETERS_BYTES: Final = 64 * 1024
MAX_CODE_BYTES: Final = 256 * 1024
MAX_SECRETS: Final = 64
MAX_SECRET_NAME_CHARS: Final = 256
MAX_SECRET_BYTES: Final = 16 * 1024
# A tool that takes no arguments: what an http or client tool's schema is when the client sends none.
NO_ARGUMENTS: Final[dict[str, Any]] = {"type": "object", "properties": {}}
# UpdateTool's update_mask paths; the last three are the implementation, replaced whole.
IMPLEMENTATIONS: Final = tuple(kind.value for kind in ToolKind)
UPDATABLE: Final = ("name", "description", "parameters", *IMPLEMENTATIONS)


@dataclass(frozen=True)
class Implementation:
    """How a tool runs, as a client sends it. `secrets`: the http tool's headers or the python tool's
    variables (both write-only)."""

    kind: ToolKind
    url: str = ""
    code: str = ""
    secrets: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolDraft:
    """A tool's fields as a client sends them (CreateTool's, or UpdateTool's `tool`): "" or None = not set."""

    name: str = ""
    description: str = ""
    parameters: dict[str, Any] | None = None
    implementation: Implementation | None = None


class ToolService:
    def __init__(self, repo: ToolStore, *, egress: EgressPolicy) -> None:
        self._repo = repo
        self._egress = egress

    async def create(self, owner: str, draft: ToolDraft, *, tool_id: str = "") -> Tool:
        """Stores the tool under `tool_id` (one of the owner's own, so an Agentok Studio export keeps its
        ids), or a new id when it is empty."""
        if tool_id and not TOOL_ID.fullmatch(tool_id):
            raise invalid_field("tool_id", "must be 1 to 64 of the characters A-Z, a-z, 0-9, '_' and '-'")
        tool = await self._checked(owner, tool_id, draft, prefix="")
        stored = await self._repo.insert_tool(tool)
        if stored is None:
            raise tool_exists(tool_id)
        return stored

    async def get(self, owner: str, tool_id: str) -> Tool:
        check_id("tool_id", tool_id)
        tool = await self._repo.get_tool(owner, tool_id) if is_clean_text(tool_id) else None
        if tool is None:
            raise tool_not_found(tool_id)
        return tool

    async def list_tools(self, owner: str, page_size: int, page_token: str) -> tuple[list[Tool], str]:
        return await paging.newest_first(
            lambda limit, after: self._repo.list_tools(owner, limit, after), page_size, page_token, _tool_bytes
        )

    async def update(self, owner: str, tool_id: str, draft: ToolDraft, paths: Sequence[str]) -> Tool:
        """Changes the fields `paths` name (UPDATABLE; none: every field `draft` sets), then checks the result
        as CreateTool checks a new tool. A python tool's name, description and parameters that were its
        code's defaults follow new code unless the update sets them too."""
        current = await self.get(owner, tool_id)
        fields = _fields(draft, paths)
        tool = await self._checked(owner, tool_id, _merged(current, draft, fields), prefix="tool.")
        updated = await self._repo.update_tool(tool)
        if updated is None:  # deleted meanwhile
            raise tool_not_found(tool_id)
        return updated

    async def delete(self, owner: str, tool_id: str) -> None:
        check_id("tool_id", tool_id)
        if not is_clean_text(tool_id) or not await self._repo.delete_tool(owner, tool_id):
            raise tool_not_found(tool_id)

    async def _checked(self, owner: str, tool_id: str, draft: ToolDraft, *, prefix: str) -> Tool:
        """The tool `draft` describes, every rule checked (the URL, which may take a DNS lookup, last);
        `prefix` is where the request holds the tool's fields ("tool." in UpdateTool)."""
        impl = draft.implementation
        if impl is None:
            raise invalid_field(f"{prefix}implementation", "one of http, python, client is required")
        name, description, parameters = draft.name, draft.description, draft.parameters
        url, code, secrets = "", "", dict(impl.secrets)
        if impl.kind is ToolKind.PYTHON:
            code = impl.code
            info = _described(f"{prefix}python.code", code)
            name, description = name or info.name, description or info.description
            parameters = info.parameters if parameters is None else parameters
            _check_variables(f"{prefix}python.variables", secrets)
        elif impl.kind is ToolKind.HTTP:
            url = impl.url
            _check_headers(f"{prefix}http.headers", secrets)
        else:
            secrets = {}
        if not NAME.fullmatch(name):
            why = "is required" if not name else "must match ^[a-zA-Z0-9_-]{1,64}$ (the function name the model sees)"
            raise invalid_field(f"{prefix}name", why)
        check_text(f"{prefix}description", description)
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise invalid_field(f"{prefix}description", f"must be at most {MAX_DESCRIPTION_CHARS} characters")
        parameters = _checked_parameters(f"{prefix}parameters", NO_ARGUMENTS if parameters is None else parameters)
        if impl.kind is ToolKind.HTTP:
            await self._check_url(f"{prefix}http.url", url)
        return Tool(
            id=tool_id,
            owner=owner,
            name=name,
            description=description,
            parameters=parameters,
            kind=impl.kind,
            url=url,
            code=code,
            secrets=secrets,
        )

    async def _check_url(self, field: str, url: str) -> None:
        """The URL must be one the egress policy lets the server call, and its host:port must be on the
        operator's own list: a public host is not enough. The list is read first, so a host nobody allowed
        is never looked up, let alone connected to. Checked as the call will be (engine/http_tool.py, through
        EgressClient): no query string either."""
        if not url:
            raise invalid_field(field, "is required")
        try:
            parsed = parse_url(url)
        except EgressRefused as refused:
            raise invalid_field(field, str(refused), reason="URL_NOT_ALLOWED") from None
        if not self._egress.lists(parsed.host, parsed.port):
            where = f"[{parsed.host}]:{parsed.port}" if ":" in parsed.host else f"{parsed.host}:{parsed.port}"
            raise invalid_field(
                field,
                f"{where} is not in the server's {EGRESS_SETTING}: no http tool runs until an operator allows its host",
                reason="URL_NOT_ALLOWED",
            )
        try:
            await self._egress.check_url(url)
        except EgressRefused as refused:
            raise invalid_field(field, str(refused), reason="URL_NOT_ALLOWED") from None


def _fields(draft: ToolDraft, paths: Sequence[str]) -> set[str]:
    """The fields an UpdateTool changes: its update_mask's paths, checked, or (no mask) the ones `draft` sets."""
    if not paths:
        fields = {name for name in ("name", "description") if getattr(draft, name)}
        if draft.parameters is not None:
            fields.add("parameters")
        if draft.implementation is not None:
            fields.add(draft.implementation.kind.value)
        if not fields:
            raise invalid_field("tool", "sets no field, and update_mask names none: there is nothing to change")
        return fields
    for path in paths:
        if path not in UPDATABLE:
            hint = " (an implementation is replaced whole: name it alone)" if "." in path else ""
            raise invalid_field("update_mask", f"unknown field {path!r}{hint}; the fields are {', '.join(UPDATABLE)}")
    implementations = sorted({p for p in paths if p in IMPLEMENTATIONS})
    if len(implementations) > 1:
        raise invalid_field(
            "update_mask", f"names {' and '.join(implementations)}: a tool has exactly one implementation"
        )
    if implementations:
        kind = implementations[0]
        if draft.implementation is None or draft.implementation.kind.value != kind:
            raise invalid_field(
                f"tool.{kind}", "is in update_mask but not set: a tool needs exactly one implementation"
            )
    return set(paths)


def _merged(current: Tool, draft: ToolDraft, fields: set[str]) -> ToolDraft:
    """The tool as the update leaves it, before the rules: `draft`'s value for each field in `fields`, the
    stored one for the others."""
    impl = Implementation(current.kind, current.url, current.code, current.secrets)
    if fields & set(IMPLEMENTATIONS):
        assert draft.implementation is not None  # _fields saw to it
        impl = draft.implementation
    name = draft.name if "name" in fields else current.name
    description = draft.description if "description" in fields else current.description
    parameters = draft.parameters if "parameters" in fields else current.parameters
    if impl.kind is ToolKind.PYTHON and current.kind is ToolKind.PYTHON and impl.code != current.code:
        # What the old code gave by default is given by the new code instead (cleared: _checked fills it).
        old = _defaults(current.code)
        if old is not None:
            name = "" if "name" not in fields and name == old.name else name
            description = "" if "description" not in fields and description == old.description else description
            parameters = None if "parameters" not in fields and parameters == old.parameters else parameters
    return ToolDraft(name=name, description=description, parameters=parameters, implementation=impl)


def _defaults(code: str) -> PythonToolInfo | None:
    try:
        return describe_python_tool(code)
    except PythonToolError:
        return None


def _described(field: str, code: str) -> PythonToolInfo:
    if not code:
        raise invalid_field(field, "is required")
    check_text(field, code)
    if len(code.encode()) > MAX_CODE_BYTES:
        raise invalid_field(field, f"must be at most {MAX_CODE_BYTES // 1024} KiB")
    try:
        return describe_python_tool(code)
    except PythonToolError as err:
        raise invalid_field(field, str(err)) from None


def _checked_parameters(field: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """An object schema that JSON Schema's meta-schema accepts (the draft its `$schema` names; 2020-12, as
    OpenAI's function parameters, when it names none)."""
    if len(json.dumps(parameters).encode()) > MAX_PARAMETERS_BYTES:
        raise invalid_field(field, f"must be at most {MAX_PARAMETERS_BYTES // 1024} KiB as JSON")
    check_finite_numbers(field, parameters)
    check_json_text(field, parameters)
    if parameters.get("type") != "object":
        raise invalid_field(f"{field}.type", 'must be "object": a tool\'s arguments are one JSON object')
    validator = validators.validator_for(parameters, default=validators.Draft202012Validator)
    try:
        validator.check_schema(parameters)
    except SchemaError as err:
        where = field + err.json_path.removeprefix("$")
        message = err.message if len(err.message) <= 300 else err.message[:300] + "..."
        raise invalid_field(where, f"is not valid JSON Schema: {message}") from None
    return parameters


def _check_secret_names(field: str, secrets: Mapping[str, str], what: str) -> None:
    if len(secrets) > MAX_SECRETS:
        raise invalid_field(field, f"must hold at most {MAX_SECRETS} {what}s")
    for name in secrets:
        if len(name) > MAX_SECRET_NAME_CHARS:
            raise invalid_field(field, f"a {what} name is longer than {MAX_SECRET_NAME_CHARS} characters")
        check_text(field, name)


def _check_secret_value(field: str, value: str) -> None:
    """Never quotes the value: it is a secret."""
    check_text(field, value)
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise invalid_field(field, f"the value must be at most {MAX_SECRET_BYTES // 1024} KiB")


def _check_headers(field: str, headers: Mapping[str, str]) -> None:
    _check_secret_names(field, headers, "header")
    seen: set[str] = set()
    for name, value in headers.items():
        where = f"{field}[{json.dumps(name)}]"
        if not HEADER_NAME.fullmatch(name):
            raise invalid_field(where, "is not a valid HTTP header name (RFC 9110 token characters only)")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS:
            raise invalid_field(where, "is a header the server sets itself on every call")
        if lowered in seen:
            raise invalid_field(where, "is given twice (header names are case-insensitive)")
        seen.add(lowered)
        _check_secret_value(where, value)
        if not HEADER_VALUE.fullmatch(value):
            raise invalid_field(
                where, "the value must be visible ASCII characters, with spaces or tabs only inside, no line breaks"
            )


def _check_variables(field: str, variables: Mapping[str, str]) -> None:
    _check_secret_names(field, variables, "variable")
    for name, value in variables.items():
        where = f"{field}[{json.dumps(name)}]"
        if not VARIABLE.fullmatch(name):
            raise invalid_field(where, "must match ^[A-Za-z_][A-Za-z0-9_]*$ (the NAME of a {{NAME}} placeholder)")
        _check_secret_value(where, value)


def _tool_bytes(tool: Tool) -> int:
    """About what a tool takes in a page (its secrets are not in it)."""
    texts = (tool.id, tool.name, tool.description, tool.url, tool.code, *tool.secrets)
    return 256 + sum(len(t.encode()) for t in texts) + len(json.dumps(tool.parameters).encode())
