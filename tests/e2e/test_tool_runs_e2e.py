"""Tools in runs, end to end through Envoy: Agentok's real flows 09 and 02 unchanged, with their Tavily tool
created under its upstream id as an http tool (a local server plays the search API); Agentok's Calculator as a
python tool; a client tool answered with SendInput; restarts (SIGKILL) after a result is stored and during a
call; cancel during a call. The fake model scripts the tool calls."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from ..support.api import Rest, error_reason, real_flow, two_agent_flow, unique_model
from ..support.fake_llm import FakeLlm, FakeLlmServer, tool_calls
from ..support.fake_tools import FakeTools
from ..support.sample_tools import CALCULATOR
from ..support.stack import Stack, create_key

TAVILY_ID = "172278707085517"
SECRET = "tvly-e2e-s3cr3t-4f1c"
SEARCH_PARAMS = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}


@pytest.fixture(scope="module")
def tool_server() -> Iterator[FakeTools]:
    server = FakeTools().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model() -> str:
    """The server's default model: the real flows carry no llm_config, so they use it."""
    return unique_model("tools")


@pytest.fixture(scope="module")
def tools_stack(
    tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer, tool_server: FakeTools, model: str
) -> Iterator[tuple[Stack, Rest]]:
    env = {
        "AGENTOK_EGRESS_ALLOWED_HOSTS": tool_server.host_port,
        "AGENTOK_CODE_EXECUTION_ENABLED": "true",
        "AGENTOK_LLM_MODEL": model,
    }
    stack = Stack(tmp_path_factory.mktemp("tools"), llm_server.base_url, extra_env=env).start()
    _, key = create_key(stack.env, "k", "tess")
    try:
        yield stack, Rest(stack.rest_url, key)
    finally:
        stack.stop()


@pytest.fixture()
def rest(tools_stack: tuple[Stack, Rest]) -> Rest:
    return tools_stack[1]


def create_tool(rest: Rest, body: dict[str, Any]) -> dict[str, Any]:
    r = rest.http.post("/tools", json=body)
    assert r.status_code == 200, r.text
    return r.json()["tool"]


@pytest.fixture(scope="module")
def tavily(tools_stack: tuple[Stack, Rest], tool_server: FakeTools) -> dict[str, Any]:
    """Agentok's Tavily tool under its upstream id, as an http tool."""
    _, rest = tools_stack
    return create_tool(
        rest,
        {
            "tool_id": TAVILY_ID,
            "name": "search",
            "description": "Search the web",
            "parameters": SEARCH_PARAMS,
            "http": {"url": tool_server.url("/search"), "headers": {"Authorization": f"Bearer {SECRET}"}},
        },
    )


def answer_until_done(rest: Rest, chat_id: str, answer: str = "", after_seq: int = 0) -> int:
    """Answers every question after `after_seq` with `answer` until the run ends; returns how many there were."""
    asked, seq = 0, after_seq
    while True:
        events = rest.wait_status(chat_id, seq, {"wait_for_human_input", "completed", "error"})
        seq = int(events[-1]["seq"])
        status = events[-1]["status_changed"]["status"]
        if status != "wait_for_human_input":
            assert status == "completed", events[-1]
            return asked
        asked += 1
        rest.input(chat_id, answer)


def test_flow_09_unchanged_runs_with_its_tool_and_a_person_answering(
    tools_stack: tuple[Stack, Rest], tavily: dict[str, Any], tool_server: FakeTools, fake_llm: FakeLlm, model: str
) -> None:
    stack, rest = tools_stack
    flow = rest.create_flow(real_flow("09"))
    assert any("node-level tools" in w for w in flow["warnings"])
    chat = rest.create_chat(flow["id"])
    before = len(fake_llm.requests_for(model))
    fake_llm.script(model, [tool_calls(("call_09", "search", {"question": "today"})), "a poem", "b", "c", "d"])
    rest.send(chat["id"], "Write a poem about today's news")
    assert answer_until_done(rest, chat["id"]) == 4  # User ALWAYS: asked before each of its turns 2-5

    messages = rest.messages(chat["id"])
    proposal, result = messages[1], messages[2]
    assert proposal["sender"] == "Assistant" and proposal["receiver"] == "User"
    assert proposal["tool_calls"] == [
        {"call_id": "call_09", "name": "search", "arguments": json.dumps({"question": "today"})}
    ]
    assert result["type"] == "tool" and result["sender"] == "User"
    assert result["tool_responses"] == [
        {"call_id": "call_09", "content": '{"results": ["news about today"]}', "is_error": False}
    ]
    # The tool's API saw the call once, with its key, the call id as Idempotency-Key, and what the model asked.
    (seen,) = tool_server.for_call("call_09")
    assert seen.headers["authorization"] == f"Bearer {SECRET}"
    assert seen.body == {"arguments": {"question": "today"}, "call_id": "call_09", "chat_id": chat["id"]}
    # The Assistant's model was offered the tool, and then read its result as a `tool` message.
    requests = fake_llm.requests_for(model)[before:]
    assert requests[0]["tools"] == [
        {
            "type": "function",
            "function": {"name": "search", "description": "Search the web", "parameters": SEARCH_PARAMS},
        }
    ]
    assert requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_09",
        "content": '{"results": ["news about today"]}',
    }
    # The header's value is a secret: not in what the API returns, nor in the server's log.
    assert SECRET not in rest.http.get(f"/tools/{TAVILY_ID}").text
    assert SECRET not in rest.http.get("/tools").text
    assert SECRET not in (stack.root / "server.log").read_text()


def test_flow_02_unchanged_runs_to_its_termination_message(
    rest: Rest, tavily: dict[str, Any], fake_llm: FakeLlm, model: str
) -> None:
    chat = rest.create_chat(rest.create_flow(real_flow("02"))["id"])
    fake_llm.script(model, [tool_calls(("call_02", "search", {"question": "x"})), "Here is a poem", "Done. TERMINATE"])
    rest.send(chat["id"], "Write a poem")
    assert answer_until_done(rest, chat["id"]) == 0  # User NEVER
    assert [(m["sender"], m["type"]) for m in rest.messages(chat["id"])] == [
        ("User", "user"),
        ("Assistant", "assistant"),
        ("User", "tool"),
        ("Assistant", "assistant"),
        ("User", "user"),
        ("Assistant", "assistant"),
    ]


def test_flow_08_is_accepted_once_its_tool_exists(rest: Rest, tavily: dict[str, Any]) -> None:
    flow = rest.create_flow(real_flow("08"))
    assert any("which is not an agent" in w for w in flow["warnings"])


def test_a_flow_naming_a_tool_that_does_not_exist_is_refused(rest: Rest) -> None:
    r = rest.http.post("/flows", json={"name": "f", "flow": two_agent_flow(edge={"tools": ["no-such-tool"]})})
    assert r.status_code == 400, r.text
    assert error_reason(r.json()) == "TOOL_NOT_FOUND"
    assert "edge 'e1' binds tool 'no-such-tool', which does not exist" in r.json()["message"]


def test_the_calculator_sample_runs_as_a_python_tool(rest: Rest, fake_llm: FakeLlm) -> None:
    tool = create_tool(rest, {"tool_id": "1", "python": {"code": CALCULATOR}})
    # Name, description and parameters default to what the function says.
    assert tool["name"] == "calculator"
    assert tool["parameters"]["properties"]["operator"]["enum"] == ["+", "-", "*", "/"]
    assert sorted(tool["parameters"]["required"]) == ["a", "b", "operator"]
    calc_model = unique_model("calc")
    flow = two_agent_flow(a={"human_input_mode": "NEVER", "max_consecutive_auto_reply": 2}, edge={"tools": [1]})
    flow["llm_config"] = {"model": calc_model}
    fake_llm.script(
        calc_model,
        [
            tool_calls(("c1", "calculator", {"a": 7, "b": 2, "operator": "/"})),
            tool_calls(("c2", "calculator", {"a": 7, "b": 0, "operator": "/"})),
            "done",
        ],
    )
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    rest.send(chat["id"], "7/2 and 7/0?")
    answer_until_done(rest, chat["id"])
    results = [m["tool_responses"][0] for m in rest.messages(chat["id"]) if m["type"] == "tool"]
    assert results == [
        {"call_id": "c1", "content": "3", "is_error": False},
        {"call_id": "c2", "content": "Error: division by zero", "is_error": True},
    ]


def test_a_client_tool_is_answered_by_the_callers_backend(rest: Rest, fake_llm: FakeLlm) -> None:
    create_tool(rest, {"tool_id": "lookup", "name": "lookup", "parameters": {"type": "object"}, "client": {}})
    client_model = unique_model("client")
    flow = two_agent_flow(a={"human_input_mode": "NEVER", "max_consecutive_auto_reply": 1}, edge={"tools": ["lookup"]})
    flow["llm_config"] = {"model": client_model}
    fake_llm.script(client_model, [tool_calls(("c9", "lookup", {"q": "order 17"})), "thanks"])
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    rest.send(chat["id"], "where is order 17?")
    events = rest.wait_status(chat["id"], 0, {"wait_for_human_input", "completed", "error"})
    waiting = events[-1]["status_changed"]
    assert waiting["status"] == "wait_for_human_input"
    pending = [{"call_id": "c9", "name": "lookup", "arguments": json.dumps({"q": "order 17"})}]
    assert waiting["pending_tool_calls"] == pending
    assert rest.chat(chat["id"])["pending_tool_calls"] == pending

    wrong = rest.http.post(f"/chats/{chat['id']}/input", json={"tool_results": [{"call_id": "c8", "content": "x"}]})
    assert wrong.status_code == 400 and error_reason(wrong.json()) == "TOOL_CALL_NOT_PENDING", wrong.text
    text = rest.http.post(f"/chats/{chat['id']}/input", json={"message": "hello"})
    assert text.status_code == 400 and error_reason(text.json()) == "CHAT_WAITING_FOR_TOOL_RESULTS", text.text
    answered = rest.http.post(
        f"/chats/{chat['id']}/input", json={"tool_results": [{"call_id": "c9", "content": "shipped"}]}
    )
    assert answered.status_code == 200, answered.text
    answer_until_done(rest, chat["id"], after_seq=int(answered.json()["last_seq"]))
    tool_message = next(m for m in rest.messages(chat["id"]) if m["type"] == "tool")
    assert tool_message["tool_responses"] == [{"call_id": "c9", "content": "shipped", "is_error": False}]
    again = rest.http.post(f"/chats/{chat['id']}/input", json={"tool_results": [{"call_id": "c9", "content": "x"}]})
    assert again.status_code == 400 and error_reason(again.json()) == "TOOL_CALL_NOT_PENDING", again.text


def http_tool_chat(rest: Rest, fake_llm: FakeLlm, call_id: str, *, ask: bool) -> str:
    """A chat whose user proxy runs Tavily; with `ask`, a person is asked after each tool result."""
    m = unique_model("kill")
    mode = "ALWAYS" if ask else "NEVER"
    flow = two_agent_flow(a={"human_input_mode": mode, "max_consecutive_auto_reply": 1}, edge={"tools": [TAVILY_ID]})
    flow["llm_config"] = {"model": m}
    fake_llm.script(m, [tool_calls((call_id, "search", {"question": call_id})), "noted"])
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    rest.send(chat["id"], "search")
    return str(chat["id"])


def test_sigkill_after_the_result_is_stored_never_calls_the_tool_again(
    tools_stack: tuple[Stack, Rest], tavily: dict[str, Any], tool_server: FakeTools, fake_llm: FakeLlm
) -> None:
    stack, rest = tools_stack
    chat_id = http_tool_chat(rest, fake_llm, "call_stored", ask=True)
    # The person is asked first (ALWAYS): an empty answer lets the call run; then the model answers and the
    # person is asked again, with the result stored.
    events = rest.wait_status(chat_id, 0, {"wait_for_human_input"})
    rest.input(chat_id, "")
    rest.wait_status(chat_id, int(events[-1]["seq"]), {"wait_for_human_input"})
    assert any(m["type"] == "tool" for m in rest.messages(chat_id))

    stack.server.stop(signal.SIGKILL)
    stack.server.start()
    rest.input(chat_id, "exit")
    assert rest.wait_status(chat_id, 0, {"completed", "error"})[-1]["status_changed"]["status"] == "completed"
    assert len(tool_server.for_call("call_stored")) == 1
    assert [m["type"] for m in rest.messages(chat_id)].count("tool") == 1


def test_sigkill_during_the_call_makes_it_again_with_the_same_key(
    tools_stack: tuple[Stack, Rest], tavily: dict[str, Any], tool_server: FakeTools, fake_llm: FakeLlm
) -> None:
    stack, rest = tools_stack
    tool_server.stall()
    try:
        seen = len(tool_server.requests)
        chat_id = http_tool_chat(rest, fake_llm, "call_inflight", ask=False)
        tool_server.wait_for_requests(seen + 1)
        stack.server.stop(signal.SIGKILL)
        tool_server.release()
        stack.server.start()
    finally:
        tool_server.release()
    assert rest.wait_status(chat_id, 0, {"completed", "error"})[-1]["status_changed"]["status"] == "completed"
    # At least once, with a stable key: the call cut by the kill, then the same call again after the restart.
    calls = tool_server.for_call("call_inflight")
    assert len(calls) == 2
    assert {json.dumps(c.body, sort_keys=True) for c in calls} == {json.dumps(calls[0].body, sort_keys=True)}
    assert [m["type"] for m in rest.messages(chat_id)].count("tool") == 1


def test_cancel_stops_a_tool_call_in_flight(
    rest: Rest, tavily: dict[str, Any], tool_server: FakeTools, fake_llm: FakeLlm
) -> None:
    tool_server.stall()
    try:
        seen, hangups = len(tool_server.requests), tool_server.hangups
        chat_id = http_tool_chat(rest, fake_llm, "call_cancelled", ask=False)
        tool_server.wait_for_requests(seen + 1)
        r = rest.http.post(f"/chats/{chat_id}/abort", json={})
        assert r.status_code == 200, r.text
        tool_server.wait_for_hangup_after(hangups)
    finally:
        tool_server.release()
    assert rest.chat(chat_id)["status"] == "ready"
    assert not any(m["type"] == "tool" for m in rest.messages(chat_id))
