"""Flows the parser refuses, each with one field violation naming what is wrong (through domain.flow_rules,
which turns the engine's FlowError into InvalidArgument INVALID_FLOW): malformed documents, nodes and edges,
initializers, the first agent's chats, size limits."""

from __future__ import annotations

from typing import Any

import pytest

from agentok_server.domain.errors import InvalidArgument
from agentok_server.domain.flow_rules import parse_runnable
from agentok_server.engine.flow_spec import parse_flow

from .flow_spec_support import agent_node, minimal_flow, rejected, violation


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


def test_edge_tools_bind_numbers_and_strings() -> None:
    # 172278707085517.0: how a native gRPC client's Struct (and Envoy's transcoder) carries Agentok's ids.
    spec = parse_flow(minimal_flow(edge_data={"tools": [1, "search-v2", 172278707085517.0]}))
    assert [(b.tool_id, b.caller, b.executor) for b in spec.tools] == [
        ("1", "b", "a"),
        ("search-v2", "b", "a"),
        ("172278707085517", "b", "a"),
    ]
    # An empty tool list binds nothing.
    assert parse_flow(minimal_flow(edge_data={"tools": []})).tools == ()


@pytest.mark.parametrize(
    ("tools", "field", "phrase"),
    [
        (7, "flow.edges[1].data.tools", "must be a list of tool ids"),
        ([True], "flow.edges[1].data.tools[0]", "must be an integer or a string"),
        ([{"id": 1}], "flow.edges[1].data.tools[0]", "must be an integer or a string"),
        ([1.5], "flow.edges[1].data.tools[0]", "must be an integer or a string"),
        (["a b"], "flow.edges[1].data.tools[0]", "is not 1-64 of"),
        (["x" * 65], "flow.edges[1].data.tools[0]", "is not 1-64 of"),
    ],
    ids=["not-a-list", "bool", "object", "fraction", "space", "too-long"],
)
def test_malformed_edge_tools_rejected(tools: Any, field: str, phrase: str) -> None:
    got_field, description = violation(rejected(minimal_flow(edge_data={"tools": tools})))
    assert got_field == field
    assert phrase in description


def test_node_level_tools_are_ui_state_only() -> None:
    flow = minimal_flow(agent_node("a", "user", tools={"execution": [172278707085517]}))
    spec = parse_flow(flow)
    assert spec.tools == ()
    assert len(spec.warnings) == 1 and "node-level tools are Agentok Studio's UI state" in spec.warnings[0]


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
