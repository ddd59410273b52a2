"""ToolService's rules (domain/tools.py) on the in-memory store: what CreateTool and UpdateTool accept, what
they refuse (INVALID_ARGUMENT naming the field, nothing stored), ids per owner, paging, and secrets that no
error and no read gives back. Names resolve through a recording fake resolver: no DNS, and a test can see
that an unlisted host was never looked up."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from agentok.v1 import tool_pb2, tool_service_pb2
from agentok_server.domain.errors import AlreadyExists, DomainError, InvalidArgument, NotFound
from agentok_server.domain.model import Tool, ToolKind
from agentok_server.domain.tools import (
    MAX_CODE_BYTES,
    MAX_DESCRIPTION_CHARS,
    MAX_PARAMETERS_BYTES,
    NO_ARGUMENTS,
    Implementation,
    ToolDraft,
    ToolService,
)
from agentok_server.engine.egress import EgressPolicy
from agentok_server.transport import convert

from ..support.memory_store import MemoryStore
from ..support.sample_tools import CALCULATOR

OWNER = "alice"
SECRET = "Bearer s3cr3t-unit-7f1c2d"
LISTED = "tools.example.com"
SEARCH = 'def search(question: str) -> str:\n    """Searches the web."""\n    return question\n'
QUERY = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


class RecordingDns:
    """Resolves the listed test names to a public address, and records every lookup."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host in (LISTED, "public.example.com"):
            return ["93.184.215.14"]
        raise OSError("Name or service not known")


@pytest.fixture
def dns() -> RecordingDns:
    return RecordingDns()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def tools(store: MemoryStore, dns: RecordingDns) -> ToolService:
    egress = EgressPolicy(f"{LISTED},127.0.0.1:8080", server_urls=["http://model.example.com:8000/v1"], resolver=dns)
    return ToolService(store, egress=egress)


def http(url: str = f"https://{LISTED}/search", headers: dict[str, str] | None = None) -> Implementation:
    return Implementation(ToolKind.HTTP, url=url, secrets={"Authorization": SECRET} if headers is None else headers)


def draft(**changes: Any) -> ToolDraft:
    base = ToolDraft(name="search", description="Searches the web.", parameters=QUERY, implementation=http())
    return dataclasses.replace(base, **changes)


async def refused(call: Any, field: str, *, reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
    """The InvalidArgument `call` raises, naming `field`; it never quotes the test's secret."""
    with pytest.raises(InvalidArgument) as info:
        await call
    err = info.value
    assert err.reason == reason and err.field_violations[0][0] == field, (err.message, err.field_violations)
    assert err.message.startswith(f"{field}: ")
    assert SECRET not in repr((err.message, err.field_violations, err.metadata))
    return err


async def nothing_stored(store: MemoryStore, owner: str = OWNER) -> bool:
    return await store.list_tools(owner, 100, None) == []


# -- create ------------------------------------------------------------------------------------------------


async def test_an_http_tool_is_stored_under_the_id_its_client_chose(tools: ToolService, store: MemoryStore) -> None:
    tool = await tools.create(OWNER, draft(), tool_id="172278707085517")
    assert (tool.id, tool.owner, tool.name, tool.kind, tool.url) == (
        "172278707085517",
        OWNER,
        "search",
        ToolKind.HTTP,
        f"https://{LISTED}/search",
    )
    assert tool.parameters == QUERY and tool.secrets == {"Authorization": SECRET}
    assert tool.created_at is not None and tool.created_at == tool.updated_at
    assert await tools.get(OWNER, "172278707085517") == tool
    assert await store.get_tools(OWNER, ["172278707085517", "nope"]) == {"172278707085517": tool}


async def test_without_a_tool_id_one_is_generated(tools: ToolService) -> None:
    first, second = await tools.create(OWNER, draft()), await tools.create(OWNER, draft())
    assert first.id and second.id and first.id != second.id


@pytest.mark.parametrize("tool_id", ["a" * 65, "has space", "slash/y", "dot.ted", "ü"])
async def test_a_tool_id_outside_the_alphabet_is_refused(tools: ToolService, store: MemoryStore, tool_id: str) -> None:
    await refused(tools.create(OWNER, draft(), tool_id=tool_id), "tool_id")
    assert await nothing_stored(store)


async def test_ids_are_per_owner(tools: ToolService) -> None:
    await tools.create(OWNER, draft(), tool_id="t1")
    with pytest.raises(AlreadyExists) as info:
        await tools.create(OWNER, draft(name="other"), tool_id="t1")
    assert info.value.reason == "TOOL_ALREADY_EXISTS" and info.value.metadata == {"tool_id": "t1"}
    assert (await tools.get(OWNER, "t1")).name == "search"  # the first one is untouched
    bobs = await tools.create("bob", draft(name="bobs"), tool_id="t1")  # another owner may have the same id
    assert bobs.owner == "bob" and (await tools.get(OWNER, "t1")).name == "search"


async def test_another_owners_tool_is_not_found_and_not_listed(tools: ToolService) -> None:
    await tools.create(OWNER, draft(), tool_id="mine")
    for call in (
        tools.get("bob", "mine"),
        tools.update("bob", "mine", draft(description="x"), ["description"]),
        tools.delete("bob", "mine"),
    ):
        with pytest.raises(NotFound) as info:
            await call
        assert info.value.reason == "TOOL_NOT_FOUND" and info.value.metadata == {"tool_id": "mine"}
    assert await tools.list_tools("bob", 0, "") == ([], "")
    assert (await tools.get(OWNER, "mine")).description == "Searches the web."


@pytest.mark.parametrize("name", ["", "has space", "a" * 65, "dot.ted", "naïve"])
async def test_a_name_the_model_cannot_take_is_refused(tools: ToolService, store: MemoryStore, name: str) -> None:
    await refused(tools.create(OWNER, draft(name=name)), "name")
    assert await nothing_stored(store)


async def test_a_description_must_be_storable_text_of_bounded_length(tools: ToolService, store: MemoryStore) -> None:
    await refused(tools.create(OWNER, draft(description="a\x00b")), "description")
    await refused(tools.create(OWNER, draft(description="x" * (MAX_DESCRIPTION_CHARS + 1))), "description")
    assert await nothing_stored(store)
    assert (await tools.create(OWNER, draft(description="x" * MAX_DESCRIPTION_CHARS))).description


@pytest.mark.parametrize(
    ("parameters", "field", "says"),
    [
        ({"type": "string"}, "parameters.type", 'must be "object"'),
        ({"properties": {}}, "parameters.type", 'must be "object"'),
        ({"type": "object", "properties": {"q": {"type": "nope"}}}, "parameters.properties.q.type", "JSON Schema"),
        ({"type": "object", "required": "q"}, "parameters.required", "is not of type 'array'"),
        ({"type": "object", "properties": {"n": {"maximum": math.nan}}}, "parameters.properties.n.maximum", "NaN"),
        ({"type": "object", "description": "x\x00"}, "parameters", "NUL"),
        ({"type": "object", "description": "x" * MAX_PARAMETERS_BYTES}, "parameters", "64 KiB"),
    ],
)
async def test_parameters_must_be_a_valid_object_schema(
    tools: ToolService, store: MemoryStore, parameters: dict[str, Any], field: str, says: str
) -> None:
    err = await refused(tools.create(OWNER, draft(parameters=parameters)), field)
    assert says in err.message
    assert await nothing_stored(store)


async def test_parameters_follow_the_draft_their_schema_names(tools: ToolService) -> None:
    # Draft 7 writes "definitions" and a boolean exclusiveMinimum is draft 4's; draft 2020-12 is the default.
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "definitions": {"a": {}}}
    assert (await tools.create(OWNER, draft(parameters=draft7))).parameters == draft7
    with_defs = {"type": "object", "$defs": {"n": {"type": "integer", "minimum": 1}}, "properties": {}}
    assert (await tools.create(OWNER, draft(parameters=with_defs))).parameters == with_defs


async def test_an_http_or_client_tool_without_parameters_takes_no_arguments(tools: ToolService) -> None:
    tool = await tools.create(OWNER, draft(parameters=None, implementation=Implementation(ToolKind.CLIENT)))
    assert tool.parameters == NO_ARGUMENTS and tool.kind is ToolKind.CLIENT and tool.secrets == {}


async def test_a_tool_needs_an_implementation(tools: ToolService, store: MemoryStore) -> None:
    err = await refused(tools.create(OWNER, draft(implementation=None)), "implementation")
    assert "one of http, python, client is required" in err.message
    assert await nothing_stored(store)


# -- http tools: the host must be on the operator's list --------------------------------------------------


async def test_an_unlisted_host_is_refused_before_it_is_looked_up(
    tools: ToolService, store: MemoryStore, dns: RecordingDns
) -> None:
    for url in ("https://public.example.com/search", "http://127.0.0.1:8081/", "http://127.0.0.2:8080/"):
        err = await refused(tools.create(OWNER, draft(implementation=http(url))), "http.url", reason="URL_NOT_ALLOWED")
        assert "AGENTOK_EGRESS_ALLOWED_HOSTS: no http tool runs until an operator allows its host" in err.message
    assert dns.lookups == [] and await nothing_stored(store)


async def test_the_servers_own_model_endpoint_is_not_a_listing(tools: ToolService, dns: RecordingDns) -> None:
    """Flows may call the operator's AGENTOK_LLM_BASE_URL unlisted; an http tool may not."""
    impl = http("http://model.example.com:8000/v1/tool")
    err = await refused(tools.create(OWNER, draft(implementation=impl)), "http.url", reason="URL_NOT_ALLOWED")
    assert "model.example.com:8000 is not in" in err.message and dns.lookups == []


async def test_a_listed_host_is_checked_by_the_egress_policy_too(tools: ToolService, dns: RecordingDns) -> None:
    tool = await tools.create(OWNER, draft(implementation=http(f"https://{LISTED}/v1/search")))
    assert tool.url == f"https://{LISTED}/v1/search" and dns.lookups == [LISTED]
    # Listed as host:port, a loopback address is the operator's choice.
    assert (await tools.create(OWNER, draft(implementation=http("http://127.0.0.1:8080/search")))).url
    for url, says in (
        (f"https://{LISTED}/search#frag", "fragment"),
        (f"https://{LISTED}/search?format=json", "query string"),
        (f"https://user:pw@{LISTED}/", "user name or password"),
        (f"ftp://{LISTED}/", "http:// or https://"),
        ("", "is required"),
    ):
        err = await refused(
            tools.create(OWNER, draft(implementation=http(url))),
            "http.url",
            reason=("INVALID_ARGUMENT" if not url else "URL_NOT_ALLOWED"),
        )
        assert says in err.message


@pytest.mark.parametrize(
    ("headers", "name", "says"),
    [
        ({"Bad Name": SECRET}, "Bad Name", "not a valid HTTP header name"),
        ({"X-Key:": SECRET}, "X-Key:", "not a valid HTTP header name"),
        ({"Idempotency-Key": SECRET}, "Idempotency-Key", "the server sets itself"),
        ({"content-type": SECRET}, "content-type", "the server sets itself"),
        ({"Authorization": SECRET, "authorization": SECRET}, "authorization", "given twice"),
        ({"Authorization": SECRET + "\r\nX-Injected: 1"}, "Authorization", "no line breaks"),
        ({"Authorization": SECRET + "\x00"}, "Authorization", "NUL"),
        ({"Authorization": SECRET + "é"}, "Authorization", "visible ASCII"),
        ({"Authorization": SECRET + "x" * 16 * 1024}, "Authorization", "at most 16 KiB"),
    ],
)
async def test_header_names_are_checked_and_values_never_quoted(
    tools: ToolService, store: MemoryStore, headers: dict[str, str], name: str, says: str
) -> None:
    field = f"http.headers[{json.dumps(name)}]"
    err = await refused(tools.create(OWNER, draft(implementation=http(headers=headers))), field)
    assert says in err.message
    assert await nothing_stored(store)


async def test_secrets_never_go_out(tools: ToolService) -> None:
    headers = {"Authorization": SECRET, "X-Tenant": "t-42"}
    tool = await tools.create(OWNER, draft(implementation=http(headers=headers)), tool_id="t")
    out = convert.tool(tool)
    assert list(out.http.header_names) == ["Authorization", "X-Tenant"] and not out.http.headers
    assert SECRET not in str(out) and "t-42" not in str(out)
    python = await tools.create(
        OWNER, ToolDraft(implementation=Implementation(ToolKind.PYTHON, code=SEARCH, secrets={"API_KEY": SECRET}))
    )
    shown = convert.tool(python)
    assert list(shown.python.variable_names) == ["API_KEY"] and not shown.python.variables
    assert SECRET not in str(shown)


# -- python tools -------------------------------------------------------------------------------------------


async def test_the_calculator_sample_takes_its_defaults_from_its_signature(tools: ToolService) -> None:
    tool = await tools.create(OWNER, ToolDraft(implementation=Implementation(ToolKind.PYTHON, code=CALCULATOR)))
    assert tool.kind is ToolKind.PYTHON and tool.code == CALCULATOR
    assert tool.name == "calculator" and tool.description == ""
    assert tool.parameters["type"] == "object"
    assert set(tool.parameters["properties"]) == {"a", "b", "operator"}
    assert tool.parameters["properties"]["operator"]["enum"] == ["+", "-", "*", "/"]
    assert sorted(tool.parameters["required"]) == ["a", "b", "operator"]


async def test_what_a_python_tools_client_sends_wins_over_the_defaults(tools: ToolService) -> None:
    impl = Implementation(ToolKind.PYTHON, code=SEARCH)
    assert (await tools.create(OWNER, ToolDraft(implementation=impl))).description == "Searches the web."
    tool = await tools.create(OWNER, ToolDraft(name="web", description="Web.", parameters=QUERY, implementation=impl))
    assert (tool.name, tool.description, tool.parameters) == ("web", "Web.", QUERY)


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("", "is required"),
        ("x = 1\n", ""),  # no function: PythonToolError's own words
        ("def f(a): return a\n", ""),  # no type hints
        ("def f(a: int) -> int:\n    return a\ndef g(b: int) -> int:\n    return b\n", ""),
        ("def f(a: int:\n", ""),  # not Python
        ("def f() -> int:\n    return 1\x00\n", "NUL"),
        ("#" * (MAX_CODE_BYTES + 1), "256 KiB"),
    ],
)
async def test_python_code_must_be_one_typed_function(
    tools: ToolService, store: MemoryStore, code: str, says: str
) -> None:
    impl = Implementation(ToolKind.PYTHON, code=code)
    err = await refused(tools.create(OWNER, ToolDraft(implementation=impl)), "python.code")
    assert says in err.message and len(err.message) > len("python.code: ")
    assert await nothing_stored(store)


@pytest.mark.parametrize(("name", "says"), [("1ST", "must match"), ("has-dash", "must match"), ("", "must match")])
async def test_variable_names_are_placeholder_names(tools: ToolService, name: str, says: str) -> None:
    impl = Implementation(ToolKind.PYTHON, code=SEARCH, secrets={name: SECRET})
    err = await refused(tools.create(OWNER, ToolDraft(implementation=impl)), f"python.variables[{json.dumps(name)}]")
    assert says in err.message


async def test_a_variable_value_is_never_quoted(tools: ToolService) -> None:
    impl = Implementation(ToolKind.PYTHON, code=SEARCH, secrets={"API_KEY": SECRET + "\x00"})
    await refused(tools.create(OWNER, ToolDraft(implementation=impl)), 'python.variables["API_KEY"]')


async def test_a_python_tools_name_from_a_non_ascii_function_must_be_given(tools: ToolService) -> None:
    code = 'def café(a: int) -> int:\n    """Coffee."""\n    return a\n'
    impl = Implementation(ToolKind.PYTHON, code=code)
    await refused(tools.create(OWNER, ToolDraft(implementation=impl)), "name")
    assert (await tools.create(OWNER, ToolDraft(name="cafe", implementation=impl))).name == "cafe"


# -- update ------------------------------------------------------------------------------------------------


async def test_update_changes_the_masked_fields_only(tools: ToolService) -> None:
    created = await tools.create(OWNER, draft(), tool_id="t")
    updated = await tools.update(OWNER, "t", ToolDraft(name="ignored", description="New."), ["description"])
    assert (updated.name, updated.description, updated.secrets) == ("search", "New.", {"Authorization": SECRET})
    assert updated.created_at == created.created_at
    assert created.updated_at is not None and updated.updated_at is not None and updated.updated_at > created.updated_at
    assert await tools.get(OWNER, "t") == updated


async def test_an_empty_mask_changes_every_field_the_tool_sets(tools: ToolService) -> None:
    await tools.create(OWNER, draft(), tool_id="t")
    updated = await tools.update(OWNER, "t", ToolDraft(name="renamed", parameters=NO_ARGUMENTS), [])
    assert (updated.name, updated.description, updated.parameters) == ("renamed", "Searches the web.", NO_ARGUMENTS)
    assert updated.kind is ToolKind.HTTP and updated.secrets == {"Authorization": SECRET}
    await refused(tools.update(OWNER, "t", ToolDraft(), []), "tool")


async def test_an_implementation_is_replaced_whole_secrets_included(tools: ToolService) -> None:
    await tools.create(OWNER, draft(), tool_id="t")
    moved = await tools.update(OWNER, "t", ToolDraft(implementation=http(f"https://{LISTED}/v2", headers={})), ["http"])
    assert moved.url == f"https://{LISTED}/v2" and moved.secrets == {}
    client = await tools.update(OWNER, "t", ToolDraft(implementation=Implementation(ToolKind.CLIENT)), [])
    assert client.kind is ToolKind.CLIENT and client.url == "" and client.secrets == {}


@pytest.mark.parametrize(
    ("paths", "tool", "field", "says"),
    [
        (["nmae"], ToolDraft(name="x"), "update_mask", "unknown field 'nmae'"),
        (["http.url"], ToolDraft(), "update_mask", "replaced whole"),
        (["id"], ToolDraft(), "update_mask", "unknown field 'id'"),
        (["http", "client"], ToolDraft(implementation=Implementation(ToolKind.CLIENT)), "update_mask", "exactly one"),
        (["python"], ToolDraft(implementation=Implementation(ToolKind.CLIENT)), "tool.python", "not set"),
        (["http"], ToolDraft(), "tool.http", "not set"),
        (["name"], ToolDraft(), "tool.name", "is required"),
        (["name"], ToolDraft(name="bad name"), "tool.name", "must match"),
        (["parameters"], ToolDraft(parameters={"type": "array"}), "tool.parameters.type", "object"),
        (["http"], ToolDraft(implementation=http("https://public.example.com/")), "tool.http.url", "operator"),
    ],
)
async def test_an_update_is_checked_as_a_create_is_and_changes_nothing_when_refused(
    tools: ToolService, paths: list[str], tool: ToolDraft, field: str, says: str
) -> None:
    created = await tools.create(OWNER, draft(), tool_id="t")
    reason = "URL_NOT_ALLOWED" if field.endswith("url") else "INVALID_ARGUMENT"
    err = await refused(tools.update(OWNER, "t", tool, paths), field, reason=reason)
    assert says in err.message
    assert await tools.get(OWNER, "t") == created


async def test_new_code_brings_its_defaults_but_not_over_what_the_client_set(tools: ToolService) -> None:
    await tools.create(OWNER, ToolDraft(implementation=Implementation(ToolKind.PYTHON, code=SEARCH)), tool_id="d")
    renamed = 'def lookup(term: str, limit: int = 5) -> str:\n    """Looks it up."""\n    return term\n'
    new = await tools.update(OWNER, "d", ToolDraft(implementation=Implementation(ToolKind.PYTHON, code=renamed)), [])
    assert (new.name, new.description) == ("lookup", "Looks it up.")
    assert set(new.parameters["properties"]) == {"term", "limit"} and new.parameters["required"] == ["term"]

    mine = ToolDraft(name="mine", implementation=Implementation(ToolKind.PYTHON, code=SEARCH))
    await tools.create(OWNER, mine, tool_id="e")
    kept = await tools.update(OWNER, "e", ToolDraft(implementation=Implementation(ToolKind.PYTHON, code=renamed)), [])
    assert kept.name == "mine" and kept.description == "Looks it up."


async def test_update_and_delete_of_an_unknown_tool_are_not_found(tools: ToolService) -> None:
    for call in (tools.update(OWNER, "nope", draft(), []), tools.delete(OWNER, "nope"), tools.get(OWNER, "x\x00")):
        with pytest.raises(NotFound):
            await call


async def test_delete_removes_the_tool(tools: ToolService, store: MemoryStore) -> None:
    await tools.create(OWNER, draft(), tool_id="t")
    await tools.delete(OWNER, "t")
    assert await store.get_tool(OWNER, "t") is None
    with pytest.raises(NotFound):
        await tools.delete(OWNER, "t")


# -- list ---------------------------------------------------------------------------------------------------


async def test_tools_page_newest_first(tools: ToolService) -> None:
    ids = [(await tools.create(OWNER, draft())).id for _ in range(5)]
    await tools.create("bob", draft())
    first, token = await tools.list_tools(OWNER, 2, "")
    second, token2 = await tools.list_tools(OWNER, 2, token)
    third, end = await tools.list_tools(OWNER, 2, token2)
    assert [t.id for t in first + second + third] == ids[::-1] and token and token2 and end == ""
    assert len((await tools.list_tools(OWNER, 0, ""))[0]) == 5
    for page_size, token, field in ((-1, "", "page_size"), (0, "garbage", "page_token")):
        with pytest.raises(DomainError) as info:
            await tools.list_tools(OWNER, page_size, token)
        assert info.value.field_violations[0][0] == field


# -- the wire ------------------------------------------------------------------------------------------------


def test_a_request_reads_as_the_draft_it_holds() -> None:
    request = tool_service_pb2.CreateToolRequest(
        tool_id="t", name="n", description="d", http=tool_pb2.HttpTool(url="https://x/", headers={"A": "b"})
    )
    request.parameters.update({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}})
    got = convert.tool_draft(request)
    assert got == ToolDraft(
        name="n",
        description="d",
        parameters={"type": "object", "properties": {"n": {"type": "integer", "minimum": 1.0}}},
        implementation=Implementation(ToolKind.HTTP, url="https://x/", secrets={"A": "b"}),
    )
    assert convert.tool_draft(tool_pb2.Tool(client=tool_pb2.ClientTool())).implementation == Implementation(
        ToolKind.CLIENT
    )
    bare = convert.tool_draft(tool_pb2.Tool())
    assert bare.parameters is None and bare.implementation is None


def test_a_stored_tool_is_shown_with_its_times() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 12, 2, tzinfo=UTC)
    tool = Tool("t", OWNER, "n", "", NO_ARGUMENTS, ToolKind.CLIENT, created_at=at, updated_at=at)
    out = convert.tool(tool)
    assert out.HasField("client") and out.created_at.ToDatetime(tzinfo=UTC) == at and out.parameters["type"] == "object"
