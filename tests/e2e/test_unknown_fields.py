"""A JSON body field the API does not know is 400 INVALID_ARGUMENT naming it (reason UNKNOWN_FIELD, a BadRequest
field violation), the way an unknown query parameter is, and nothing is stored; everything the transcoder
accepts still works (proto and JSON names, enums as names or numbers, any JSON inside a Struct). Through the
real Envoy, whose key check reads REST bodies (transport/body_check.py), and the real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from agentok.v1 import chat_service_pb2

from ..conftest import Keys
from ..support.api import Grpc, two_agent_flow
from ..support.stack import Stack

TOOL_URL = "http://127.0.0.1:9/search"  # on the session stack's egress list


@pytest.fixture()
def http(stack: Stack, keys: Keys) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.rest_url, headers={"X-API-KEY": keys.alice}, timeout=30) as client:
        yield client


def _flow() -> dict[str, Any]:
    return two_agent_flow(
        a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": "ok"}, b_type="conversable"
    )


def _tool(**fields: Any) -> dict[str, Any]:
    body = {"name": "search", "description": "Searches.", "parameters": {"type": "object", "properties": {}}}
    return {**body, "http": {"url": TOOL_URL}, **fields}


def unknown_field(r: httpx.Response, *fields: tuple[str, str]) -> dict[str, Any]:
    """The refusal: 400, INVALID_ARGUMENT, UNKNOWN_FIELD, one violation per (field, suggestion or "")."""
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 3, body
    info = next(d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert (info["reason"], info["domain"]) == ("UNKNOWN_FIELD", "agentok.ai"), body
    assert info["metadata"] == {"fields": ",".join(f for f, _ in fields)}
    violations = next(d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest"))["field_violations"]
    assert [v["field"] for v in violations] == [f for f, _ in fields], body
    for (name, near), v in zip(fields, violations, strict=True):
        assert f'"{name}"' in body["message"]
        assert (f'did you mean "{near}"' in v["description"]) == bool(near), v
    return dict(body)


def _count(http: httpx.Client, collection: str) -> int:
    r = http.get(f"/v1/{collection}", params={"page_size": 500})
    assert r.status_code == 200, r.text
    return len(r.json().get(collection, []))


def test_a_misspelled_chat_field_is_refused_and_no_chat_is_made(http: httpx.Client) -> None:
    flow = http.post("/v1/flows", json={"name": "f", "flow": _flow()}).json()["flow"]
    before = _count(http, "chats")
    body = {"from_type": "flow", "from_flow": flow["id"], "max_agent_turn": 5}
    for path in ("/chats", "/v1/chats"):
        refusal = unknown_field(http.post(path, json=body), ("max_agent_turn", "max_agent_turns"))
        assert refusal["message"] == (
            'unknown field in the request body: "max_agent_turn" (did you mean "max_agent_turns"?)'
        )
    assert _count(http, "chats") == before
    # Spelled right, it is taken (the budget is not silently the default).
    created = http.post("/v1/chats", json={**body, "max_agent_turns": 5, "max_agent_turn": None})
    assert created.status_code == 400  # `null` of an unknown field is still an unknown field
    del body["max_agent_turn"]
    created = http.post("/v1/chats", json={**body, "max_agent_turns": 5})
    assert created.status_code == 200 and created.json()["chat"]["max_agent_turns"] == 5, created.text


def test_a_misspelled_flow_field_is_refused_and_no_flow_is_made(http: httpx.Client) -> None:
    before = _count(http, "flows")
    unknown_field(http.post("/v1/flows", json={"nam": "x", "flow": _flow()}), ("nam", "name"))
    assert _count(http, "flows") == before


def test_misspelled_tool_fields_top_level_and_nested_are_refused_and_nothing_is_stored(http: httpx.Client) -> None:
    before = _count(http, "tools")
    tool = _tool()
    del tool["http"]
    unknown_field(http.post("/v1/tools", json={**tool, "pythn": {}}), ("pythn", "python"))
    unknown_field(http.post("/tools", json={**tool, "http": {"urll": TOOL_URL}}), ("http.urll", "http.url"))
    assert _count(http, "tools") == before

    # UpdateTool's body is the tool (`body: "tool"`): the path is the request's, tool.http.urll.
    tool_id = f"t-{uuid.uuid4().hex[:8]}"
    created = http.post("/v1/tools", json={"tool_id": tool_id, **_tool()})
    assert created.status_code == 200, created.text
    r = http.patch(f"/v1/tools/{tool_id}", json={"description": "new", "http": {"urll": TOOL_URL + "/v2"}})
    unknown_field(r, ("tool.http.urll", "tool.http.url"))
    assert http.get(f"/v1/tools/{tool_id}").json()["tool"] == created.json()["tool"]


def test_misspelled_message_and_input_fields_are_refused_and_the_chat_is_untouched(http: httpx.Client) -> None:
    flow = http.post("/v1/flows", json={"name": "f", "flow": _flow()}).json()["flow"]
    chat = http.post("/v1/chats", json={"from_type": "flow", "from_flow": flow["id"]}).json()["chat"]
    unknown_field(http.post(f"/v1/chats/{chat['id']}/messages", json={"mesage": "hi"}), ("mesage", "message"))
    unknown_field(
        http.post(f"/v1/chats/{chat['id']}/input", json={"tool_results": [{"call_id": "c", "contnt": "x"}]}),
        ("tool_results[0].contnt", "tool_results[0].content"),
    )
    unknown_field(http.post(f"/v1/chats/{chat['id']}:cancel", json={"reason": "bored"}), ("reason", ""))
    assert http.get(f"/v1/chats/{chat['id']}/messages").json()["messages"] == []
    assert http.get(f"/v1/chats/{chat['id']}").json()["chat"]["status"] == "ready"


def test_what_the_transcoder_accepts_is_still_accepted(http: httpx.Client) -> None:
    # lowerCamelCase JSON names beside proto names; an enum as its name and as its number; null for defaults.
    flow = http.post("/v1/flows", json={"name": "f", "flow": _flow(), "requestId": None}).json()["flow"]
    for action in ("HUMAN_INPUT_TIMEOUT_ACTION_END_RUN", 2):
        body = {
            "fromType": "flow",
            "from_flow": flow["id"],
            "maxAgentTurns": 7,
            "humanInputTimeout": "30s",
            "human_input_timeout_action": action,
        }
        r = http.post("/v1/chats", json=body)
        assert r.status_code == 200, r.text
        chat = r.json()["chat"]
        assert (
            chat["max_agent_turns"] == 7 and chat["human_input_timeout_action"] == "HUMAN_INPUT_TIMEOUT_ACTION_END_RUN"
        )
    # Inside a Struct (the flow graph, a tool's JSON Schema) and a map (headers) any key is data, not a field.
    graph = _flow()
    graph["nodes"][1]["data"]["an_agentok_studio_extra"] = {"whatever": [1, {"nested": True}]}
    assert http.post("/v1/flows", json={"name": "extras", "flow": graph}).status_code == 200
    tool = _tool(parameters={"type": "object", "properties": {"q": {"type": "string"}}, "x-ui": {"order": 1}})
    tool["http"]["headers"] = {"X-Anything-Goes": "v"}
    assert http.post("/v1/tools", json=tool).status_code == 200


def test_a_body_that_is_not_json_is_still_the_transcoders_to_refuse(http: httpx.Client) -> None:
    r = http.post("/v1/chats", content=b'{"max_agent_turn": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert next(d for d in r.json()["details"] if d["@type"].endswith("ErrorInfo"))["reason"] == "INVALID_JSON"


def test_a_large_body_is_checked_too(http: httpx.Client) -> None:
    # Over body_check's THREAD_THRESHOLD (256 KiB): parsed in a worker thread, with the same answer.
    graph = _flow()
    graph["nodes"][0]["data"]["notes"] = "n" * 600_000
    before = _count(http, "flows")
    unknown_field(http.post("/v1/flows", json={"name": "big", "flow": graph, "descripton": "x"}), ("descripton", ""))
    assert _count(http, "flows") == before
    assert http.post("/v1/flows", json={"name": "big", "flow": graph}).status_code == 200


def test_credentials_are_checked_before_the_body(stack: Stack) -> None:
    r = httpx.post(f"{stack.rest_url}/v1/chats", json={"max_agent_turn": 5}, timeout=30)
    assert r.status_code == 401 and r.json()["code"] == 16, r.text


def test_native_grpc_is_untouched(stack: Stack, keys: Keys) -> None:
    client = Grpc(stack.edge_target, keys.alice)
    try:
        flow_id = client.create_flow(_flow())
        request = chat_service_pb2.CreateChatRequest(from_type="flow", from_flow=flow_id, max_agent_turns=3)
        assert client.chats.CreateChat(request, metadata=client.metadata, timeout=10).chat.max_agent_turns == 3
        with pytest.raises(grpc.RpcError) as err:
            client.channel.unary_unary("/agentok.v1.ChatService/GetChat")(
                b"\xff\xff\xff", metadata=client.metadata, timeout=10
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # the server's own decoding, as before
    finally:
        client.close()
