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
    """initializer -> User -converse-> group {A, B} (members by parentId: docs/autogen-semantics.md §7)."""
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
    events = rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error", "wait_for_human_input"})
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


def _routed(rest: Rest, chat_id: str) -> list[tuple[str, str, str]]:
    return [(m["sender"], m["receiver"], m["content"]) for m in rest.messages(chat_id)]


def test_random_speaker_selection_picks_members(rest: Rest) -> None:
    chat, events = _run(rest, group_flow("random", 6))
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    said = _routed(rest, chat["id"])
    # Which member speaks is random (repeats allowed); each round one member speaks to the manager with
    # its own reply, and max_round 6 counts the initiator's message.
    assert said[0] == ("User", "chat_manager", "task") and len(said) == 6
    replies = {"User": "U-auto", "A": "A-reply", "B": "B-reply"}
    assert all(receiver == "chat_manager" and replies.get(sender) == content for sender, receiver, content in said[1:])


def test_send_introductions_is_stored_once_before_the_first_speaker(rest: Rest) -> None:
    flow = group_flow("round_robin", 3, send_introductions=True)
    flow["nodes"][3]["data"]["description"] = "the first"
    flow["nodes"][4]["data"]["description"] = "the second"
    chat, events = _run(rest, flow)
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    messages = rest.messages(chat["id"])
    intro = (
        "Hello everyone. We have assembled a great team today to answer questions and solve tasks. "
        "In attendance are:\n\nA: the first\nB: the second\nUser:"
    )
    assert [(m["sender"], m["receiver"], m["content"]) for m in messages] == [
        ("User", "chat_manager", "task"),
        ("chat_manager", "", messages[1]["content"]),
        ("A", "chat_manager", "A-reply"),
        ("B", "chat_manager", "B-reply"),  # the introduction is not a round: max_round 3 still gives A and B
    ]
    assert messages[1]["content"].startswith(intro) and messages[1]["type"] == "assistant"


def test_nested_chats_with_fixed_reply_agents(rest: Rest) -> None:
    """User -> Host; Host's nested chats (Critic, then Reviewer with its own message) make Host's reply."""
    flow = {
        "nodes": [
            {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
            {
                "id": "u",
                "type": "user",
                "data": {
                    "name": "User",
                    "human_input_mode": "NEVER",
                    "default_auto_reply": "U-auto",
                    "max_consecutive_auto_reply": 1,
                },
            },
            _fixed("h", "Host", "HOST-auto"),
            {"id": "n", "type": "nestedchat", "data": {"name": "Nested Chat"}},
            _fixed("c", "Critic", "CRITIC: fix X"),
            _fixed("r", "Reviewer", "REVIEWER: ok"),
        ],
        "edges": [
            {"source": "i", "target": "u"},
            {"source": "u", "target": "h", "type": "converse"},
            {"source": "h", "target": "n", "type": "converse"},
            {"id": "n-c", "source": "n", "target": "c", "type": "converse", "data": {"max_turns": 1}},
            {
                "id": "n-r",
                "source": "n",
                "target": "r",
                "type": "converse",
                "data": {"max_turns": 1, "message": "review this"},
            },
        ],
    }
    chat, events = _run(rest, flow, "Q: write a poem")
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    nested = [
        ("Host", "Critic", None),  # opens with the message the host answers
        ("Critic", "Host", "CRITIC: fix X"),
        ("Host", "Reviewer", "review this\nContext: \nCRITIC: fix X"),
        ("Reviewer", "Host", "REVIEWER: ok"),
        ("Host", "User", "REVIEWER: ok"),  # the host's reply: the last nested chat's summary
    ]
    # On every outer turn; the user auto-replies once (mcar 1), then ends the chat.
    assert _routed(rest, chat["id"]) == [
        ("User", "Host", "Q: write a poem"),
        *((s, r, c or "Q: write a poem") for s, r, c in nested),
        ("User", "Host", "U-auto"),
        *((s, r, c or "U-auto") for s, r, c in nested),
    ]


def _sequential(chats: list[tuple[dict[str, Any], dict[str, Any]]], **extra: Any) -> dict[str, Any]:
    """User's chats, in order, with the given (agent node, edge data)."""
    agents = {n["id"]: n for _, n in chats}
    return {
        "nodes": [
            {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
            {
                "id": "u",
                "type": "user",
                "data": {"name": "User", "human_input_mode": "NEVER", "default_auto_reply": "ok"},
            },
            *agents.values(),
        ],
        "edges": [
            {"source": "i", "target": "u"},
            *(
                {"id": f"u-{node['id']}-{k}", "source": "u", "target": node["id"], "type": "converse", "data": data}
                for k, (data, node) in enumerate(chats)
            ),
        ],
        **extra,
    }


def test_sequential_chats_with_the_model_summarize_by_last_msg_and_reflection(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, ["R: facts", "E: more facts", "SUMMARY of the facts"])
    researcher = {"id": "r", "type": "assistant", "data": {"name": "Researcher"}}
    expert = {"id": "e", "type": "assistant", "data": {"name": "Expert"}}
    flow = _sequential(
        [
            ({"max_turns": 1, "summary_method": "last_msg"}, researcher),
            ({"max_turns": 1, "instructions": "go deeper", "summary_method": "reflection_with_llm"}, expert),
            ({"max_turns": 1, "instructions": "edit it"}, _fixed("w", "Writer", "W: draft")),
        ],
        llm_config={"model": model},
    )
    chat, events = _run(rest, flow, "find facts")
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    assert _routed(rest, chat["id"]) == [
        ("User", "Researcher", "find facts"),
        ("Researcher", "User", "R: facts"),
        ("User", "Expert", "go deeper\nContext: \nR: facts"),
        ("Expert", "User", "E: more facts"),
        ("User", "Writer", "edit it\nContext: \nR: facts\nSUMMARY of the facts"),
        ("Writer", "User", "W: draft"),
    ]
    calls = fake_llm.requests_for(model)
    assert len(calls) == 3
    # The reflection: the Expert chat as the Expert holds it, then the summary prompt as a system message.
    summary = calls[2]["messages"]
    assert [(m["role"], m["content"]) for m in summary[:2]] == [
        ("user", "go deeper\nContext: \nR: facts"),
        ("assistant", "E: more facts"),
    ]
    assert summary[-1]["role"] == "system" and "Summarize" in summary[-1]["content"]


def test_a_sequential_chat_without_a_message_asks_the_person(rest: Rest) -> None:
    flow = _sequential(
        [
            ({"max_turns": 1}, _fixed("r", "Researcher", "R: facts")),
            ({"max_turns": 1}, _fixed("w", "Writer", "W: draft")),  # no message nor instructions
        ]
    )
    chat, events = _run(rest, flow, "find facts")
    waiting = rest.chat(chat["id"])
    assert waiting["status"] == "wait_for_human_input" and waiting["input_prompt"] == ">", waiting
    answered = rest.input(chat["id"], "typed brief")
    rest.wait_status(chat["id"], int(answered["last_seq"]), {"completed", "error"})
    assert rest.chat(chat["id"])["status"] == "completed"
    messages = rest.messages(chat["id"])
    assert [(m["sender"], m["receiver"], m["content"]) for m in messages] == [
        ("User", "Researcher", "find facts"),
        ("Researcher", "User", "R: facts"),
        ("User", "Writer", "typed brief\nContext: \nR: facts"),  # what the person typed, with the carryover
        ("Writer", "User", "W: draft"),
    ]
    assert messages[2]["type"] == "user"


def test_round_robin_group_with_the_model(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, ["A thinks", "B agrees"])
    flow = group_flow("round_robin", 3)
    for node in flow["nodes"][3:]:
        node["type"] = "assistant"
        node["data"] = {"name": node["data"]["name"], "system_message": f"You are {node['data']['name']}."}
    flow["llm_config"] = {"model": model}
    chat, events = _run(rest, flow)
    assert events[-1]["status_changed"]["status"] == "completed", rest.chat(chat["id"])
    assert _routed(rest, chat["id"]) == [
        ("User", "chat_manager", "task"),
        ("A", "chat_manager", "A thinks"),
        ("B", "chat_manager", "B agrees"),
    ]
    first, second = (call["messages"] for call in fake_llm.requests_for(model))
    # Each member's model sees its own system message and the group's messages, named by speaker.
    assert first == [
        {"role": "system", "content": "You are A."},
        {"role": "user", "content": "task", "name": "User"},
    ]
    assert second == [
        {"role": "system", "content": "You are B."},
        {"role": "user", "content": "task", "name": "User"},
        {"role": "user", "content": "A thinks", "name": "A"},
    ]
