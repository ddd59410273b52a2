"""Unit tests for parse_flow on group chats, sequential chats and nested chats: what is read, what is rejected."""

from __future__ import annotations

from typing import Any

import pytest

from agentok_server.domain.errors import InvalidArgument
from agentok_server.domain.flow_rules import parse_runnable
from agentok_server.engine.flow_spec import (
    DEFAULT_MAX_ROUND,
    DEFAULT_SUMMARY_PROMPT,
    MANAGER_NAME,
    ConverseSpec,
    HumanInputMode,
    SpeakerSelection,
    SummaryMethod,
    parse_flow,
)

from .scripted import agent, converse, flow, group, nested


def rejected(graph: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as info:
        parse_runnable(graph, code_execution=False)
    assert info.value.reason == "INVALID_FLOW"
    (violation,) = info.value.field_violations
    return violation


def group_flow(*members: dict[str, Any], edges: list[dict[str, Any]] | None = None, **settings: Any) -> dict[str, Any]:
    """u -converse-> group g holding `members` (give them parent="g", or join them by `edges`)."""
    return flow("u", [agent("u", "U"), group(**settings), *members], [converse("u", "g"), *(edges or [])])


# --------------------------------------------------------------------------------------------------
# group chats


def test_group_members_children_then_edge_joined_then_initiator() -> None:
    graph = group_flow(
        agent("c1", parent="g"),
        agent("j2"),
        agent("c2", parent="g"),
        agent("j1"),
        {"id": "note", "type": "note", "data": {"name": "Note"}, "parentId": "g"},
        edges=[converse("j1", "g"), converse("j2", "g"), converse("j1", "g")],
        max_round=4,
        speaker_selection_method="Round_Robin",
        send_introductions=True,
    )
    spec = parse_flow(graph)
    (chat,) = spec.chats
    assert (chat.initiator, chat.recipient, chat.max_turns) == ("u", "g", None)
    g = spec.groups["g"]
    # Inside the group in node order, then joined by converse edges in edge order, then the initiator last.
    assert g.members == ("c1", "c2", "j1", "j2", "u")
    assert (g.name, g.max_round, g.speaker_selection, g.send_introductions) == (
        "Group",
        4,
        SpeakerSelection.ROUND_ROBIN,
        True,
    )


def test_chat_with_a_member_is_a_chat_with_its_group() -> None:
    graph = flow(
        "u",
        [agent("u"), group(), agent("a"), agent("b", parent="g"), agent("x")],
        [converse("u", "a", max_turns=1), converse("a", "g"), converse("u", "x")],
    )
    spec = parse_flow(graph)
    assert [(c.recipient, c.max_turns) for c in spec.chats] == [("g", 1), ("x", None)]
    assert spec.groups["g"].members == ("b", "a")  # the initiator has no edge to the group: not a member
    (warning,) = spec.warnings
    assert "edge 'u-a': 'u' converses with 'a', a member of group chat 'g' (Group)" in warning


def test_chat_with_a_member_of_a_group_the_initiator_starts_is_a_two_agent_chat() -> None:
    graph = flow("u", [agent("u"), group(), agent("a", parent="g")], [converse("u", "g"), converse("u", "a")])
    spec = parse_flow(graph)
    assert [c.recipient for c in spec.chats] == ["g", "a"]
    assert spec.warnings == []


def test_chat_with_a_member_of_two_groups_is_ambiguous() -> None:
    graph = flow(
        "u",
        [agent("u"), group(), group("g2"), agent("a", parent="g"), agent("b"), agent("c")],
        [converse("u", "a"), converse("a", "g2"), converse("b", "g"), converse("c", "g2")],
    )
    field, description = rejected(graph)
    assert field == "flow.edges[1]"
    assert "'a' is a member of several group chats ('g' (Group), 'g2' (Group))" in description


def test_group_defaults_are_autogens() -> None:
    spec = parse_flow(group_flow(agent("a", parent="g")))
    g = spec.groups["g"]
    assert (g.max_round, g.speaker_selection, g.send_introductions) == (DEFAULT_MAX_ROUND, SpeakerSelection.AUTO, False)
    assert g.members == ("a", "u")


def test_group_manager_is_an_agent_named_chat_manager() -> None:
    spec = parse_flow(group_flow(agent("a", parent="g")))
    manager = spec.agent("g")
    assert manager.name == MANAGER_NAME == "chat_manager"
    assert manager.kind == "groupchat"
    assert manager.human_input_mode is HumanInputMode.NEVER
    assert manager.uses_llm is True  # Agentok gives the manager the flow's model (auto speaker selection)
    assert manager.is_termination_msg("TERMINATE") and not manager.is_termination_msg("done TERMINATE")
    assert spec.agent(spec.chat.recipient).name == "chat_manager"


def test_descriptions_default_as_in_autogen() -> None:
    graph = group_flow(
        agent("user_always", node_type="user", mode="ALWAYS", parent="g"),
        agent("user_never", node_type="user", parent="g"),
        agent("plain_assistant", node_type="assistant", parent="g"),
        agent("told_assistant", node_type="assistant", parent="g", system_message="Be terse."),
        agent("described", node_type="user", parent="g", description="The boss."),
    )
    spec = parse_flow(graph)
    descriptions = {spec.agent(m).name: spec.agent(m).description for m in spec.groups["g"].members}
    assert descriptions["user_always"].startswith("An attentive HUMAN user who can answer questions")
    assert descriptions["user_never"].startswith("A computer terminal that performs no other action")
    assert descriptions["plain_assistant"].startswith("A helpful and general-purpose AI assistant")
    assert descriptions["told_assistant"] == "Be terse."
    assert descriptions["described"] == "The boss."
    assert descriptions["u"] == "You are a helpful AI Assistant."  # a conversable: its system message


@pytest.mark.parametrize(
    ("graph", "field", "phrases"),
    [
        (
            flow("u", [agent("u"), agent("a"), group(), agent("b")], [converse("u", "a"), converse("b", "g")]),
            "flow.nodes[3]",
            ["group chat node 'g' (Group) is never started", "connect 'u'"],
        ),
        (group_flow(), "flow.nodes[2]", ["needs at least two agents (found 1)"]),
        (group_flow(agent("a")), "flow.nodes[2]", ["(found 1)"]),
        (
            group_flow(agent("a", parent="g"), agent("b", parent="g", name="a")),
            "flow.nodes[2]",
            ["more than one member is named 'a'"],
        ),
        (
            group_flow(agent("a", parent="g", name="chat_manager")),
            "flow.nodes[2]",
            ["no member can be named 'chat_manager'"],
        ),
        (
            group_flow(agent("a", parent="g"), {"id": "x", "type": "nestedchat", "data": {}, "parentId": "g"}),
            "flow.nodes[2]",
            ["holds 'x'"],
        ),
        (group_flow(agent("a", parent="g"), max_round=0), "flow.nodes[2].data.max_round", [">= 1"]),
        (group_flow(agent("a", parent="g"), max_round="2"), "flow.nodes[2].data.max_round", [">= 1"]),
        (
            group_flow(agent("a", parent="g"), speaker_selection_method="loudest"),
            "flow.nodes[2].data.speaker_selection_method",
            ["round_robin, random, manual or auto"],
        ),
        (
            group_flow(agent("a", parent="g"), send_introductions="yes"),
            "flow.nodes[2].data.send_introductions",
            ["true or false"],
        ),
        (
            group_flow(agent("a", parent="g"), edges=[converse("g", "a")]),
            "flow.edges[2].source",
            ["leaves group chat node 'g' (Group)", "starts no chats"],
        ),
    ],
    ids=[
        "never-started",
        "only-initiator",
        "unjoined-agent",
        "duplicate-names",
        "member-named-manager",
        "holds-non-agent",
        "max_round-0",
        "max_round-str",
        "bad-method",
        "bad-introductions",
        "edge-from-group",
    ],
)
def test_group_rejected(graph: dict[str, Any], field: str, phrases: list[str]) -> None:
    got_field, description = rejected(graph)
    assert got_field == field
    for phrase in phrases:
        assert phrase in description


def test_group_chat_is_one_turn() -> None:
    graph = group_flow(agent("a", parent="g"))
    graph["edges"][1]["data"] = {"max_turns": 1}
    assert parse_flow(graph).chats[0].max_turns == 1
    graph["edges"][1]["data"] = {"max_turns": 3}
    field, description = rejected(graph)
    assert field == "flow.edges[1].data.max_turns"
    assert "one turn" in description and "max_round" in description


# --------------------------------------------------------------------------------------------------
# sequential chats


def test_sequential_chats_in_edge_order_with_their_settings() -> None:
    # Nodes list c before b; the edges say b first. Edge order wins (the issue; Agentok's codegen used node order).
    graph = flow(
        "a",
        [agent("a", llm=True), agent("c"), agent("b")],
        [
            converse("a", "b", max_turns=2, message="ignored: the first chat opens with the run's message"),
            converse("a", "c", instructions="edit it", summary_method="reflection_with_llm", summary_prompt="Sum up."),
            converse("a", "b", message="msg wins", instructions="not this", max_turns=0),
        ],
    )
    spec = parse_flow(graph)
    assert spec.chats == (
        ConverseSpec("a", "b", 2, "ignored: the first chat opens with the run's message"),
        ConverseSpec("a", "c", None, "edit it", SummaryMethod.REFLECTION_WITH_LLM, "Sum up."),
        ConverseSpec("a", "b", None, "msg wins", SummaryMethod.LAST_MSG, DEFAULT_SUMMARY_PROMPT),
    )
    (warning,) = spec.warnings
    assert "edge 'a-b'" in warning and "not used" in warning


def test_sequential_chat_to_a_group() -> None:
    graph = flow(
        "u",
        [agent("u"), agent("a"), group(), agent("m", parent="g")],
        [converse("u", "a"), converse("u", "g", message="now the group")],
    )
    spec = parse_flow(graph)
    assert [(c.recipient, c.message) for c in spec.chats] == [("a", None), ("g", "now the group")]
    assert spec.groups["g"].members == ("m", "u")


@pytest.mark.parametrize(
    ("edge_data", "field", "phrase"),
    [
        ({"summary_method": "all"}, "flow.edges[2].data.summary_method", "last_msg or reflection_with_llm"),
        ({"summary_method": "reflection_with_llm"}, "flow.edges[2].data.summary_method", "needs a model"),
        ({"message": 3}, "flow.edges[2].data.message", "must be a string"),
        ({"instructions": ["x"]}, "flow.edges[2].data.instructions", "must be a string"),
        ({"enable_rag": True}, "flow.edges[2].data.enable_rag", "retrieval (RAG) is not supported"),
    ],
)
def test_chat_settings_rejected(edge_data: dict[str, Any], field: str, phrase: str) -> None:
    graph = flow("a", [agent("a"), agent("b"), agent("c")], [converse("a", "b"), converse("a", "c", **edge_data)])
    got_field, description = rejected(graph)
    assert got_field == field
    assert phrase in description


def test_reflection_needs_a_model_on_either_agent() -> None:
    for a, c in [(True, False), (False, True)]:
        graph = flow(
            "a",
            [agent("a", llm=a), agent("b"), agent("c", llm=c)],
            [converse("a", "c", summary_method="reflection_with_llm"), converse("a", "b")],
        )
        assert parse_flow(graph).chats[0].summary_method is SummaryMethod.REFLECTION_WITH_LLM


def test_edge_to_itself_rejected() -> None:
    graph = flow("a", [agent("a"), agent("b")], [converse("a", "b"), converse("a", "a")])
    field, description = rejected(graph)
    assert (field, "joins 'a' (a) to itself" in description) == ("flow.edges[2]", True)


# --------------------------------------------------------------------------------------------------
# nested chats


def nested_flow(*edges: dict[str, Any], extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """u -> host; host -> nested n; plus the given edges (n -> recipients)."""
    nodes = [agent("u"), agent("host"), nested(), agent("c"), agent("r"), *(extra or [])]
    return flow("u", nodes, [converse("u", "host"), converse("host", "n"), *edges])


def test_nested_chats_of_a_host_in_edge_order() -> None:
    spec = parse_flow(nested_flow(converse("n", "c", max_turns=1), converse("n", "r", instructions="review this")))
    assert spec.chats == (ConverseSpec("u", "host", None),)
    assert spec.nested == {
        "host": (ConverseSpec("host", "c", 1), ConverseSpec("host", "r", None, "review this")),
    }
    assert list(spec.agents) == ["u", "host", "c", "r"]
    assert spec.warnings == []


def test_nested_chat_without_message_after_the_first_is_warned_about() -> None:
    spec = parse_flow(nested_flow(converse("n", "c"), converse("n", "r")))
    (warning,) = spec.warnings
    assert "edge 'n-r'" in warning and "skipped" in warning


def test_an_empty_nested_chat_is_ignored_with_a_warning() -> None:
    """As Agentok Studio registers an empty queue (real flow 08 has such a node): the host replies on its own."""
    spec = parse_flow(nested_flow())
    assert spec.nested == {}
    assert any("nested chat node 'n' (Nested Chat) has no chats and is ignored" in w for w in spec.warnings)


@pytest.mark.parametrize(
    ("graph", "field", "phrases"),
    [
        (
            nested_flow(converse("n", "c"), converse("u", "n")),
            "flow.nodes[3]",
            ["exactly one upstream agent", "(found 2)"],
        ),
        (
            flow("u", [agent("u"), agent("b"), nested(), agent("c")], [converse("u", "b"), converse("n", "c")]),
            "flow.nodes[3]",
            ["exactly one upstream agent", "(found 0)"],
        ),
        (nested_flow(converse("n", "init")), "flow.edges[3].target", ["a nested chat's recipients must be agents"]),
        (
            nested_flow(converse("n", "c"), converse("c", "n2"), converse("n2", "r"), extra=[nested("n2")]),
            "flow.nodes",
            ["'c' is a recipient of a nested chat and hosts nested chats itself"],
        ),
        (
            nested_flow(converse("n", "c"), converse("host", "n2"), converse("n2", "r"), extra=[nested("n2")]),
            "flow.nodes[6]",
            ["agent 'host' has two nested chat nodes"],
        ),
        (
            nested_flow(converse("n", "c"), converse("x", "n2"), converse("n2", "r"), extra=[nested("n2"), agent("x")]),
            "flow.nodes",
            ["'x' hosts nested chats but takes part in no chat"],
        ),
    ],
    ids=["two-upstream", "no-upstream", "to-initializer", "nested-in-nested", "two-nodes", "idle-host"],
)
def test_nested_rejected(graph: dict[str, Any], field: str, phrases: list[str]) -> None:
    got_field, description = rejected(graph)
    assert got_field == field
    for phrase in phrases:
        assert phrase in description


def test_first_agent_with_only_nested_chats() -> None:
    graph = flow("u", [agent("u"), nested(), agent("c")], [converse("u", "n"), converse("n", "c", max_turns=2)])
    spec = parse_flow(graph)
    assert spec.chats == ()
    assert spec.chat == ConverseSpec("u", "c", 2)
    assert spec.nested == {"u": (ConverseSpec("u", "c", 2),)}
    assert spec.warnings == []
    graph["edges"][-1]["data"]["message"] = "not used"
    (warning,) = parse_flow(graph).warnings
    assert "the first nested chat of 'u' opens with the message the run is started with" in warning


def test_only_the_first_agent_starts_chats() -> None:
    graph = flow("a", [agent("a"), agent("b"), agent("c")], [converse("a", "b"), converse("b", "c")])
    field, description = rejected(graph)
    assert field == "flow.edges[2]"
    assert "only 'a', the agent the flow starts with, starts chats" in description


def test_back_edge_to_the_first_agent_is_the_same_chat() -> None:
    graph = flow(
        "a", [agent("a"), agent("b"), agent("c")], [converse("a", "b"), converse("a", "c"), converse("c", "a")]
    )
    assert [c.recipient for c in parse_flow(graph).chats] == ["b", "c"]
