"""Stopping runs, budgets and deadlines, and idempotent writes, through the real Envoy."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from agentok.v1 import flow_service_pb2

from ..conftest import Keys
from ..support.api import Grpc, Rest, error_reason, real_flow, two_agent_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm
from ..support.stack import Stack


@pytest.fixture()
def rest(stack: Stack, keys: Keys) -> Rest:
    return Rest(stack.rest_url, keys.alice)


def _chat(rest: Rest, flow: dict, **body: object) -> dict:
    flow_id = rest.create_flow(flow)["id"]
    r = rest.http.post("/chats", json={"name": "c", "from_type": "flow", "from_flow": flow_id, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_cancel_stops_a_run_mid_model_call(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model("slow-30")
    chat = _chat(rest, with_model(real_flow("14"), model))
    sent = rest.send(chat["id"], "hello")
    fake_llm.wait_for_requests(model, 1)  # the model call is in flight: the fake holds it for 30 s
    r = rest.http.post(f"/chats/{chat['id']}/abort", json={})
    assert r.status_code == 200, r.text
    assert r.json()["chat"]["status"] == "ready"
    events = rest.wait_status(chat["id"], int(sent["last_seq"]), {"ready"})
    note = [e["message_added"] for e in events if "message_added" in e][-1]
    assert note["type"] == "system" and "cancelled" in note["content"]
    assert rest.chat(chat["id"])["status"] == "ready"
    # The server dropped the call itself (the fake saw the connection close), and did not make it again.
    fake_llm.wait_for_hangup(model)
    assert len(fake_llm.requests_for(model)) == 1
    assert [m["content"] for m in rest.messages(chat["id"])] == ["hello", note["content"]]
    # Nothing is running now: a second cancel is refused, and a new message starts a new run.
    again = rest.http.post(f"/chats/{chat['id']}:cancel", json={})
    assert again.status_code == 400 and error_reason(again.json()) == "CHAT_NOT_RUNNING"
    assert rest.http.post(f"/chats/{chat['id']}/messages", json={"message": "again"}).status_code == 200
    assert rest.http.post(f"/chats/{chat['id']}:cancel", json={}).status_code == 200


def test_cancel_a_waiting_chat(rest: Rest) -> None:
    chat = _chat(rest, with_model(real_flow("13"), "m"))
    sent = rest.send(chat["id"], "hi")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})
    assert rest.http.post(f"/v1/chats/{chat['id']}:cancel", json={}).json()["chat"]["status"] == "ready"
    r = rest.http.post(f"/chats/{chat['id']}/input", json={"message": "late"})
    assert r.status_code == 400 and error_reason(r.json()) == "CHAT_NOT_WAITING"


def test_the_agent_turn_budget_ends_a_run(rest: Rest) -> None:
    flow = two_agent_flow(
        a={"human_input_mode": "NEVER", "default_auto_reply": "A"},
        b={"disable_llm": True, "default_auto_reply": "B"},
    )
    chat = _chat(rest, flow, max_agent_turns=3)
    assert chat["max_agent_turns"] == 3
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed"})
    messages = rest.messages(chat["id"])
    assert [m["content"] for m in messages[:4]] == ["hello", "B", "A", "B"]
    assert messages[-1]["type"] == "system" and "budget of 3 agent turns" in messages[-1]["content"]
    assert len(messages) == 5


def test_a_persons_answers_do_not_use_up_the_agent_turn_budget(rest: Rest) -> None:
    flow = two_agent_flow(
        a={"human_input_mode": "ALWAYS"},
        b={"disable_llm": True, "default_auto_reply": "B"},
        edge={"max_turns": 5},
    )
    chat = _chat(rest, flow, max_agent_turns=2)
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})
    for answer in ("typed one", "typed two"):
        answered = rest.input(chat["id"], answer)
        rest.wait_status(chat["id"], int(answered["last_seq"]), {"wait_for_human_input", "completed"})
    assert rest.chat(chat["id"])["status"] == "completed"
    said = [(m["type"], m["content"]) for m in rest.messages(chat["id"])]
    # Two agent turns (B, B); the person's two answers are not turns: the budget ends the run before a third B.
    assert said[:5] == [
        ("user", "hello"),
        ("assistant", "B"),
        ("user", "typed one"),
        ("assistant", "B"),
        ("user", "typed two"),
    ]
    assert said[5][0] == "system" and "budget of 2 agent turns" in said[5][1] and len(said) == 6


def test_a_question_nobody_answers_takes_the_empty_reply(rest: Rest) -> None:
    flow = two_agent_flow(
        a={"human_input_mode": "ALWAYS", "default_auto_reply": "auto-A"},
        b={"disable_llm": True, "default_auto_reply": "B"},
        edge={"max_turns": 2},
    )
    chat = _chat(rest, flow, human_input_timeout="0.5s", human_input_timeout_action="HUMAN_INPUT_TIMEOUT_ACTION_SKIP")
    assert chat["human_input_timeout"] == "0.500s"
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed"})
    contents = [(m["type"], m["content"]) for m in rest.messages(chat["id"])]
    assert contents[:2] == [("user", "hello"), ("assistant", "B")]
    assert contents[2][0] == "system" and "empty reply" in contents[2][1]
    assert contents[3:] == [("user", "auto-A"), ("assistant", "B")]


def test_a_question_nobody_answers_can_end_the_run(rest: Rest) -> None:
    flow = two_agent_flow(a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": "B"})
    chat = _chat(
        rest, flow, human_input_timeout="0.5s", human_input_timeout_action="HUMAN_INPUT_TIMEOUT_ACTION_END_RUN"
    )
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed"})
    last = rest.messages(chat["id"])[-1]
    assert last["type"] == "system" and "nobody answered" in last["content"]


def test_bad_budgets_are_refused(rest: Rest) -> None:
    flow_id = rest.create_flow(with_model(real_flow("14"), "m"))["id"]
    for body, field in (({"max_agent_turns": -1}, "max_agent_turns"), ({"human_input_timeout": "-1s"}, "timeout")):
        r = rest.http.post("/chats", json={"name": "c", "from_type": "flow", "from_flow": flow_id, **body})
        assert r.status_code == 400 and field in r.json()["message"], r.text


def test_retried_writes_with_a_request_id_happen_once(rest: Rest) -> None:
    flow_id = rest.create_flow(with_model(real_flow("13"), "m"))["id"]
    body = {"name": "once", "from_type": "flow", "from_flow": flow_id, "request_id": "create-1"}
    first = rest.http.post("/chats", json=body).json()
    # The response was "lost": the client retries the same request.
    retry = rest.http.post("/chats", json=body).json()
    assert retry == first
    assert [c["id"] for c in rest.chats()].count(first["id"]) == 1

    msg = {"message": "hi", "request_id": "send-1"}
    # Through /v1, whose answer carries the stored message: the retry's is the first one's.
    sent = rest.http.post(f"/v1/chats/{first['id']}/messages", json=msg).json()
    resent = rest.http.post(f"/v1/chats/{first['id']}/messages", json=msg)
    assert resent.status_code == 200 and resent.json()["message"]["id"] == sent["message"]["id"]
    rest.wait_status(first["id"], int(sent["chat"]["last_seq"]), {"wait_for_human_input"})

    answer = {"message": "more", "request_id": "input-1"}
    answered = rest.http.post(f"/chats/{first['id']}/input", json=answer).json()
    rest.wait_status(first["id"], int(answered["last_seq"]), {"wait_for_human_input"})
    again = rest.http.post(f"/chats/{first['id']}/input", json=answer)
    assert again.status_code == 200 and again.json() == answered
    contents = [m["content"] for m in rest.messages(first["id"])]
    assert contents.count("hi") == 1 and contents.count("more") == 1
    # A new request_id is a new request: the chat is waiting now, so this one is a new answer.
    assert (
        rest.http.post(f"/chats/{first['id']}/input", json={"message": "exit", "request_id": "input-2"}).status_code
        == 200
    )


def test_a_retried_create_flow_returns_the_first_flow_and_ids_are_per_owner(
    rest: Rest, stack: Stack, keys: Keys
) -> None:
    body = {"name": "retried", "flow": with_model(real_flow("13"), "m"), "request_id": "flow-1"}
    first = rest.http.post("/flows", json=body)
    assert first.status_code == 200, first.text
    flow = first.json()["flow"]
    # The response was "lost": the retry gets the same flow back, and no second one is stored.
    retry = rest.http.post("/flows", json=body)
    assert retry.status_code == 200 and retry.json()["flow"] == flow
    listed = rest.http.get("/flows", params={"page_size": 500}).json()["flows"]
    assert [f["name"] for f in listed].count("retried") == 1
    # The same request over native gRPC through Envoy is the same request: REST and gRPC forms compare equal.
    graph = struct_pb2.Struct()
    graph.update(body["flow"])
    client = Grpc(stack.edge_target, keys.alice)
    try:
        request = flow_service_pb2.CreateFlowRequest(name="retried", flow=graph, request_id="flow-1")
        assert client.flows.CreateFlow(request, metadata=client.metadata, timeout=10).flow.id == flow["id"]
    finally:
        client.close()
    # Another owner's request with the same id is another request: bob gets a flow of his own.
    bob = Rest(stack.rest_url, keys.bob)
    with bob.http:
        theirs = bob.http.post("/flows", json=body)
        assert theirs.status_code == 200, theirs.text
        assert theirs.json()["flow"]["id"] != flow["id"]
        assert rest.http.get(f"/flows/{theirs.json()['flow']['id']}").status_code == 404
        assert bob.http.get(f"/flows/{flow['id']}").status_code == 404
