"""What the flow parser's tests share: the real flows by prefix, a minimal two-agent flow to vary, and the
assertions every refused flow must meet (INVALID_FLOW, one field violation, a message naming it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentok_server.domain.errors import InvalidArgument
from agentok_server.domain.flow_rules import parse_runnable
from agentok_server.engine.flow_spec import AgentSpec, parse_flow

from .scripted import agent

FLOWS_DIR = Path(__file__).resolve().parents[1] / "data" / "agentok-flows"


def real_flow(prefix: str) -> dict[str, Any]:
    """One of the 15 real flows in tests/data/agentok-flows, by its two-digit prefix (e.g. "01")."""
    (path,) = FLOWS_DIR.glob(f"{prefix}-*.json")
    flow = json.loads(path.read_text())
    assert isinstance(flow, dict)
    return flow


def agent_node(node_id: str, node_type: str = "conversable", **data: Any) -> dict[str, Any]:
    """An agent node with only the given settings (the parser's defaults are what these tests check)."""
    return agent(node_id, node_type=node_type, mode=None, llm=None, **{"name": node_id.upper(), **data})


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
