"""Unit tests for engine.flow_spec.parse_flow: real Agentok Studio flows, schema defaults, invalid flows (through
domain.flow_rules, which turns the engine's FlowError into InvalidArgument)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agentok_server.domain.errors import InvalidArgument
from agentok_server.domain.flow_rules import parse_runnable
from agentok_server.engine.flow_spec import (
    DEFAULT_MCAR,
    MANAGER_NAME,
    AgentSpec,
    ConverseSpec,
    FlowSpec,
    HumanInputMode,
    LlmConfig,
    SpeakerSelection,
    parse_flow,
)

FLOWS_DIR = Path(__file__).resolve().parents[1] / "data" / "agentok-flows"


# --------------------------------------------------------------------------------------------------
# helpers


def real_flow(prefix: str) -> dict[str, Any]:
    """One of the 15 real flows in tests/data/agentok-flows, by its two-digit prefix (e.g. "01")."""
    (path,) = FLOWS_DIR.glob(f"{prefix}-*.json")
    flow = json.loads(path.read_text())
    assert isinstance(flow, dict)
    return flow


def agent_node(node_id: str, node_type: str = "conversable", **data: Any) -> dict[str, Any]:
    data.setdefault("name", node_id.upper())
    return {"id": node_id, "type": node_type, "data": data}


def minimal_flow(
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    *,
    edge_data: dict[str, Any] | None = None,
    extra_nodes: list[Any] | None = None,
    extra_edges: list[Any] | None = None,
) -> dict[str, Any]:
    """initializer "i" -> agent "a" -converse-> agent "b" (2024 schema, as Agentok stores it)."""
    nodes = [
        {"id": "i", "type": "initializer", "data": {"name": "Initializer", "class": "Initializer"}},
        a if a is not None else agent_node("a", "user"),
        b if b is not None else agent_node("b", "assistant"),
        *(extra_nodes or []),
    ]
    edges: list[Any] = [
        {"id": "i-a", "source": "i", "target": "a"},
        {"id": "a-b", "source": "a", "target": "b", "type": "converse", "data": edge_data or {}},
        *(extra_edges or []),
    ]
    return {"nodes": nodes, "edges": edges}


def only_agent(data: dict[str, Any], node_type: str) -> AgentSpec:
    """Parses a flow whose initiator "a" has `data` and type `node_type`; returns a's spec."""
    spec = parse_flow(minimal_flow(agent_node("a", node_type, **data)))
    return spec.agent("a")


def rejected(flow: Any) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        parse_runnable(flow, code_execution=False)
    err = info.value
    assert err.reason == "INVALID_FLOW"
    assert len(err.field_violations) == 1
    field, description = err.field_violations[0]
    # The message names the field and repeats the description, so clients can show either.
    assert err.message == f"invalid flow: {field}: {description}"
    assert str(err) == err.message
    return err


def violation(err: InvalidArgument) -> tuple[str, str]:
    field, description = err.field_violations[0]
    return field, description


# --------------------------------------------------------------------------------------------------
# the 15 real flows

ACCEPTED = ["01", "03", "04", "06", "13", "14"]

# prefix -> (field path, phrases the description must contain: the actionable reason)
REJECTED: dict[str, tuple[str, list[str]]] = {
    "02": ("flow.edges[1].data.tools", ["edge '1-2'", "binds tools [172278707085517]", "no tools to bind"]),
    # 05 holds a gpt_assistant (nodes[4]), a groupchat (nodes[6]) and a retrieve user (nodes[8]): the first wins.
    "05": ("flow.nodes[4].type", ["'172382460583454'", "GPTAssistantAgent", "Assistants API"]),
    "07": ("flow.nodes[3]", ["'node-nestedchat-172372017259858'", "exactly one upstream agent", "(found 0)"]),
    # 08's first agent has two converse edges (sequential chats), the second to an empty nested chat node; its
    # tools are what the service cannot do, and are met first.
    "08": ("flow.edges[2].data.tools", ["'reactflow__edge-1-172372315717174'", "binds tools [172278707085517]"]),
    "09": ("flow.edges[1].data.tools", ["edge '1-2'", "binds tools [172278707085517]", "no tools to bind"]),
    "10": ("flow.nodes", ["no initializer node", "connect it to the agent that starts the chat"]),
    "11": ("flow.nodes", ["more than one initializer", "1001", "node-initializer-172375312290709"]),
    "12": ("flow.nodes[2].data.class", ["'172157032670063'", "RetrieveUserProxyAgent", "retrieval (RAG)"]),
    "15": ("flow.nodes[2].type", ["'999'", "'config' node", "recreate the flow in Agentok Studio"]),
}


def test_every_real_flow_is_classified() -> None:
    prefixes = sorted(p.name[:2] for p in FLOWS_DIR.glob("*.json"))
    assert prefixes == sorted(ACCEPTED + list(REJECTED))
    assert len(prefixes) == 15


@pytest.mark.parametrize("prefix", ACCEPTED, ids=ACCEPTED)
def test_real_flow_accepted(prefix: str) -> None:
    spec = parse_flow(real_flow(prefix))
    assert isinstance(spec, FlowSpec)
    assert spec.chat.initiator == spec.initiator
    assert {spec.chat.initiator, spec.chat.recipient} <= set(spec.agents)


@pytest.mark.parametrize("prefix", list(REJECTED), ids=list(REJECTED))
def test_real_flow_rejected_with_actionable_reason(prefix: str) -> None:
    expected_field, phrases = REJECTED[prefix]
    field, description = violation(rejected(real_flow(prefix)))
    assert field == expected_field
    for phrase in phrases:
        assert phrase in description


@pytest.mark.parametrize(
    ("prefix", "warned_nodes"),
    [("01", ["'1' (User)"]), ("03", []), ("13", ["(UserProxy)", "(Assistant)"]), ("14", ["'1' (User)"])],
    ids=["01", "03", "13", "14"],
)
def test_real_flow_code_execution_warnings(prefix: str, warned_nodes: list[str]) -> None:
    warnings = parse_flow(real_flow(prefix)).warnings
    assert len(warnings) == len(warned_nodes)
    for warning, node in zip(warnings, warned_nodes, strict=True):
        assert node in warning
        assert "code execution is off" in warning


def test_real_flow_01_chat_with_assistant() -> None:
    spec = parse_flow(real_flow("01"))
    assert spec.chat.initiator == "1"
    assert spec.chat.recipient == "2"
    assert spec.chat.max_turns is None
    user, assistant = spec.agent("1"), spec.agent("2")
    assert (user.name, user.kind, user.human_input_mode) == ("User", "user", HumanInputMode.NEVER)
    assert user.max_consecutive_auto_reply == 10
    assert user.termination_msg == "TERMINATE"
    assert user.uses_llm is False  # a user node without enable_llm
    assert user.system_message == ""
    assert (assistant.name, assistant.kind, assistant.human_input_mode) == (
        "Assistant",
        "assistant",
        HumanInputMode.NEVER,
    )
    assert assistant.max_consecutive_auto_reply == 10
    assert assistant.termination_msg == ""
    assert assistant.uses_llm is True
    assert spec.llm == LlmConfig()


def test_real_flow_03_two_conversables() -> None:
    spec = parse_flow(real_flow("03"))
    user, assistant = spec.agent(spec.chat.initiator), spec.agent(spec.chat.recipient)
    assert (user.name, user.kind) == ("User", "conversable")
    assert user.human_input_mode is HumanInputMode.NEVER
    assert user.max_consecutive_auto_reply == 3
    assert user.uses_llm is True  # conversable: a model unless disable_llm is true
    assert user.termination_msg == "TERMINATE"
    assert (assistant.name, assistant.kind) == ("Assistant", "conversable")
    # No human_input_mode on the node: ConversableAgent's default applies.
    assert assistant.human_input_mode is HumanInputMode.TERMINATE
    assert assistant.max_consecutive_auto_reply == DEFAULT_MCAR
    assert assistant.uses_llm is True  # disable_llm: false
    assert assistant.termination_msg == ""
    assert assistant.system_message.startswith("You are a helpful AI assistant. You can help")


def test_real_flow_13_back_edge_is_the_same_chat() -> None:
    spec = parse_flow(real_flow("13"))
    user, assistant = spec.agent(spec.chat.initiator), spec.agent(spec.chat.recipient)
    assert (user.name, assistant.name) == ("UserProxy", "Assistant")
    assert user.human_input_mode is HumanInputMode.ALWAYS
    assert user.max_consecutive_auto_reply == 22
    assert user.system_message == "Hello AI"
    assert assistant.human_input_mode is HumanInputMode.NEVER
    assert assistant.max_consecutive_auto_reply == 11


def test_real_flow_two_agent_flows_are_one_chat() -> None:
    for prefix in ["01", "03", "13", "14"]:
        spec = parse_flow(real_flow(prefix))
        assert spec.chats == (spec.chat,)
        assert set(spec.agents) == {spec.chat.initiator, spec.chat.recipient}
        assert spec.groups == {} and spec.nested == {}


def test_real_flow_06_nested_chat_answers_the_first_message() -> None:
    """06: User -> Nested Chat -> two Assistants, and no other chat: the User's nested chats answer the run's
    first message (Agentok's codegen: `generate_reply(messages=[first message])`)."""
    spec = parse_flow(real_flow("06"))
    first, second = "node-assistant-172281363439352", "node-assistant-172281366825409"
    assert spec.initiator == "1"
    assert spec.chats == ()
    assert spec.nested == {"1": (ConverseSpec("1", first, None), ConverseSpec("1", second, None))}
    # The first message goes to the first nested chat's recipient.
    assert (spec.chat.initiator, spec.chat.recipient) == ("1", first)
    assert [spec.agent(a).name for a in spec.agents] == ["User", "Assistant", "Assistant"]
    code, skipped = spec.warnings
    assert "'1' (User)" in code and "code execution is off" in code
    assert "'reactflow__edge-node-nestedchat-172281360494111-node-assistant-172281366825409'" in skipped
    assert "no message or instructions" in skipped and "skipped" in skipped


def test_real_flow_04_group_reached_through_its_member() -> None:
    """04: User -> Agent, Agent -> Group <- User (a second one), manual selection, max_round 2. The agents
    joined to the group by their own converse edges are its members; the first agent's chat with one of
    them is a chat with the group (nothing else would start it; Agentok's codegen ran a two-agent chat
    User -> Agent and left the group unused). The first agent is not a member: it has no edge to the group."""
    spec = parse_flow(real_flow("04"))
    group_id = "172286861169373"
    (chat,) = spec.chats
    assert (chat.initiator, chat.recipient, chat.max_turns) == ("1", group_id, None)
    group = spec.groups[group_id]
    assert group.members == ("node-conversable-172286857523660", "node-user-172286864553284")
    assert [spec.agent(m).name for m in group.members] == ["Agent", "User"]
    assert (group.max_round, group.speaker_selection, group.send_introductions) == (2, SpeakerSelection.MANUAL, False)
    assert spec.agent(chat.recipient).name == MANAGER_NAME  # the first message's receiver
    assert spec.agent("node-user-172286864553284").human_input_mode is HumanInputMode.ALWAYS  # no mode: AutoGen's
    code, through = spec.warnings
    assert "code execution is off" in code
    assert "'User' converses with 'Agent', a member of group chat '172286861169373' (Group)" in through


def test_real_flow_04_with_the_initiator_joined_to_the_group_has_two_users() -> None:
    """Moving User's edge to the group makes it a member (appended last): the group then has two members
    named "User", which AutoGen refuses."""
    flow = real_flow("04")
    flow["edges"][1]["target"] = "172286861169373"
    field, description = violation(rejected(flow))
    assert field == "flow.nodes[3]"
    assert "more than one member is named 'User'" in description
    flow["nodes"][4]["data"]["name"] = "Person"
    group = parse_flow(flow).groups["172286861169373"]
    assert group.members == ("node-conversable-172286857523660", "node-user-172286864553284", "1")


def test_real_flow_14_2025_schema_reads_like_01() -> None:
    """14 is 01 in the 2025 schema (`class_type`, `id` instead of `class`, `label`)."""
    old, new = parse_flow(real_flow("01")), parse_flow(real_flow("14"))
    assert new.agents == old.agents
    assert new.chat == old.chat
    assert new.llm == old.llm


# --------------------------------------------------------------------------------------------------
# schema handling and defaults


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


@pytest.mark.parametrize("flow", [None, [], "flow", 3, [{"nodes": []}]], ids=["None", "list", "str", "int", "list-of"])
def test_flow_not_an_object(flow: Any) -> None:
    assert violation(rejected(flow)) == ("flow", "must be an object with nodes and edges")


@pytest.mark.parametrize(
    "flow",
    [{}, {"nodes": []}, {"nodes": None, "edges": []}, {"nodes": {"a": {}}}],
    ids=["no-nodes", "empty", "null", "dict"],
)
def test_empty_or_missing_nodes(flow: dict[str, Any]) -> None:
    assert violation(rejected(flow))[0] == "flow.nodes"


def test_edges_not_a_list() -> None:
    flow = minimal_flow()
    flow["edges"] = {"a-b": {}}
    assert violation(rejected(flow))[0] == "flow.edges"


@pytest.mark.parametrize(
    "node", [{"type": "user", "data": {"name": "X"}}, {"id": "x", "data": {}}, {"id": "x", "type": 3}, "node"]
)
def test_node_without_id_or_type(node: Any) -> None:
    flow = minimal_flow(extra_nodes=[node])
    assert violation(rejected(flow)) == ("flow.nodes[3]", "each node needs an id and a type")


@pytest.mark.parametrize("end", ["source", "target"])
def test_edge_to_missing_node(end: str) -> None:
    flow = minimal_flow()
    flow["edges"][1][end] = "ghost"
    field, description = violation(rejected(flow))
    assert field == f"flow.edges[1].{end}"
    assert "'a-b'" in description  # names the edge
    assert "'ghost'" in description  # and the missing node


def test_edge_without_source_is_missing_node() -> None:
    flow = minimal_flow()
    del flow["edges"][0]["source"]
    field, description = violation(rejected(flow))
    assert field == "flow.edges[0].source"
    assert "'i-a'" in description


def test_edge_not_an_object() -> None:
    flow = minimal_flow(extra_edges=["a-b"])
    assert violation(rejected(flow)) == ("flow.edges[2]", "each edge must be an object")


def test_unknown_node_type() -> None:
    flow = minimal_flow(extra_nodes=[{"id": "x", "type": "wizard", "data": {"name": "Merlin"}}])
    field, description = violation(rejected(flow))
    assert field == "flow.nodes[3].type"
    assert "unknown node type 'wizard'" in description
    assert "'x' (Merlin)" in description


def test_unknown_edge_type() -> None:
    flow = minimal_flow()
    flow["edges"][1]["type"] = "smoothstep"
    field, description = violation(rejected(flow))
    assert field == "flow.edges[1].type"
    assert "unknown edge type 'smoothstep'" in description


def test_duplicate_node_ids() -> None:
    flow = minimal_flow(extra_nodes=[agent_node("b", "assistant", name="Other")])
    assert violation(rejected(flow)) == ("flow.nodes[3].id", "duplicate node id 'b'")


@pytest.mark.parametrize("max_turns", ["3", -1, 2.5, True, [3]], ids=["str", "negative", "fraction", "bool", "list"])
def test_non_integer_max_turns(max_turns: Any) -> None:
    field, description = violation(rejected(minimal_flow(edge_data={"max_turns": max_turns})))
    assert field == "flow.edges[1].data.max_turns"
    assert "must be an integer >= 1" in description


@pytest.mark.parametrize("mcar", ["10", -1, 1.5, True], ids=["str", "negative", "fraction", "bool"])
def test_bad_max_consecutive_auto_reply(mcar: Any) -> None:
    flow = minimal_flow(b=agent_node("b", "assistant", max_consecutive_auto_reply=mcar))
    field, description = violation(rejected(flow))
    assert field == "flow.nodes[2].data.max_consecutive_auto_reply"
    assert "must be an integer >= 0" in description


@pytest.mark.parametrize("mode", ["SOMETIMES", "", 1, "ALWAYS "])
def test_bad_human_input_mode(mode: Any) -> None:
    flow = minimal_flow(agent_node("a", "user", human_input_mode=mode))
    assert violation(rejected(flow)) == ("flow.nodes[1].data.human_input_mode", "must be ALWAYS, TERMINATE or NEVER")


@pytest.mark.parametrize("name", [None, "", "   ", 7], ids=["absent", "empty", "blank", "int"])
def test_agent_without_name(name: Any) -> None:
    node = agent_node("b", "assistant")
    if name is None:
        del node["data"]["name"]
    else:
        node["data"]["name"] = name
    field, description = violation(rejected(minimal_flow(b=node)))
    assert field == "flow.nodes[2].data.name"
    assert "'b'" in description


def test_agent_without_data_has_no_name() -> None:
    flow = minimal_flow(b={"id": "b", "type": "assistant"})
    assert violation(rejected(flow))[0] == "flow.nodes[2].data.name"


def test_no_initializer() -> None:
    flow = minimal_flow()
    del flow["nodes"][0]
    del flow["edges"][0]
    field, description = violation(rejected(flow))
    assert field == "flow.nodes"
    assert "no initializer" in description


def test_two_initializers() -> None:
    second = {"id": "j", "type": "initializer", "data": {"name": "Second"}}
    flow = minimal_flow(extra_nodes=[second], extra_edges=[{"id": "j-a", "source": "j", "target": "a"}])
    field, description = violation(rejected(flow))
    assert field == "flow.nodes"
    assert "more than one initializer node (i, j)" in description


def test_initializer_pointing_to_nothing() -> None:
    flow = minimal_flow()
    del flow["edges"][0]
    field, description = violation(rejected(flow))
    assert field == "flow.edges"
    assert "'i' must connect to exactly one agent (found 0)" in description


def test_initializer_pointing_to_two_agents() -> None:
    flow = minimal_flow(extra_edges=[{"id": "i-b", "source": "i", "target": "b"}])
    assert "(found 2)" in violation(rejected(flow))[1]


def test_initializer_pointing_to_a_note() -> None:
    note = {"id": "n", "type": "note", "data": {"name": "Note"}}
    flow = minimal_flow(extra_nodes=[note])
    flow["edges"][0]["target"] = "n"
    field, description = violation(rejected(flow))
    assert field == "flow.edges"
    assert "'n', which is not an agent node" in description


def test_first_agent_without_converse_edge() -> None:
    flow = minimal_flow()
    del flow["edges"][1]
    field, description = violation(rejected(flow))
    assert field == "flow.edges"
    assert "'A' starts the chat but has no converse edge" in description


def test_two_converse_edges_from_the_first_agent_are_sequential_chats() -> None:
    flow = minimal_flow(
        extra_nodes=[agent_node("c", "assistant")],
        extra_edges=[{"id": "a-c", "source": "a", "target": "c", "type": "converse"}],
    )
    spec = parse_flow(flow)
    assert [(c.initiator, c.recipient) for c in spec.chats] == [("a", "b"), ("a", "c")]


def test_converse_edge_to_an_initializer() -> None:
    flow = minimal_flow()
    flow["edges"][1]["target"] = "i"
    field, description = violation(rejected(flow))
    assert field == "flow.edges[1].target"
    assert "'i', which is not an agent node" in description


def test_second_chat_between_other_agents_rejected() -> None:
    flow = minimal_flow(
        extra_nodes=[agent_node("c", "assistant")],
        extra_edges=[{"id": "b-c", "source": "b", "target": "c", "type": "converse"}],
    )
    field, description = violation(rejected(flow))
    assert field == "flow.edges[2]"
    assert "'b-c' from 'B' to 'C'" in description
    assert "only 'A', the agent the flow starts with, starts chats" in description


def test_two_agents_with_same_name() -> None:
    flow = minimal_flow(agent_node("a", "user", name="Twin"), agent_node("b", "assistant", name=" Twin "))
    field, description = violation(rejected(flow))
    assert field == "flow.nodes"
    assert "both named 'Twin'" in description


def test_tools_on_any_edge_rejected() -> None:
    flow = minimal_flow(edge_data={"tools": [1]})
    assert violation(rejected(flow))[0] == "flow.edges[1].data.tools"
    # An empty tool list binds nothing.
    assert parse_flow(minimal_flow(edge_data={"tools": []})).chat.recipient == "b"


def test_node_level_tools_are_ui_state_only() -> None:
    flow = minimal_flow(agent_node("a", "user", tools={"execution": [172278707085517]}))
    assert parse_flow(flow).warnings == []


@pytest.mark.parametrize("data", ["User", ["User"]], ids=["str", "list"])
def test_node_data_not_an_object_is_invalid_flow(data: Any) -> None:
    """Regression: parse_flow once raised AttributeError ('str'/'list' object has no attribute 'get')
    instead of InvalidArgument INVALID_FLOW."""
    flow = minimal_flow(b={"id": "b", "type": "assistant", "data": data})
    assert violation(rejected(flow))[0].startswith("flow.nodes[2]")


@pytest.mark.parametrize("data", ["x", [1]], ids=["str", "list"])
def test_edge_data_not_an_object_is_invalid_flow(data: Any) -> None:
    """Regression: parse_flow once raised AttributeError (`data.get("tools")`) instead of InvalidArgument
    INVALID_FLOW."""
    flow = minimal_flow()
    flow["edges"][1]["data"] = data
    assert violation(rejected(flow))[0].startswith("flow.edges[1]")


def test_a_flow_with_too_many_nodes_or_edges_is_refused_before_it_is_walked() -> None:
    from agentok_server.domain.limits import MAX_FLOW_EDGES, MAX_FLOW_NODES

    note = {"id": "n", "type": "note", "data": {}}
    many_nodes = {"nodes": [{**note, "id": f"n{i}"} for i in range(MAX_FLOW_NODES + 1)], "edges": []}
    with pytest.raises(InvalidArgument) as err:
        parse_runnable(many_nodes, code_execution=False)
    assert "at most 500" in err.value.message and "flow.nodes" in err.value.message
    many_edges = {"nodes": [note], "edges": [{"source": "n", "target": "n"}] * (MAX_FLOW_EDGES + 1)}
    with pytest.raises(InvalidArgument) as err:
        parse_runnable(many_edges, code_execution=False)
    assert "flow.edges" in err.value.message
