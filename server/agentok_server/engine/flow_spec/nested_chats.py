"""The parser's nested chat pass: each nested chat node's host agent and its chats, in edge order
(docs/autogen-semantics.md §4)."""

from __future__ import annotations

from .edges import converse_spec
from .errors import FlowError
from .graph import NESTED_TYPE, Edge, Graph
from .spec import ConverseSpec, GroupSpec


def read_nested(
    graph: Graph, hosts: dict[str, list[Edge]], nested_edges: dict[str, list[Edge]]
) -> dict[str, tuple[ConverseSpec, ...]]:
    """Host agent -> its nested chats; `hosts`: each node's upstream edges, `nested_edges`: its chats."""
    nested: dict[str, tuple[ConverseSpec, ...]] = {}
    for i, node in enumerate(graph.nodes):
        if node["type"] != NESTED_TYPE:
            continue
        node_id, path = str(node["id"]), f"flow.nodes[{i}]"
        upstream = hosts.get(node_id, [])
        if len(upstream) != 1:
            raise FlowError(
                path,
                f"nested chat node {graph.label(node_id)} must have exactly one upstream agent, the one whose "
                f"replies its chats make (found {len(upstream)}): connect one agent to it",
            )
        host = upstream[0].source
        if host in nested:
            raise FlowError(path, f"agent {graph.name(host)!r} has two nested chat nodes: keep one")
        chats = nested_edges.get(node_id, [])
        if not chats:
            # As in Agentok Studio, where it registers an empty queue: the host's replies are its own (real
            # flow 08 has one).
            graph.warnings.append(
                f"nested chat node {graph.label(node_id)} has no chats and is ignored: connect it to the agents "
                "it chats with"
            )
            continue
        nested[host] = tuple(converse_spec(graph, edge, k, host=host) for k, edge in enumerate(chats))
    return nested


def check_nested_hosts(
    graph: Graph,
    chats: tuple[ConverseSpec, ...],
    groups: dict[str, GroupSpec],
    nested: dict[str, tuple[ConverseSpec, ...]],
) -> None:
    """A host's nested chats must be able to run: it takes part in a chat, and is no nested chat's recipient."""
    talking = [graph.first, *(c.recipient for c in chats), *(m for g in groups.values() for m in g.members)]
    recipients = [c.recipient for queue in nested.values() for c in queue]
    for host in nested:
        if host in recipients:
            raise FlowError(
                "flow.nodes",
                f"agent {graph.name(host)!r} is a recipient of a nested chat and hosts nested chats itself: "
                "nested chats inside nested chats are not supported",
            )
        if host not in talking:
            raise FlowError(
                "flow.nodes",
                f"agent {graph.name(host)!r} hosts nested chats but takes part in no chat, so they would never run",
            )
