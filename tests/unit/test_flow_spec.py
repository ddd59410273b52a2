"""The flow parser on an agent's settings: classes in both schemas, AutoGen's per-type defaults, the LLM
switch, termination messages, max_turns, llm_config."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from agentok_server.engine.flow_spec import (
    DEFAULT_MCAR,
    HumanInputMode,
    LlmConfig,
    parse_flow,
)

from .flow_spec_support import agent_node, minimal_flow, only_agent, real_flow, rejected, violation


@pytest.mark.parametrize("class_key", ["class", "class_type"], ids=["2024-class", "2025-class_type"])
@pytest.mark.parametrize("cls", ["RetrieveUserProxyAgent", "RetrieveAssistantAgent"])
def test_retrieval_class_rejected_in_both_schemas(class_key: str, cls: str) -> None:
    flow = minimal_flow(b=agent_node("b", "assistant", **{class_key: cls}))
    field, description = violation(rejected(flow))
    assert field == "flow.nodes[2].data.class"
    assert cls in description
    assert "retrieval (RAG) agents are not supported" in description


@pytest.mark.parametrize("class_key", ["class", "class_type"], ids=["2024-class", "2025-class_type"])
def test_plain_class_accepted_in_both_schemas(class_key: str) -> None:
    flow = minimal_flow(
        agent_node("a", "user", **{class_key: "UserProxyAgent"}),
        agent_node("b", "assistant", **{class_key: "AssistantAgent"}),
    )
    spec = parse_flow(flow)
    assert (spec.agent("a").kind, spec.agent("b").kind) == ("user", "assistant")


def test_class_type_wins_over_class() -> None:
    flow = minimal_flow(
        b=agent_node("b", "assistant", class_type="AssistantAgent", **{"class": "RetrieveAssistantAgent"})
    )
    assert parse_flow(flow).agent("b").name == "B"
    flow = minimal_flow(
        b=agent_node("b", "assistant", class_type="RetrieveAssistantAgent", **{"class": "AssistantAgent"})
    )
    assert "RetrieveAssistantAgent" in violation(rejected(flow))[1]


@pytest.mark.parametrize(
    ("node_type", "mode"),
    [("user", HumanInputMode.ALWAYS), ("conversable", HumanInputMode.TERMINATE), ("assistant", HumanInputMode.NEVER)],
    ids=["user-ALWAYS", "conversable-TERMINATE", "assistant-NEVER"],
)
def test_human_input_mode_default_per_node_type(node_type: str, mode: HumanInputMode) -> None:
    assert only_agent({}, node_type).human_input_mode is mode


@pytest.mark.parametrize("node_type", ["user", "conversable", "assistant"])
@pytest.mark.parametrize("raw", ["ALWAYS", "TERMINATE", "NEVER", "never", "Terminate"])
def test_explicit_human_input_mode_wins(node_type: str, raw: str) -> None:
    assert only_agent({"human_input_mode": raw}, node_type).human_input_mode is HumanInputMode(raw.upper())


@pytest.mark.parametrize("node_type", ["user", "conversable", "assistant"])
def test_max_consecutive_auto_reply_default_is_100(node_type: str) -> None:
    assert DEFAULT_MCAR == 100
    assert only_agent({}, node_type).max_consecutive_auto_reply == 100


@pytest.mark.parametrize("value", [0, 1, 7, 100, 250, 3.0])
def test_max_consecutive_auto_reply_kept(value: int | float) -> None:
    agent = only_agent({"max_consecutive_auto_reply": value}, "conversable")
    assert agent.max_consecutive_auto_reply == int(value)
    assert isinstance(agent.max_consecutive_auto_reply, int)


@pytest.mark.parametrize(
    ("node_type", "data", "uses_llm"),
    [
        ("user", {}, False),
        ("user", {"enable_llm": True}, True),
        ("user", {"enable_llm": False}, False),
        ("user", {"disable_llm": True}, False),
        ("user", {"enable_llm": True, "disable_llm": True}, True),
        ("assistant", {}, True),
        ("assistant", {"disable_llm": True}, False),
        ("assistant", {"enable_llm": False}, False),
        ("assistant", {"disable_llm": False}, True),
        ("assistant", {"enable_llm": True}, True),
        ("conversable", {}, True),
        ("conversable", {"disable_llm": True}, False),
        ("conversable", {"disable_llm": False}, True),
        ("conversable", {"enable_llm": False}, False),
        ("conversable", {"enable_llm": True}, True),
    ],
    ids=lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v),
)
def test_llm_switch(node_type: str, data: dict[str, Any], uses_llm: bool) -> None:
    assert only_agent(data, node_type).uses_llm is uses_llm


def test_default_auto_reply() -> None:
    assert only_agent({}, "conversable").default_auto_reply == ""
    assert only_agent({"default_auto_reply": "fixed"}, "conversable").default_auto_reply == "fixed"
    assert only_agent({"default_auto_reply": None}, "user").default_auto_reply == ""


def test_default_auto_reply_must_be_a_string() -> None:
    flow = minimal_flow(agent_node("a", "user", default_auto_reply=42))
    field, description = violation(rejected(flow))
    assert field == "flow.nodes[1].data.default_auto_reply"
    assert "string" in description


def test_system_message_kept_and_defaulted() -> None:
    assert only_agent({"system_message": "Be brief."}, "assistant").system_message == "Be brief."
    assert only_agent({}, "user").system_message == ""  # UserProxyAgent's default system message is ""
    assert only_agent({}, "conversable").system_message == "You are a helpful AI Assistant."  # ConversableAgent
    assert only_agent({"system_message": ""}, "conversable").system_message == "You are a helpful AI Assistant."


def test_default_assistant_system_message_asks_for_terminate() -> None:
    """An assistant node without system_message is AutoGen's AssistantAgent with its DEFAULT_SYSTEM_MESSAGE.

    Agentok's assistant.j2 passes system_message only when the node has one, so flows 01, 13 and 14 run
    with AssistantAgent.DEFAULT_SYSTEM_MESSAGE (autogen 0.14.1, assistant_agent.py), whose last line is
    'Reply "TERMINATE" in the end when everything is done.' That line is what lets 01's user (NEVER,
    termination_msg TERMINATE) end the chat; without it the chat runs until mcar. The service writes its
    own shorter default (AutoGen's asks for code, and code execution is off here) but keeps that instruction.
    """
    message = only_agent({}, "assistant").system_message
    assert message.startswith("You are a helpful AI assistant.")
    assert message.rstrip().endswith('Reply "TERMINATE" in the end when everything is done.')


def test_name_is_stripped() -> None:
    assert only_agent({"name": "  Alice \n"}, "user").name == "Alice"


@pytest.mark.parametrize(
    ("content", "ends"),
    [
        ("TERMINATE", True),
        ("terminate", True),
        ("done TERMINATE", True),
        ("All done. Terminate.", True),
        ("TERMINATED", True),
        ("TERMIN ATE", False),
        ("", False),
    ],
)
def test_termination_msg_set_is_case_insensitive_substring(content: str, ends: bool) -> None:
    agent = only_agent({"termination_msg": "Terminate"}, "user")
    assert agent.termination_msg == "Terminate"
    assert agent.is_termination_msg(content) is ends


@pytest.mark.parametrize(
    ("content", "ends"),
    [
        ("TERMINATE", True),
        ("done TERMINATE", False),
        ("TERMINATE.", False),
        (" TERMINATE", False),
        ("TERMINATE\n", False),
        ("terminate", False),
        ("", False),
    ],
)
@pytest.mark.parametrize(
    "data", [{}, {"termination_msg": ""}, {"termination_msg": None}], ids=["absent", "empty", "null"]
)
def test_termination_msg_unset_is_exactly_terminate(data: dict[str, Any], content: str, ends: bool) -> None:
    agent = only_agent(data, "conversable")
    assert agent.termination_msg == ""
    assert agent.is_termination_msg(content) is ends


def test_custom_termination_word() -> None:
    agent = only_agent({"termination_msg": "BYE"}, "user")
    assert agent.is_termination_msg("ok, bye!")
    assert not agent.is_termination_msg("TERMINATE")


def test_max_turns() -> None:
    assert parse_flow(minimal_flow()).chat.max_turns is None
    assert parse_flow(minimal_flow(edge_data={"max_turns": 3})).chat.max_turns == 3
    assert parse_flow(minimal_flow(edge_data={"max_turns": 2.0})).chat.max_turns == 2
    # Agentok's UI stores 0 / null for "no limit".
    assert parse_flow(minimal_flow(edge_data={"max_turns": 0})).chat.max_turns is None
    assert parse_flow(minimal_flow(edge_data={"max_turns": None})).chat.max_turns is None


def test_edge_without_data_and_untyped_converse_edge() -> None:
    flow = minimal_flow()
    del flow["edges"][1]["data"]
    del flow["edges"][1]["type"]
    spec = parse_flow(flow)
    assert (spec.chat.initiator, spec.chat.recipient, spec.chat.max_turns) == ("a", "b", None)


def test_notes_are_ignored_even_when_connected() -> None:
    note = {"id": "n", "type": "note", "data": {"name": "Note", "content": "hi"}}
    flow = minimal_flow(
        extra_nodes=[note], extra_edges=[{"id": "a-n", "source": "a", "target": "n", "type": "converse"}]
    )
    spec = parse_flow(flow)
    assert set(spec.agents) == {"a", "b"}


def test_node_ids_are_compared_as_strings() -> None:
    flow = minimal_flow()
    flow["nodes"][1]["id"] = 1
    flow["edges"][0]["target"] = "1"
    flow["edges"][1]["source"] = 1
    spec = parse_flow(flow)
    assert spec.chat.initiator == "1"
    assert spec.agent("1").node_id == "1"


def test_input_is_not_modified() -> None:
    flow = real_flow("13")
    before = copy.deepcopy(flow)
    parse_flow(flow)
    assert flow == before


def test_llm_config_override_parsed() -> None:
    flow = minimal_flow()
    flow["llm_config"] = {
        "base_url": "http://model.local/v1",
        "model": "m-1",
        "api_key": "sk-test",
        "temperature": 0,
        "max_tokens": 256,
    }
    llm = parse_flow(flow).llm
    assert llm == LlmConfig(
        base_url="http://model.local/v1", model="m-1", api_key="sk-test", temperature=0.0, max_tokens=256
    )
    assert isinstance(llm.temperature, float)


def test_llm_config_absent_or_partial() -> None:
    assert parse_flow(minimal_flow()).llm == LlmConfig()
    flow = minimal_flow()
    flow["llm_config"] = {"model": "m-2", "base_url": ""}
    assert parse_flow(flow).llm == LlmConfig(model="m-2")


@pytest.mark.parametrize(
    ("llm_config", "field"),
    [
        ("gpt-4", "flow.llm_config"),
        (["gpt-4"], "flow.llm_config"),
        ({"temperature": "hot"}, "flow.llm_config.temperature"),
        ({"max_tokens": 0}, "flow.llm_config.max_tokens"),
        ({"max_tokens": 1.5}, "flow.llm_config.max_tokens"),
        ({"max_tokens": "100"}, "flow.llm_config.max_tokens"),
    ],
)
def test_llm_config_invalid(llm_config: Any, field: str) -> None:
    flow = minimal_flow()
    flow["llm_config"] = llm_config
    assert violation(rejected(flow))[0] == field


# --------------------------------------------------------------------------------------------------
# invalid flows
