"""The seed's REST API end to end: real Envoy (transcoding + ext_authz) in front of the real server."""

from __future__ import annotations

import httpx
import pytest

from ..conftest import Keys
from ..support.api import Rest, error_reason, real_flow, two_agent_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm
from ..support.stack import Stack


@pytest.fixture()
def rest(stack: Stack, keys: Keys) -> Rest:
    return Rest(stack.rest_url, keys.alice)


def test_seed_six_steps_in_order(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, ["Hi! How can I help?"])
    flow = rest.create_flow(with_model(real_flow("13"), model), name="always ask")

    # Step 1: create the chatbot.
    chat = rest.create_chat(flow["id"], name="My Chatbot")
    assert chat["status"] == "ready" and chat["name"] == "My Chatbot" and chat["from_flow"] == flow["id"]
    assert chat["from_type"] == "flow" and chat["created_at"] and chat["updated_at"]

    # Step 2: send a message (the seed writes this path with a /v1 prefix).
    r = rest.http.post(f"/v1/chats/{chat['id']}/messages", json={"message": "Hello, Agentok Studio!"})
    assert r.status_code == 200, r.text
    sent = r.json()
    assert sent["chat"]["status"] == "running"
    assert sent["message"]["content"] == "Hello, Agentok Studio!" and sent["message"]["type"] == "user"

    # Step 3: the status moves on to waiting for the person (the user proxy asks ALWAYS).
    rest.wait_status(chat["id"], int(sent["chat"]["last_seq"]), {"wait_for_human_input", "error"})
    status = rest.chat(chat["id"])
    assert status["status"] == "wait_for_human_input"
    assert status["input_prompt"].startswith("Replying as UserProxy. Provide feedback to Assistant.")

    # Step 4: the history so far, in order.
    history = rest.messages(chat["id"])
    assert [(m["sender"], m["type"], m["content"]) for m in history] == [
        ("UserProxy", "user", "Hello, Agentok Studio!"),
        ("Assistant", "assistant", "Hi! How can I help?"),
    ]
    assert [int(m["seq"]) for m in history] == sorted(int(m["seq"]) for m in history)

    # Step 5: answer the waiting chat; "exit" ends the conversation (AutoGen's meaning).
    answered = rest.input(chat["id"], "exit")
    assert answered["status"] == "running"
    rest.wait_status(chat["id"], int(answered["last_seq"]), {"completed", "error"})
    assert rest.chat(chat["id"])["status"] == "completed"

    # Step 6: delete it; it is gone with its messages.
    r = rest.http.delete(f"/chats/{chat['id']}")
    assert r.status_code == 200 and r.json() == {}
    assert rest.http.get(f"/chats/{chat['id']}").status_code == 404
    assert rest.http.get(f"/chats/{chat['id']}/messages").status_code == 404


def test_human_input_round_trip(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, ["first answer", "second answer"])
    flow = rest.create_flow(with_model(real_flow("13"), model))
    chat = rest.create_chat(flow["id"])
    sent = rest.send(chat["id"], "question")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})

    chat_now = rest.input(chat["id"], "tell me more")
    events = rest.wait_status(chat["id"], int(chat_now["last_seq"]), {"wait_for_human_input"})
    added = [e["message_added"] for e in events if "message_added" in e]
    assert [(m["sender"], m["type"], m["content"]) for m in added] == [
        ("UserProxy", "user", "tell me more"),
        ("Assistant", "assistant", "second answer"),
    ]
    # The model saw the whole conversation, the person's answer included, from the assistant's side.
    last_request = fake_llm.requests_for(model)[-1]["messages"]
    assert [(m["role"], m["content"]) for m in last_request[-3:]] == [
        ("user", "question"),
        ("assistant", "first answer"),
        ("user", "tell me more"),
    ]

    # An empty answer skips: the user proxy auto-replies (no model, so AutoGen's empty reply).
    chat_now = rest.input(chat["id"], "")
    events = rest.wait_status(chat["id"], int(chat_now["last_seq"]), {"wait_for_human_input"})
    added = [e["message_added"] for e in events if "message_added" in e]
    assert [(m["sender"], m["content"]) for m in added][0] == ("UserProxy", "")

    done = rest.input(chat["id"], "exit")
    rest.wait_status(chat["id"], int(done["last_seq"]), {"completed"})

    # A completed chat starts a new conversation on the next message.
    again = rest.send(chat["id"], "new topic")
    assert again["status"] == "running"
    rest.wait_status(chat["id"], int(again["last_seq"]), {"wait_for_human_input"})


def test_fixed_reply_agents_complete_without_a_model(rest: Rest, fake_llm: FakeLlm) -> None:
    flow = two_agent_flow(
        a={"human_input_mode": "NEVER", "max_consecutive_auto_reply": 2, "default_auto_reply": "A"},
        b={"disable_llm": True, "default_auto_reply": "B", "max_consecutive_auto_reply": 2},
    )
    created = rest.create_flow(flow)
    chat = rest.create_chat(created["id"])
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error"})
    assert rest.chat(chat["id"])["status"] == "completed"
    # AutoGen's observed sequence for mcar=2 on both sides: hello, B, A, B, A.
    assert [m["content"] for m in rest.messages(chat["id"])] == ["hello", "B", "A", "B", "A"]


def test_run_ends_in_error_when_the_model_endpoint_is_down(rest: Rest) -> None:
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
    flow = rest.create_flow(with_model(real_flow("01"), "gpt-test", base_url=dead))
    chat = rest.create_chat(flow["id"])
    sent = rest.send(chat["id"], "hello")
    events = rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error"})
    assert events[-1]["status_changed"]["status"] == "error"
    failed = rest.chat(chat["id"])
    assert failed["status"] == "error"
    assert "127.0.0.1:9" in failed["error"] and "unreachable" in failed["error"]
    # A chat in error accepts a new message (a new run), which is rejected only while running.
    assert rest.http.post(f"/chats/{chat['id']}/messages", json={"message": "again"}).status_code == 200


def test_model_http_failure_and_malformed_reply_end_in_error(rest: Rest) -> None:
    for model, expected in (("fail-503", "HTTP 503"), ("malformed", "malformed")):
        flow = rest.create_flow(with_model(real_flow("14"), model))
        chat = rest.create_chat(flow["id"])
        sent = rest.send(chat["id"], "hello")
        rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error"})
        failed = rest.chat(chat["id"])
        assert failed["status"] == "error" and expected in failed["error"], failed


def test_flow_paths(rest: Rest, stack: Stack, keys: Keys) -> None:
    created = rest.create_flow(with_model(real_flow("01"), "m"), name="listed")
    assert created["warnings"] and "code execution" in created["warnings"][0]
    got = rest.http.get(f"/flows/{created['id']}")
    assert got.status_code == 200 and got.json()["flow"]["name"] == "listed"
    assert got.json()["flow"]["flow"]["nodes"][0]["id"] == "1001"
    listed = rest.http.get("/flows", params={"page_size": 500}).json()["flows"]
    assert created["id"] in [f["id"] for f in listed]
    assert rest.http.delete(f"/flows/{created['id']}").status_code == 200
    assert rest.http.get(f"/flows/{created['id']}").status_code == 404
    assert rest.http.delete(f"/flows/{created['id']}").status_code == 404


def test_list_chats_paginates_newest_first(stack: Stack) -> None:
    from ..support.stack import create_key

    _, key = create_key(stack.env, "pager", "pager-owner")
    rest = Rest(stack.rest_url, key)
    flow = rest.create_flow(with_model(real_flow("14"), "m"))
    ids = [rest.create_chat(flow["id"], name=f"c{i}")["id"] for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = rest.http.get("/v1/chats", params={"page_size": 2, "page_token": token}).json()
        assert len(page["chats"]) <= 2
        seen += [c["id"] for c in page["chats"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == list(reversed(ids))
    # The default page holds them all; the seed's path (a bare array, test_agentok_bodies.py) and /v1 agree.
    assert [c["id"] for c in rest.http.get("/chats").json()] == seen


def test_watch_over_sse(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, ["TERMINATE"])
    flow = rest.create_flow(with_model(real_flow("14"), model))
    chat = rest.create_chat(flow["id"])
    with rest.http.stream("GET", f"/chats/{chat['id']}/watch") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        sent = rest.send_v1(chat["id"], "hello")
        seen = []
        for line in r.iter_lines():
            if line.startswith("data:"):
                import json

                event = json.loads(line.removeprefix("data:"))["event"]
                if "keep_alive" in event:
                    continue
                seen.append(event)
                if event.get("status_changed", {}).get("status") == "completed":
                    break
    seqs = [int(e["seq"]) for e in seen]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free, in order
    assert seen[0]["status_changed"]["status"] == "running"
    assert seen[1]["message_added"]["id"] == sent["message"]["id"]
    assert seen[2]["message_added"]["content"] == "TERMINATE"

    # Resume from the middle: only what came after is replayed.
    events = rest.wait_status(chat["id"], 2, {"completed"})
    assert [int(e["seq"]) for e in events] == seqs[2:]


def test_watch_sends_keep_alives_and_a_final_event_on_delete(rest: Rest) -> None:
    import json

    flow = rest.create_flow(with_model(real_flow("14"), "m"))
    chat = rest.create_chat(flow["id"])
    kinds: list[str] = []
    with rest.http.stream("GET", f"/chats/{chat['id']}/watch") as r:
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line.removeprefix("data:"))["event"]
            kind = next(k for k in ("keep_alive", "chat_deleted", "status_changed", "message_added") if k in event)
            kinds.append(kind)
            if kind == "keep_alive" and len(kinds) == 1:
                # The stream is quiet (the server sends a keep-alive every second in tests): delete now.
                other = httpx.delete(f"{rest.http.base_url}/chats/{chat['id']}", headers=rest.http.headers)
                assert other.status_code == 200
    assert kinds[0] == "keep_alive" and kinds[-1] == "chat_deleted"


class TestBadInput:
    def test_malformed_json(self, rest: Rest) -> None:
        r = rest.http.post("/chats", content=b'{"name": "x", ', headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["code"] == 3 and r.json()["message"]  # INVALID_ARGUMENT, as the server's own errors

    def test_missing_message_stores_nothing(self, rest: Rest) -> None:
        flow = rest.create_flow(with_model(real_flow("14"), "m"))
        chat = rest.create_chat(flow["id"])
        r = rest.http.post(f"/chats/{chat['id']}/messages", json={})
        assert r.status_code == 400
        body = r.json()
        assert "message" in body["message"] and error_reason(body) == "INVALID_ARGUMENT"
        assert rest.messages(chat["id"]) == [] and rest.chat(chat["id"])["status"] == "ready"

    def test_unknown_chat(self, rest: Rest) -> None:
        for method, path, body in (
            ("GET", "/chats/nope", None),
            ("DELETE", "/chats/nope", None),
            ("GET", "/chats/nope/messages", None),
            ("POST", "/chats/nope/messages", {"message": "x"}),
            ("POST", "/chats/nope/input", {"message": "x"}),
            ("GET", "/chats/nope/watch", None),
        ):
            r = rest.http.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert error_reason(r.json()) == "CHAT_NOT_FOUND" and "nope" in r.json()["message"]

    def test_unknown_flow(self, rest: Rest) -> None:
        r = rest.http.post("/chats", json={"name": "x", "from_type": "flow", "from_flow": "missing"})
        assert r.status_code == 404 and error_reason(r.json()) == "FLOW_NOT_FOUND"
        r = rest.http.post("/chats", json={"name": "x", "from_type": "template", "from_flow": "missing"})
        assert r.status_code == 400 and "from_type" in r.json()["message"]

    def test_invalid_flow_names_the_offender(self, rest: Rest) -> None:
        before = len(rest.http.get("/flows", params={"page_size": 500}).json()["flows"])
        bad = two_agent_flow()
        bad["nodes"].append({"id": "x9", "type": "mystery", "data": {"name": "Odd"}})
        r = rest.http.post("/flows", json={"name": "bad", "flow": bad})
        assert r.status_code == 400
        body = r.json()
        assert "x9" in body["message"] and "mystery" in body["message"] and error_reason(body) == "INVALID_FLOW"
        violations = next(d for d in body["details"] if d["@type"].endswith("BadRequest"))["field_violations"]
        assert violations[0]["field"] == "flow.nodes[3].type"
        r = rest.http.post("/flows", json={"name": "no init", "flow": real_flow("10")})
        assert r.status_code == 400 and "no initializer" in r.json()["message"]
        assert len(rest.http.get("/flows", params={"page_size": 500}).json()["flows"]) == before

    def test_input_when_not_waiting_and_message_while_running(self, rest: Rest, fake_llm: FakeLlm) -> None:
        model = unique_model()
        fake_llm.script(model, ["answer"])
        flow = rest.create_flow(with_model(real_flow("13"), model))
        chat = rest.create_chat(flow["id"])
        r = rest.http.post(f"/chats/{chat['id']}/input", json={"message": "early"})
        assert r.status_code == 400 and error_reason(r.json()) == "CHAT_NOT_WAITING"
        sent = rest.send(chat["id"], "hello")
        rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})
        before = rest.messages(chat["id"])
        r = rest.http.post(f"/chats/{chat['id']}/messages", json={"message": "interrupt"})
        assert r.status_code == 400 and error_reason(r.json()) == "CHAT_WAITING_FOR_INPUT"
        assert "SendInput" in r.json()["message"]
        assert rest.messages(chat["id"]) == before
        assert rest.chat(chat["id"])["status"] == "wait_for_human_input"

    def test_message_while_running(self, rest: Rest) -> None:
        # A model that takes seconds keeps the run in `running` while we try to send again.
        flow = rest.create_flow(with_model(real_flow("14"), "slow-5"))
        chat = rest.create_chat(flow["id"])
        rest.send(chat["id"], "hello")
        r = rest.http.post(f"/chats/{chat['id']}/messages", json={"message": "again"})
        assert r.status_code == 400 and error_reason(r.json()) == "CHAT_RUNNING"
        assert [m["content"] for m in rest.messages(chat["id"])] == ["hello"]
        # Deleting stops the run in the middle of its model call.
        assert rest.http.delete(f"/chats/{chat['id']}").status_code == 200

    def test_input_without_message_field(self, rest: Rest) -> None:
        r = rest.http.post("/chats/whatever/input", json={})
        assert r.status_code == 400 and "message" in r.json()["message"]

    def test_bad_page_size_and_token(self, rest: Rest) -> None:
        assert rest.http.get("/chats", params={"page_size": -1}).status_code == 400
        r = rest.http.get("/chats", params={"page_token": "garbage!"})
        assert r.status_code == 400 and "page_token" in r.json()["message"]

    def test_unknown_path_and_query_parameter(self, rest: Rest) -> None:
        r = rest.http.get("/nothing-here")
        assert r.status_code == 404 and r.json()["code"] == 5
        r = rest.http.get("/chats", params={"colour": "red"})
        assert r.status_code == 400 and "colour" in r.json()["message"]
