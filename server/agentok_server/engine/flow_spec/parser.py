"""The entry point: a flow's JSON through the passes (nodes, edges, initializer, wiring, groups, nested chats, tools)
into a FlowSpec. Each pass raises FlowError naming the node or edge; the order of the passes is the order
in which a flow's mistakes are reported."""

from __future__ import annotations

from typing import Any

from ...domain.limits import MAX_FLOW_EDGES, MAX_FLOW_NODES
from .edges import converse_spec, first_agent_chats, read_edges, wire
from .errors import FlowError
from .graph import Graph
from .groups import manager, read_groups
from .initializers import first_agent
from .nested_chats import check_nested_hosts, read_nested
from .nodes import index_nodes, llm_config, read_nodes
from .spec import AgentSpec, ConverseSpec, FlowSpec, GroupSpec
from .tools import read_tool_bindings


def check_graph_size(flow: Any) -> None:
    """At most MAX_FLOW_NODES nodes and MAX_FLOW_EDGES edges: checked before anything walks the graph."""
    if not isinstance(flow, dict):
        return
    nodes, edges = flow.get("nodes"), flow.get("edges")
    if isinstance(nodes, list) and len(nodes) > MAX_FLOW_NODES:
        raise FlowError("flow.nodes", f"has {len(nodes)} nodes; a flow may have at most {MAX_FLOW_NODES}")
    if isinstance(edges, list) and len(edges) > MAX_FLOW_EDGES:
        raise FlowError("flow.edges", f"has {len(edges)} edges; a flow may have at most {MAX_FLOW_EDGES}")


def parse_flow(flow: Any, *, code_execution: bool = False) -> FlowSpec:
    """Validates a flow graph; raises FlowError naming what is wrong.
    `code_execution`: whether this server runs code (AGENTOK_CODE_EXECUTION_ENABLED)."""
    if not isinstance(flow, dict):
        raise FlowError("flow", "must be an object with nodes and edges")
    nodes = flow.get("nodes")
    edges = flow.get("edges", [])
    if not isinstance(nodes, list) or not nodes:
        raise FlowError("flow.nodes", "must be a non-empty list of nodes")
    if not isinstance(edges, list):
        raise FlowError("flow.edges", "must be a list of edges")
    check_graph_size(flow)

    by_id = index_nodes(nodes)
    read = read_nodes(nodes, code_execution)
    converse, starts = read_edges(edges, by_id, read.initializers)
    first = first_agent(read.initializers, starts, read.agents)

    graph = Graph(nodes, by_id, read.agents, first, converse)
    chats, groups, nested = _read_chats(graph)
    tools = read_tool_bindings(graph)
    return FlowSpec(
        agents=_participants(graph, chats, groups, nested),
        initiator=first,
        chats=chats,
        llm=llm_config(flow.get("llm_config"), "flow.llm_config"),
        warnings=read.warnings + graph.warnings,
        groups=groups,
        nested=nested,
        tools=tools,
    )


def _read_chats(
    graph: Graph,
) -> tuple[tuple[ConverseSpec, ...], dict[str, GroupSpec], dict[str, tuple[ConverseSpec, ...]]]:
    """The first agent's chats, the groups and the nested chats the converse edges draw."""
    wiring = wire(graph)
    edges = first_agent_chats(graph, wiring)
    groups = read_groups(graph, edges, wiring.joins)
    nested = read_nested(graph, wiring.hosts, wiring.nested_edges)
    chats = tuple(converse_spec(graph, edge, k) for k, edge in enumerate(edges))
    check_nested_hosts(graph, chats, groups, nested)
    if not chats and nested[graph.first][0].message is not None:
        graph.warnings.append(
            f"the first nested chat of {graph.name(graph.first)!r} opens with the message the run is started "
            "with; its message/instructions are not used"
        )
    return chats, groups, nested


def _participants(
    graph: Graph,
    chats: tuple[ConverseSpec, ...],
    groups: dict[str, GroupSpec],
    nested: dict[str, tuple[ConverseSpec, ...]],
) -> dict[str, AgentSpec]:
    """Every agent that takes part, in flow order, then each group's manager."""
    ids = [graph.first, *(c.recipient for c in chats)]
    ids += [m for g in groups.values() for m in g.members]
    ids += [c.recipient for queue in nested.values() for c in queue]
    agents = {a: graph.agents[a] for a in sorted(set(ids) & set(graph.agents), key=graph.position.__getitem__)}
    for group in groups.values():
        agents[group.node_id] = manager(group)
    return agents
