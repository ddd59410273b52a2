"""Group, sequential and nested chats end to end: real server, real Envoy, the fake model where needed."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from ..conftest import Keys
from ..support.api import Rest, real_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm, FakeLlmServer
from ..support.stack import Stack, create_key


@pytest.fixture()
def rest(stack: Stack, keys: Keys) -> Rest:
    return Rest(stack.rest_url, keys.alice)


def _fixed(node_id: str, name: str, reply: str, **data: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "conversable",
        "data": {"name": name, "disable_llm": True, "default_auto_reply": reply, "human_input_mode": "NEVER", **data},
    }


def group_flow(method: str, max_round: int, **group: Any) -> dict[str, Any]:
    """initializer -> User -converse-> group {A, B} (members by parentId, as the notes describe)."""
    a, b = _fixed("a", "A", "A-reply"), _fixed("b", "B", "B-reply")
    a["parentId"] = b["parentId"] = "g"
    return {
        "nodes": [
            {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
            {
                "id": "u",
                "type": "user",
                "data": {"name": "User", "human_input_mode": "NEVER", "default_auto_reply": "U-auto"},
            },
            {
                "id": "g",
                "type": "groupchat",
                "data": {"name": "Group", "max_round": max_round, "speaker_selection_method": method, **group},
            },
            a,
            b,
        ],
        "edges": [{"source": "i", "target": "u"}, {"source": "u", "target": "g", "type": "converse"}],
    }


def _run(rest: Rest, flow: dict[str, Any], message: str = "task") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    sent = rest.send(chat["id"], message)
    events = rest.wait_status(chat["id"], int(sent["chat"]["last_seq"]), {"completed", "error", "wait_for_human_input"})
    return chat, events


def test_round_robin_group(rest: Rest) -> None:
    chat, events = _run(rest, group_flow("round_robin", 5))
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    said = [(m["sender"], m["content"]) for m in rest.messages(chat["id"])]
    # AutoGen: u:"task" -> a -> b -> u:"U-auto" -> a (max_round 5 counts the initiator's message).
    assert said == [("User", "task"), ("A", "A-reply"), ("B", "B-reply"), ("User", "U-auto"), ("A", "A-reply")]


def test_manual_speaker_selection_through_send_input(rest: Rest) -> None:
    chat, events = _run(rest, group_flow("manual", 3))
    waiting = rest.chat(chat["id"])
    assert waiting["status"] == "wait_for_human_input", waiting
    prompt = waiting["input_prompt"]
    assert "Please select the next speaker from the following list:" in prompt
    assert "1: A" in prompt and "2: B" in prompt
    answered = rest.input(chat["id"], "2")
    rest.wait_status(chat["id"], int(answered["last_seq"]), {"wait_for_human_input"})
    answered = rest.input(chat["id"], "1")
    rest.wait_status(chat["id"], int(answered["last_seq"]), {"completed"})
    assert [m["sender"] for m in rest.messages(chat["id"])] == ["User", "B", "A"]


def test_auto_speaker_selection_asks_the_model(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, ["B", "A"])
    flow = group_flow("auto", 3)
    flow["llm_config"] = {"model": model}
    chat, events = _run(rest, flow)
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    assert [m["sender"] for m in rest.messages(chat["id"])] == ["User", "B", "A"]
    first = fake_llm.requests_for(model)[0]["messages"]
    assert "role play game" in first[0]["content"] and "Only return the role" in first[-1]["content"]


def test_sequential_chats_carry_over_summaries(rest: Rest) -> None:
    flow = {
        "nodes": [
            {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
            {
                "id": "u",
                "type": "user",
                "data": {"name": "User", "human_input_mode": "NEVER", "default_auto_reply": "ok"},
            },
            _fixed("r", "Researcher", "R: facts"),
            _fixed("w", "Writer", "W: draft"),
        ],
        "edges": [
            {"source": "i", "target": "u"},
            {"source": "u", "target": "r", "type": "converse", "data": {"max_turns": 1, "summary_method": "last_msg"}},
            {"source": "u", "target": "w", "type": "converse", "data": {"max_turns": 1, "instructions": "edit it"}},
        ],
    }
    chat, events = _run(rest, flow, "find facts")
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    said = [(m["sender"], m["receiver"], m["content"]) for m in rest.messages(chat["id"])]
    assert said == [
        ("User", "Researcher", "find facts"),
        ("Researcher", "User", "R: facts"),
        ("User", "Writer", "edit it\nContext: \nR: facts"),
        ("Writer", "User", "W: draft"),
    ]


def test_real_flow_06_nested_chats_run(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    chat, events = _run(rest, with_model(real_flow("06"), model), "write a poem")
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    messages = rest.messages(chat["id"])
    assert messages[0]["content"] == "write a poem" and len(messages) >= 2
    # The first nested chat goes back and forth with the model (the second has no message: skipped, as in AutoGen).
    assert len(fake_llm.requests_for(model)) >= 2


def test_real_flow_04_group_with_manual_selection_runs(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    chat, _ = _run(rest, with_model(real_flow("04"), model), "plan a trip")
    waiting = rest.chat(chat["id"])
    assert waiting["status"] == "wait_for_human_input" and "select the next speaker" in waiting["input_prompt"]
    answered = rest.input(chat["id"], "1")
    rest.wait_status(chat["id"], int(answered["last_seq"]), {"completed", "error"})
    assert rest.chat(chat["id"])["status"] == "completed", rest.chat(chat["id"])


def test_a_group_waiting_for_a_speaker_survives_a_restart(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    stack = Stack(tmp_path, llm_server.base_url).start()
    try:
        _, key = create_key(stack.env, "k", "quinn")
        rest = Rest(stack.rest_url, key)
        chat, _ = _run(rest, group_flow("manual", 3))
        answered = rest.input(chat["id"], "2")
        rest.wait_status(chat["id"], int(answered["last_seq"]), {"wait_for_human_input"})
        stack.server.stop(signal.SIGKILL)
        stack.server.start()
        assert rest.chat(chat["id"])["status"] == "wait_for_human_input"
        answered = rest.input(chat["id"], "1")
        rest.wait_status(chat["id"], int(answered["last_seq"]), {"completed"})
        assert [m["sender"] for m in rest.messages(chat["id"])] == ["User", "B", "A"]
    finally:
        stack.stop()


@pytest.mark.parametrize(("model", "expected"), [("fail-503", "HTTP 503"), ("malformed", "malformed")])
def test_pattern_model_failures_end_the_run_in_error(rest: Rest, model: str, expected: str) -> None:
    """The model picks the speaker (auto) or writes the summary (reflection_with_llm): when it fails, the run
    ends in error with the endpoint and the reason."""
    group = group_flow("auto", 3)
    group["llm_config"] = {"model": model}
    sequential = {
        "nodes": [
            {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
            {
                "id": "u",
                "type": "user",
                "data": {"name": "User", "human_input_mode": "NEVER", "default_auto_reply": "ok"},
            },
            {"id": "r", "type": "assistant", "data": {"name": "Researcher"}},
            _fixed("w", "Writer", "W: draft"),
        ],
        "edges": [
            {"source": "i", "target": "u"},
            {
                "source": "u",
                "target": "r",
                "type": "converse",
                "data": {"max_turns": 1, "summary_method": "reflection_with_llm"},
            },
            {"source": "u", "target": "w", "type": "converse", "data": {"max_turns": 1, "instructions": "edit it"}},
        ],
        "llm_config": {"model": model},
    }
    for flow in (group, sequential):
        chat, events = _run(rest, flow)
        failed = rest.chat(chat["id"])
        assert failed["status"] == "error" and expected in failed["error"], failed
