"""Chats from real Agentok Studio flows run end to end; no chat is left running after a server dies."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import Keys
from ..support.api import Rest, real_flow, two_agent_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm, FakeLlmServer
from ..support.stack import Stack, create_key


@pytest.fixture()
def rest(stack: Stack, keys: Keys) -> Rest:
    return Rest(stack.rest_url, keys.alice)


@pytest.mark.parametrize(
    ("name", "expected_first_speakers"),
    [
        ("01", ["User", "Assistant", "User"]),
        ("03", ["User", "Assistant", "User"]),
        ("14", ["User", "Assistant", "User"]),
    ],
)
def test_accepted_real_flows_run_to_completion(
    rest: Rest, fake_llm: FakeLlm, name: str, expected_first_speakers: list[str]
) -> None:
    model = unique_model(f"flow{name}")
    flow = rest.create_flow(with_model(real_flow(name), model), name=f"real {name}")
    chat = rest.create_chat(flow["id"])
    sent = rest.send(chat["id"], "What is the weather in Burnaby?")
    events = rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error"})
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    messages = rest.messages(chat["id"])
    assert [m["sender"] for m in messages[:3]] == expected_first_speakers
    assert len(fake_llm.requests_for(model)) >= 1
    # The model saw the flow's own system message first (03's assistant asks for TERMINATE).
    first_call = fake_llm.requests_for(model)[0]["messages"]
    assert first_call[0]["role"] == "system" and first_call[-1]["content"] == "What is the weather in Burnaby?"


def test_flow_01_ends_on_the_assistants_terminate(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, ["Sunny.", "Anything else? TERMINATE"])
    flow = rest.create_flow(with_model(real_flow("01"), model))
    chat = rest.create_chat(flow["id"])
    sent = rest.send(chat["id"], "weather?")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed"})
    # The user proxy (NEVER, no model) answers AutoGen's empty auto-reply, then stops at the termination
    # message: its termination_msg "TERMINATE" is a case-insensitive substring check in Agentok.
    assert [(m["sender"], m["content"]) for m in rest.messages(chat["id"])] == [
        ("User", "weather?"),
        ("Assistant", "Sunny."),
        ("User", ""),
        ("Assistant", "Anything else? TERMINATE"),
    ]


def test_rejected_real_flows_say_why(rest: Rest) -> None:
    reasons = {
        "02": "tools",
        "05": "GPTAssistantAgent",
        "07": "exactly one upstream agent",
        "08": "tools",
        "09": "tools",
        "10": "no initializer",
        "11": "more than one initializer",
        "12": "retrieval",
        "15": "config",
    }
    for name, reason in reasons.items():
        r = rest.http.post("/flows", json={"name": name, "flow": real_flow(name)})
        assert r.status_code == 400, name
        assert reason in r.json()["message"], (name, r.json()["message"])


def test_a_slow_model_times_out_and_the_error_names_the_endpoint_not_the_key(
    tmp_path: Path, llm_server: FakeLlmServer
) -> None:
    stack = Stack(
        tmp_path, llm_server.base_url, extra_env={"AGENTOK_LLM_TIMEOUT_SECONDS": "0.5", "AGENTOK_LLM_ATTEMPTS": "2"}
    ).start()
    try:
        _, key = create_key(stack.env, "k", "pat")
        rest = Rest(stack.rest_url, key)
        flow = real_flow("14")
        flow["llm_config"] = {"model": "slow-5", "api_key": "sk-very-secret"}
        chat = rest.create_chat(rest.create_flow(flow)["id"])
        sent = rest.send(chat["id"], "hello")
        rest.wait_status(chat["id"], int(sent["last_seq"]), {"error"})
        error = rest.chat(chat["id"])["error"]
        assert llm_server.base_url in error and "timed out" in error and "sk-very-secret" not in error
        # The key is not echoed by GetFlow either.
        assert (
            rest.http.get(f"/flows/{chat['from_flow']}").json()["flow"]["flow"]["llm_config"]["api_key"] == "<redacted>"
        )
    finally:
        stack.stop()


def test_a_transient_model_failure_is_retried_with_the_flows_key_and_settings(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model("failonce-503")  # the first call gets a 503; the retry an answer
    fake_llm.script(model, ["Sunny."])
    flow = two_agent_flow(a={"human_input_mode": "NEVER", "max_consecutive_auto_reply": 0})
    flow["llm_config"] = {"model": model, "api_key": "sk-flow-key", "temperature": 0.3, "max_tokens": 77}
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    sent = rest.send(chat["id"], "weather?")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error"})
    assert rest.chat(chat["id"])["status"] == "completed", rest.chat(chat["id"])
    assert [m["content"] for m in rest.messages(chat["id"])] == ["weather?", "Sunny."]
    first, retry = fake_llm.recorded_for(model)  # exactly two requests: one failure, one retry
    for request in (first, retry):
        assert request.headers["authorization"] == "Bearer sk-flow-key"
        assert (request.body["temperature"], request.body["max_tokens"]) == (0.3, 77)
    assert retry.body == first.body


def test_a_refused_model_call_ends_the_run_with_the_providers_reason_not_the_key(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model("fail-401")  # its error body quotes the key it was sent, as OpenAI's does
    flow = real_flow("14")
    flow["llm_config"] = {"model": model, "api_key": "sk-leaky-secret-77"}
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"error"})
    error = rest.chat(chat["id"])["error"]
    assert "refused the request: HTTP 401: scripted failure; Incorrect API key provided: <redacted>." in error
    assert "sk-leaky-secret-77" not in error
    assert "sk-leaky-secret-77" not in rest.http.get(f"/chats/{chat['id']}/messages").text
    assert len(fake_llm.requests_for(model)) == 1  # a 4xx is not retried


def test_code_execution_when_the_server_allows_it(tmp_path: Path, llm_server: FakeLlmServer, fake_llm: FakeLlm) -> None:
    stack = Stack(tmp_path, llm_server.base_url, extra_env={"AGENTOK_CODE_EXECUTION_ENABLED": "true"}).start()
    try:
        _, key = create_key(stack.env, "k", "rita")
        rest = Rest(stack.rest_url, key)
        model = unique_model()
        fake_llm.script(model, ["Run this:\n```python\nprint(6 * 7)\n```", "The answer is 42. TERMINATE"])
        flow = rest.create_flow(with_model(real_flow("01"), model))
        assert flow["warnings"] == []  # code execution is on here: nothing to warn about
        chat = rest.create_chat(flow["id"])
        sent = rest.send(chat["id"], "what is 6 times 7?")
        rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error"})
        said = [(m["sender"], m["content"]) for m in rest.messages(chat["id"])]
        assert said[2] == ("User", "exitcode: 0 (execution succeeded)\nCode output: \n42\n")
        assert said[-1] == ("Assistant", "The answer is 42. TERMINATE") and len(said) == 4
    finally:
        stack.stop()
