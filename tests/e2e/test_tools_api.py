"""ToolService end to end: the real server behind the real Envoy, REST and native gRPC. Tools are created under
ids a client chooses (an Agentok Studio export's) or generated ones, are their owner's alone, are checked as a
whole (INVALID_ARGUMENT naming the field, 400 through Envoy), an http tool's host must be on the operator's list
(and an unlisted one is never connected to), and header values never come back: not in Get or List, not in an
error, not in the server's or Envoy's log.

The session's stack lists 127.0.0.1:9 (tests/conftest.py): an http tool may point there."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentok.v1 import tool_pb2, tool_service_pb2, tool_service_pb2_grpc

from ..conftest import Keys
from ..support.api import Rest, error_reason
from ..support.fake_llm import FakeLlmServer
from ..support.sample_tools import CALCULATOR
from ..support.stack import LOOPBACK, Stack

LISTED_URL = "http://127.0.0.1:9/search"
QUERY = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}


@pytest.fixture()
def rest(stack: Stack, keys: Keys) -> Rest:
    return Rest(stack.rest_url, keys.alice)


@pytest.fixture()
def bob(stack: Stack, keys: Keys) -> Rest:
    return Rest(stack.rest_url, keys.bob)


@pytest.fixture()
def stub(stack: Stack) -> Iterator[tool_service_pb2_grpc.ToolServiceStub]:
    with grpc.insecure_channel(stack.edge_target) as channel:
        yield tool_service_pb2_grpc.ToolServiceStub(channel)


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    """A TCP port on loopback that no one lists: a connection to it would wait in its accept queue."""
    sock = socket.socket()
    sock.bind((LOOPBACK, 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def connections(sock: socket.socket) -> int:
    """How many connections reached `sock` (each waits in the accept queue until taken)."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def secret() -> str:
    return f"Bearer s3cr3t-{uuid.uuid4().hex}"


def http_tool(url: str = LISTED_URL, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"name": "search", "description": "Searches the web.", "parameters": QUERY, **fields}
    body["http"] = {"url": url, "headers": headers or {}}
    return body


def create(rest: Rest, body: dict[str, Any]) -> dict[str, Any]:
    r = rest.http.post("/tools", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["tool"])


def refusal(response: httpx.Response, field: str, reason: str = "INVALID_ARGUMENT") -> dict[str, Any]:
    """A 400 through Envoy: INVALID_ARGUMENT, its reason, and the one field violation naming `field`."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error_reason(body) == reason, body
    (violation,) = next(d for d in body["details"] if d["@type"].endswith("BadRequest"))["field_violations"]
    assert violation["field"] == field and body["message"].startswith(f"{field}: "), body
    return dict(body)


def ids(rest: Rest) -> list[str]:
    r = rest.http.get("/tools", params={"page_size": 500})
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json().get("tools", [])]


# -- REST ---------------------------------------------------------------------------------------------------


def test_rest_create_get_list_patch_delete_under_a_chosen_id(rest: Rest) -> None:
    tool_id = str(uuid.uuid4().int % 10**15)  # Agentok Studio's ids are numbers such as 172278707085517
    key = secret()
    created = create(rest, {"tool_id": tool_id, **http_tool(headers={"Authorization": key, "X-Tenant": "t1"})})
    assert created["id"] == tool_id and created["name"] == "search" and created["parameters"] == QUERY
    # Header values are input only: Envoy prints the map empty (it prints every field), never filled.
    assert created["http"] == {"url": LISTED_URL, "headers": {}, "header_names": ["Authorization", "X-Tenant"]}
    assert created["created_at"] == created["updated_at"]
    for path in (f"/tools/{tool_id}", f"/v1/tools/{tool_id}"):
        got = rest.http.get(path)
        assert got.status_code == 200 and got.json()["tool"] == created
    assert tool_id in ids(rest)

    r = rest.http.patch(f"/tools/{tool_id}", params={"update_mask": "description"}, json={"description": "New."})
    assert r.status_code == 200, r.text
    patched = r.json()["tool"]
    assert patched["description"] == "New." and patched["name"] == "search" and patched["http"] == created["http"]
    assert patched["created_at"] == created["created_at"] and patched["updated_at"] > created["updated_at"]
    # No mask: every field the body sets; the implementation is replaced whole, its headers with it.
    r = rest.http.patch(f"/v1/tools/{tool_id}", json={"name": "web_search", "http": {"url": LISTED_URL + "/v2"}})
    assert r.status_code == 200, r.text
    replaced = r.json()["tool"]
    assert replaced["name"] == "web_search" and replaced["http"]["url"] == LISTED_URL + "/v2"
    assert replaced["http"]["header_names"] == []

    deleted = rest.http.delete(f"/tools/{tool_id}")
    assert deleted.status_code == 200 and deleted.json() == {}
    assert rest.http.get(f"/tools/{tool_id}").status_code == 404
    assert rest.http.delete(f"/tools/{tool_id}").status_code == 404
    assert rest.http.patch(f"/tools/{tool_id}", json={"description": "x"}).status_code == 404
    assert tool_id not in ids(rest)


def test_an_id_is_generated_and_a_taken_one_is_409(rest: Rest) -> None:
    generated = create(rest, http_tool())
    assert generated["id"] and generated["id"] != create(rest, http_tool())["id"]
    tool_id = unique("taken")
    create(rest, {"tool_id": tool_id, **http_tool()})
    r = rest.http.post("/tools", json={"tool_id": tool_id, **http_tool(name="other")})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == grpc.StatusCode.ALREADY_EXISTS.value[0] and error_reason(body) == "TOOL_ALREADY_EXISTS"
    assert rest.http.get(f"/tools/{tool_id}").json()["tool"]["name"] == "search"
    refusal(rest.http.post("/tools", json={"tool_id": "no/slashes", **http_tool()}), "tool_id")


def test_another_owners_tool_is_404_and_unlisted_and_its_id_is_free_for_them(rest: Rest, bob: Rest) -> None:
    tool_id = unique("owned")
    create(rest, {"tool_id": tool_id, **http_tool()})
    for response in (
        bob.http.get(f"/tools/{tool_id}"),
        bob.http.patch(f"/tools/{tool_id}", json={"description": "mine now"}),
        bob.http.delete(f"/tools/{tool_id}"),
    ):
        assert response.status_code == 404 and error_reason(response.json()) == "TOOL_NOT_FOUND", response.text
    assert tool_id not in ids(bob)
    bobs = create(bob, {"tool_id": tool_id, **http_tool(name="bobs")})
    assert bobs["id"] == tool_id and bobs["name"] == "bobs"
    assert rest.http.get(f"/tools/{tool_id}").json()["tool"]["name"] == "search"


def test_an_unlisted_host_is_refused_and_never_connected_to(
    rest: Rest, listener: socket.socket, llm_server: FakeLlmServer
) -> None:
    before = ids(rest)
    port = listener.getsockname()[1]
    for url in (f"http://{LOOPBACK}:{port}/search", f"http://localhost:{port}/search"):
        body = refusal(rest.http.post("/tools", json=http_tool(url)), "http.url", reason="URL_NOT_ALLOWED")
        # The list is read first: a loopback address gets the same answer as any host nobody listed.
        assert "is not in the server's AGENTOK_EGRESS_ALLOWED_HOSTS" in body["message"]
        assert "no http tool runs until an operator allows its host" in body["message"]
    # The server's own model endpoint is allowed for flows without a listing, not for tools.
    body = refusal(rest.http.post("/tools", json=http_tool(llm_server.base_url)), "http.url", reason="URL_NOT_ALLOWED")
    assert "AGENTOK_EGRESS_ALLOWED_HOSTS" in body["message"]
    assert connections(listener) == 0
    assert ids(rest) == before


def test_secrets_never_come_back(stack: Stack, rest: Rest, stub: tool_service_pb2_grpc.ToolServiceStub) -> None:
    key = secret()
    tool_id = unique("secret")
    created = create(rest, {"tool_id": tool_id, **http_tool(headers={"Authorization": key})})
    python = create(rest, {"python": {"code": CALCULATOR, "variables": {"API_KEY": key}}})
    assert python["python"]["variable_names"] == ["API_KEY"]
    seen = [str(created), str(python)]
    seen += [rest.http.get(f"/tools/{t}").text for t in (tool_id, python["id"])]
    seen.append(rest.http.get("/tools", params={"page_size": 500}).text)
    metadata = (("x-api-key", rest.http.headers["X-API-KEY"]),)
    seen.append(str(stub.GetTool(tool_service_pb2.GetToolRequest(tool_id=tool_id), metadata=metadata, timeout=10)))
    seen.append(str(stub.ListTools(tool_service_pb2.ListToolsRequest(page_size=500), metadata=metadata, timeout=10)))
    # Refusals of requests that carry the secret: a bad name, a bad header value, a bad update.
    bad = [
        rest.http.post("/tools", json=http_tool(headers={"Authorization": key}, name="bad name")),
        rest.http.post("/tools", json=http_tool(headers={"Authorization": key + "\r\nX-Injected: 1"})),
        rest.http.post("/tools", json=http_tool("http://192.0.2.1/", headers={"Authorization": key})),
        rest.http.patch(f"/tools/{tool_id}", json={"http": {"url": "ftp://x/", "headers": {"Authorization": key}}}),
    ]
    assert [r.status_code for r in bad] == [400, 400, 400, 400]
    seen += [r.text for r in bad]
    assert all(key not in text for text in seen)
    assert "s3cr3t" not in stack.server.log_path.read_text() and "s3cr3t" not in stack.envoy.log_tail(10**7)


def test_create_tool_with_a_request_id_stores_one_tool(rest: Rest) -> None:
    body = {**http_tool(), "request_id": unique("req")}
    first, again = create(rest, body), create(rest, body)
    assert first == again and ids(rest).count(first["id"]) == 1
    r = rest.http.post("/tools", json={**body, "name": "changed"})
    assert r.status_code == 400 and error_reason(r.json()) == "REQUEST_ID_REUSED", r.text


def test_python_and_client_tools(rest: Rest) -> None:
    calculator = create(rest, {"python": {"code": CALCULATOR}})
    assert calculator["name"] == "calculator" and calculator["python"]["code"] == CALCULATOR
    properties = calculator["parameters"]["properties"]
    assert set(properties) == {"a", "b", "operator"} and properties["operator"]["enum"] == ["+", "-", "*", "/"]
    client = create(rest, {"name": "lookup", "client": {}})
    assert client["client"] == {} and client["parameters"] == {"type": "object", "properties": {}}
    refusal(rest.http.post("/tools", json={"python": {"code": "x = 1\n"}}), "python.code")


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"name": "search"}, "implementation", "one of http, python, client is required"),
        (http_tool(name="has space"), "name", "must match"),
        (http_tool(parameters={"type": "array"}), "parameters.type", 'must be "object"'),
        (http_tool(parameters={"type": "object", "required": 3}), "parameters.required", "JSON Schema"),
        (http_tool(headers={"Bad Name": "v"}), 'http.headers["Bad Name"]', "not a valid HTTP header name"),
        (http_tool("http://127.0.0.1:9/x#frag"), "http.url", "fragment"),
    ],
)
def test_rest_refusals_name_the_field_and_store_nothing(
    rest: Rest, body: dict[str, Any], field: str, says: str
) -> None:
    before = ids(rest)
    reason = "URL_NOT_ALLOWED" if field == "http.url" else "INVALID_ARGUMENT"
    assert says in refusal(rest.http.post("/tools", json=body), field, reason=reason)["message"]
    assert ids(rest) == before


def test_patch_refusals_name_the_field_and_change_nothing(rest: Rest) -> None:
    tool_id = unique("patch")
    created = create(rest, {"tool_id": tool_id, **http_tool()})
    for params, body, field in (
        ({"update_mask": "nmae"}, {"name": "x"}, "update_mask"),
        ({"update_mask": "http.url"}, {"http": {"url": LISTED_URL}}, "update_mask"),
        ({"update_mask": "python"}, {"name": "x"}, "tool.python"),
        ({}, {}, "tool"),
        ({}, {"name": "bad name"}, "tool.name"),
    ):
        refusal(rest.http.patch(f"/tools/{tool_id}", params=params, json=body), field)
    assert rest.http.get(f"/tools/{tool_id}").json()["tool"] == created


def test_tools_page_through_rest(rest: Rest) -> None:
    mine = [create(rest, http_tool())["id"] for _ in range(3)]
    r = rest.http.get("/tools", params={"page_size": 2})
    first = r.json()
    assert r.status_code == 200 and [t["id"] for t in first["tools"]] == mine[::-1][:2] and first["next_page_token"]
    r = rest.http.get("/v1/tools", params={"page_size": 1, "page_token": first["next_page_token"]})
    assert r.status_code == 200 and [t["id"] for t in r.json()["tools"]] == mine[:1]
    refusal(rest.http.get("/tools", params={"page_size": -1}), "page_size")


# -- native gRPC ----------------------------------------------------------------------------------------------


def test_grpc_create_get_list_update_delete(stub: tool_service_pb2_grpc.ToolServiceStub, keys: Keys) -> None:
    metadata = (("x-api-key", keys.alice),)
    request = tool_service_pb2.CreateToolRequest(
        name="lookup", description="Looks up.", http=tool_pb2.HttpTool(url=LISTED_URL, headers={"X-Key": "v"})
    )
    request.parameters.update(QUERY)
    created = stub.CreateTool(request, metadata=metadata, timeout=10).tool
    assert created.id and created.http.url == LISTED_URL and list(created.http.header_names) == ["X-Key"]
    assert not created.http.headers and created.parameters["required"][0] == "query"

    got = stub.GetTool(tool_service_pb2.GetToolRequest(tool_id=created.id), metadata=metadata, timeout=10).tool
    assert got == created
    listed = stub.ListTools(tool_service_pb2.ListToolsRequest(page_size=1), metadata=metadata, timeout=10)
    assert [t.id for t in listed.tools] == [created.id] and listed.next_page_token

    update = tool_service_pb2.UpdateToolRequest(
        tool_id=created.id,
        tool=tool_pb2.Tool(name="ignored", description="Changed.", client=tool_pb2.ClientTool()),
        update_mask=field_mask_pb2.FieldMask(paths=["description", "client"]),
    )
    updated = stub.UpdateTool(update, metadata=metadata, timeout=10).tool
    assert (updated.name, updated.description, updated.WhichOneof("implementation")) == ("lookup", "Changed.", "client")
    assert updated.updated_at.ToDatetime() > created.updated_at.ToDatetime()

    stub.DeleteTool(tool_service_pb2.DeleteToolRequest(tool_id=created.id), metadata=metadata, timeout=10)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetTool(tool_service_pb2.GetToolRequest(tool_id=created.id), metadata=metadata, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_errors_carry_the_code_and_the_field(
    stub: tool_service_pb2_grpc.ToolServiceStub, keys: Keys, listener: socket.socket
) -> None:
    alice, bob = (("x-api-key", keys.alice),), (("x-api-key", keys.bob),)
    tool_id = unique("grpc")
    request = tool_service_pb2.CreateToolRequest(tool_id=tool_id, name="n", client=tool_pb2.ClientTool())
    stub.CreateTool(request, metadata=alice, timeout=10)

    def failure(call: Any, *args: Any, metadata: Any = alice) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            call(*args, metadata=metadata, timeout=10)
        return info.value

    assert failure(stub.CreateTool, request).code() == grpc.StatusCode.ALREADY_EXISTS
    for call, req in (
        (stub.GetTool, tool_service_pb2.GetToolRequest(tool_id=tool_id)),
        (stub.DeleteTool, tool_service_pb2.DeleteToolRequest(tool_id=tool_id)),
        (stub.UpdateTool, tool_service_pb2.UpdateToolRequest(tool_id=tool_id, tool=tool_pb2.Tool(name="x"))),
    ):
        assert failure(call, req, metadata=bob).code() == grpc.StatusCode.NOT_FOUND

    unlisted = f"http://{LOOPBACK}:{listener.getsockname()[1]}/"
    err = failure(stub.CreateTool, tool_service_pb2.CreateToolRequest(name="n", http=tool_pb2.HttpTool(url=unlisted)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
    assert any(d.Unpack(bad) for d in status.details) and bad.field_violations[0].field == "http.url"
    assert any(d.Unpack(info) for d in status.details) and info.reason == "URL_NOT_ALLOWED"
    assert connections(listener) == 0
