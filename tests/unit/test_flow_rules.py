"""The engine's parser raises its own FlowError; domain.flow_rules is the one place that turns it into the
client's InvalidArgument (reason INVALID_FLOW, the field violation, the message naming both)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from agentok_server.domain.errors import InvalidArgument
from agentok_server.domain.flow_rules import check_size, parse_runnable
from agentok_server.domain.limits import MAX_FLOW_EDGES, MAX_FLOW_NODES
from agentok_server.engine.flow_spec import FlowError, check_graph_size, parse_flow

from .scripted import agent, converse, flow

ENGINE = Path(__file__).resolve().parents[2] / "server" / "agentok_server" / "engine"

VALID = flow("A", [agent("A", "a"), agent("B", "b")], [converse("A", "B")])
NAMELESS = {
    "nodes": [{"id": "i", "type": "initializer"}, {"id": "a", "type": "user", "data": {}}],
    "edges": [{"source": "i", "target": "a"}],
}
# Each fails in a different pass: the top-level shape, nodes, edges, the initializer, the wiring, a group.
INVALID: dict[str, tuple[Any, str]] = {
    "not-an-object": ([], "flow"),
    "nameless-agent": (NAMELESS, "flow.nodes[1].data.name"),
    "dangling-edge": (flow("A", [agent("A")], [converse("A", "nowhere")]), "flow.edges[1].target"),
    "no-initializer": ({"nodes": [agent("A")], "edges": []}, "flow.nodes"),
    "self-edge": (flow("A", [agent("A")], [converse("A", "A")]), "flow.edges[1]"),
    "bad-max-round": (
        flow(
            "A",
            [agent("A"), agent("B", parent="g"), {"id": "g", "type": "groupchat", "data": {"max_round": 0}}],
            [converse("A", "g")],
        ),
        "flow.nodes[3].data.max_round",
    ),
}


@pytest.mark.parametrize(("graph", "field"), INVALID.values(), ids=INVALID.keys())
def test_parse_flow_raises_the_engines_own_flow_error(graph: Any, field: str) -> None:
    with pytest.raises(FlowError) as info:
        parse_flow(graph)
    err = info.value
    assert not isinstance(err, InvalidArgument)
    assert err.field == field
    assert err.description
    assert str(err) == f"invalid flow: {field}: {err.description}"


@pytest.mark.parametrize(("graph", "field"), INVALID.values(), ids=INVALID.keys())
def test_flow_rules_maps_a_flow_error_to_the_same_invalid_argument(graph: Any, field: str) -> None:
    with pytest.raises(FlowError) as engine:
        parse_flow(graph)
    with pytest.raises(InvalidArgument) as domain:
        parse_runnable(graph, code_execution=False)
    err = domain.value
    assert err.reason == "INVALID_FLOW"
    assert err.field_violations == [(field, engine.value.description)]
    assert err.message == str(err) == f"invalid flow: {field}: {engine.value.description}"


def test_parse_runnable_returns_the_engines_spec_with_code_execution_as_asked() -> None:
    graph = flow("A", [agent("A", "a"), agent("B", "b", enable_code_execution=True)], [converse("A", "B")])
    assert parse_runnable(VALID, code_execution=False) == parse_flow(VALID)
    assert parse_runnable(graph, code_execution=True).agent("B").executes_code
    assert not parse_runnable(graph, code_execution=False).agent("B").executes_code


def test_check_size_maps_the_engines_size_error() -> None:
    note = {"id": "n", "type": "note", "data": {}}
    too_many = {"nodes": [{**note, "id": f"n{i}"} for i in range(MAX_FLOW_NODES + 1)], "edges": []}
    with pytest.raises(FlowError) as engine:
        check_graph_size(too_many)
    assert engine.value.field == "flow.nodes"
    with pytest.raises(InvalidArgument) as domain:
        check_size(too_many)
    assert domain.value.reason == "INVALID_FLOW"
    assert domain.value.field_violations == [("flow.nodes", engine.value.description)]
    assert domain.value.message == f"invalid flow: flow.nodes: {engine.value.description}"
    many_edges = {"nodes": [note], "edges": [{"source": "n", "target": "n"}] * (MAX_FLOW_EDGES + 1)}
    with pytest.raises(InvalidArgument) as domain:
        check_size(many_edges)
    assert domain.value.field_violations[0][0] == "flow.edges"
    # Within the limits, or not a graph at all (the parser says what is wrong with that), it passes.
    check_size(VALID)
    check_size("not a graph")


def test_the_engine_raises_no_domain_error() -> None:
    """The engine knows nothing of the service's errors: no engine module imports domain.errors."""
    importers = []
    for path in sorted(ENGINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("domain.errors"):
                importers.append(str(path.relative_to(ENGINE)))
            elif (
                isinstance(node, ast.ImportFrom)
                and node.module == "domain"
                and any(a.name == "errors" for a in node.names)
            ):
                importers.append(str(path.relative_to(ENGINE)))
    assert importers == []
