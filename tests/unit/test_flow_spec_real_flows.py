"""The flow parser on the 15 real Agentok Studio flows (tests/data/agentok-flows/): which are accepted, why
the others are refused, and what the accepted ones read as."""

from __future__ import annotations

import pytest

from agentok_server.engine.flow_spec import (
    DEFAULT_MCAR,
    MANAGER_NAME,
    ConverseSpec,
    FlowSpec,
    HumanInputMode,
    LlmConfig,
    SpeakerSelection,
    parse_flow,
)

from .flow_spec_support import FLOWS_DIR, real_flow, rejected, violation

# the 15 real flows

ACCEPTED = ["01", "02", "03", "04", "06", "08", "09", "13", "14"]

# prefix -> (field path, phrases the description must contain: the actionable reason)
REJECTED: dict[str, tuple[str, list[str]]] = {
    # 05 holds a gpt_assistant (nodes[4]), a groupchat (nodes[6]) and a retrieve user (nodes[8]): the first wins.
    "05": ("flow.nodes[4].type", ["'172382460583454'", "GPTAssistantAgent", "Assistants API"]),
    "07": ("flow.nodes[3]", ["'node-nestedchat-172372017259858'", "exactly one upstream agent", "(found 0)"]),
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
    warnings = [w for w in parse_flow(real_flow(prefix)).warnings if "code execution" in w]
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


@pytest.mark.parametrize("prefix", ["02", "09"])
def test_real_flows_bind_tavily_on_their_edge(prefix: str) -> None:
    """Edge 1-2 binds Tavily: the Assistant (its target) proposes, the User (its source) executes."""
    spec = parse_flow(real_flow(prefix))
    assert [(b.tool_id, b.caller, b.executor, b.path) for b in spec.tools] == [
        ("172278707085517", "2", "1", "flow.edges[1].data.tools[0]")
    ]
    # The node-level tools are UI state: each node that has them is warned about, and nothing is bound.
    assert sum("node-level tools" in w for w in spec.warnings) == 2


def test_real_flow_08_binds_its_tool_to_no_agent() -> None:
    """08's tool edge ends at an empty nested chat node: both are ignored with warnings, the id is still
    listed (so CreateFlow checks it exists), and the flow runs the user -> assistant chat."""
    spec = parse_flow(real_flow("08"))
    assert [(b.tool_id, b.caller, b.executor) for b in spec.tools] == [("172278707085517", None, "1")]
    assert spec.tool_ids == ["172278707085517"]
    assert [(c.initiator, c.recipient) for c in spec.chats] == [("1", "2")]
    assert any("has no chats and is ignored" in w for w in spec.warnings)
    assert any("which is not an agent: the tools are not offered" in w for w in spec.warnings)
