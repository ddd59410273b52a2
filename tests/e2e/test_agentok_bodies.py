"""Agentok's bodies on the seed's unversioned paths (the bare chat, bare arrays, the next page token in the
X-Next-Page-Token header) beside /v1's envelopes, through the real Envoy (its Lua filter) and server."""

from __future__ import annotations

from typing import Any

from google.api import annotations_pb2

from agentok.v1 import api_key_service_pb2, chat_service_pb2, flow_service_pb2, tool_service_pb2

from ..conftest import Keys
from ..support.api import NEXT_PAGE_TOKEN, Grpc, Rest, two_agent_flow
from ..support.stack import Stack, create_key

# (verb, path) -> the response field printed alone: what the README's table says, and what Envoy's Lua
# filter (envoy/envoy.yaml.tmpl) does.
SEED_BODIES = {
    ("get", "/chats"): "chats",
    ("post", "/chats"): "chat",
    ("get", "/chats/{chat_id}"): "chat",
    ("get", "/chats/{chat_id}/messages"): "messages",
    ("post", "/chats/{chat_id}/messages"): "chat",
    ("post", "/chats/{chat_id}/input"): "chat",
}
# What the unwrapping must not be fooled by: quotes, brackets and backslashes inside strings.
AWKWARD = 'c "quoted" }{ ][ \\" \\\\ ,"next_page_token":"x"}'
REPLY = 'Hi "you" }{ ] \\ [ {"'
# A person asked every turn (ALWAYS), a fixed-reply agent (no model).
FIXED_REPLY = two_agent_flow(
    a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": REPLY}, b_type="conversable"
)


def _response_bodies() -> dict[tuple[str, str], str]:
    found = {}
    files = (chat_service_pb2, flow_service_pb2, tool_service_pb2, api_key_service_pb2)
    for service in (service for file in files for service in file.DESCRIPTOR.services_by_name.values()):
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            for binding in [rule, *rule.additional_bindings]:
                verb = binding.WhichOneof("pattern")
                if binding.response_body:
                    found[(verb, getattr(binding, verb))] = binding.response_body
    return found


def test_the_proto_gives_exactly_these_paths_a_response_body() -> None:
    assert _response_bodies() == SEED_BODIES


def _owner(stack: Stack, name: str) -> Rest:
    _, key = create_key(stack.env, name, name)
    return Rest(stack.rest_url, key)


def _awaiting(rest: Rest, chat_id: str, last_seq: str) -> None:
    rest.wait_status(chat_id, int(last_seq), {"wait_for_human_input"})


def test_each_seed_path_answers_the_bare_field_of_its_v1_twin(stack: Stack) -> None:
    rest = _owner(stack, "bodies-owner")
    flow = rest.create_flow(FIXED_REPLY)

    # Writes: the same request_id on both paths returns the first response, so the two bodies must agree.
    create = {"name": AWKWARD, "from_type": "flow", "from_flow": flow["id"], "request_id": "bodies-create"}
    bare = rest.http.post("/chats", json=create)
    assert bare.status_code == 200, bare.text
    chat = bare.json()
    assert chat["name"] == AWKWARD and chat["status"] == "ready"
    assert rest.http.post("/v1/chats", json=create).json() == {"chat": chat}

    send = {"message": AWKWARD, "request_id": "bodies-send"}
    running = rest.http.post(f"/chats/{chat['id']}/messages", json=send).json()
    enveloped = rest.http.post(f"/v1/chats/{chat['id']}/messages", json=send).json()
    assert running == enveloped["chat"] and running["status"] == "running"
    assert enveloped["message"]["content"] == AWKWARD and set(enveloped) == {"chat", "message"}
    _awaiting(rest, chat["id"], running["last_seq"])

    answer = {"message": "more", "request_id": "bodies-input"}
    answered = rest.http.post(f"/chats/{chat['id']}/input", json=answer).json()
    assert rest.http.post(f"/v1/chats/{chat['id']}/input", json=answer).json() == {"chat": answered}
    assert answered["status"] == "running"
    _awaiting(rest, chat["id"], answered["last_seq"])

    # Reads of the chat, now idle, waiting for its person.
    got = rest.http.get(f"/chats/{chat['id']}").json()
    assert got == rest.http.get(f"/v1/chats/{chat['id']}").json()["chat"]
    assert got["status"] == "wait_for_human_input" and got["name"] == AWKWARD

    listed = rest.http.get("/chats")
    assert listed.json() == [got] and NEXT_PAGE_TOKEN not in listed.headers
    assert rest.http.get("/v1/chats").json() == {"chats": [got], "next_page_token": ""}

    history = rest.http.get(f"/chats/{chat['id']}/messages")
    assert NEXT_PAGE_TOKEN not in history.headers
    assert history.json() == rest.http.get(f"/v1/chats/{chat['id']}/messages").json()["messages"]
    assert [m["content"] for m in history.json()] == [AWKWARD, REPLY, "more", REPLY]

    # Paths outside the seed's keep this service's envelopes; errors keep their one shape; DELETE is {}.
    assert set(rest.http.post(f"/chats/{chat['id']}/abort", json={}).json()) == {"chat"}
    assert set(rest.http.get(f"/flows/{flow['id']}").json()) == {"flow"}
    assert rest.http.delete(f"/chats/{chat['id']}").json() == {}
    missing = rest.http.get(f"/chats/{chat['id']}")
    assert missing.status_code == 404 and set(missing.json()) == {"code", "message", "details"}
    assert rest.http.get("/chats").json() == []


def test_a_client_pages_through_everything_with_the_header(stack: Stack) -> None:
    rest = _owner(stack, "header-pager")
    flow = rest.create_flow(FIXED_REPLY)
    ids = [rest.create_chat(flow["id"], name=f"c{i}")["id"] for i in range(5)]

    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"page_size": 2}
    while True:
        r = rest.http.get("/chats", params=params)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        token = r.headers.get(NEXT_PAGE_TOKEN)
        if token is None:
            break
        assert token  # never an empty header: absent means the end
        params["page_token"] = token
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [c["id"] for page in pages for c in page] == ids[::-1]  # newest first, each once
    assert rest.chats() == rest.http.get("/v1/chats").json()["chats"]

    # Messages the same way; a token from the header is the one /v1 gives in its body, good on either path.
    chat_id = ids[0]
    last = rest.send(chat_id, "one")["last_seq"]
    for answer in ("two", "three"):
        _awaiting(rest, chat_id, last)
        last = rest.input(chat_id, answer)["last_seq"]
    _awaiting(rest, chat_id, last)
    first = rest.http.get(f"/chats/{chat_id}/messages", params={"page_size": 4})
    v1_first = rest.http.get(f"/v1/chats/{chat_id}/messages", params={"page_size": 4}).json()
    assert first.json() == v1_first["messages"] and first.headers[NEXT_PAGE_TOKEN] == v1_first["next_page_token"]
    second = rest.http.get(
        f"/chats/{chat_id}/messages", params={"page_size": 4, "page_token": first.headers[NEXT_PAGE_TOKEN]}
    )
    assert NEXT_PAGE_TOKEN not in second.headers
    everything = first.json() + second.json()
    assert [m["content"] for m in everything][::2] == ["one", "two", "three"] and len(everything) == 6
    assert everything == rest.http.get(f"/v1/chats/{chat_id}/messages").json()["messages"] == rest.messages(chat_id)


def test_native_grpc_keeps_its_responses(stack: Stack, keys: Keys) -> None:
    rest = Rest(stack.rest_url, keys.alice)
    for i in range(2):
        rest.create_chat(rest.create_flow(FIXED_REPLY)["id"], name=f"grpc {i}")
    client = Grpc(stack.edge_target, keys.alice)
    try:
        listed, state = client.chats.ListChats.with_call(
            chat_service_pb2.ListChatsRequest(page_size=1), metadata=client.metadata, timeout=10
        )
        assert len(listed.chats) == 1 and listed.next_page_token
        assert NEXT_PAGE_TOKEN.lower() not in dict(state.initial_metadata())
        got = client.chats.GetChat(
            chat_service_pb2.GetChatRequest(chat_id=listed.chats[0].id), metadata=client.metadata, timeout=10
        )
        assert got.chat == listed.chats[0]
    finally:
        client.close()
