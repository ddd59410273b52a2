"""The parser's edge passes: the flow's edges checked and sorted (initializer edges, converse edges), the
converse edges wired into the first agent's chats (sequential chats, groups started through a member),
group joins and nested chats, and the chat each converse edge asks for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .autogen_defaults import DEFAULT_SUMMARY_PROMPT
from .errors import FlowError
from .fields import integer, optional_str
from .graph import GROUP_TYPE, IGNORED_TYPES, NESTED_TYPE, Edge, Graph
from .groups import group_of
from .spec import ConverseSpec, SummaryMethod


def read_edges(
    edges: list[Any], by_id: dict[str, dict[str, Any]], initializers: list[str]
) -> tuple[list[Edge], dict[str, list[str]]]:
    """The converse edges between nodes the engine runs, in flow order, and each initializer's targets."""
    converse: list[Edge] = []
    starts: dict[str, list[str]] = {}
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict):
            raise FlowError(f"flow.edges[{i}]", "each edge must be an object")
        if not isinstance(edge.get("data") or {}, dict):
            raise FlowError(f"flow.edges[{i}].data", "must be an object")
        source, target = str(edge.get("source")), str(edge.get("target"))
        for end, end_id in (("source", source), ("target", target)):
            if end_id not in by_id:
                name = f"edge {edge['id']!r}" if edge.get("id") else f"edge {i}"
                raise FlowError(f"flow.edges[{i}].{end}", f"{name} points to no node ({end_id!r})")
        data = edge.get("data") or {}
        if data.get("enable_rag"):
            raise FlowError(
                f"flow.edges[{i}].data.enable_rag", f"edge {edge.get('id')!r}: retrieval (RAG) is not supported"
            )
        if source in initializers:
            starts.setdefault(source, []).append(target)
            continue
        if by_id[source]["type"] in IGNORED_TYPES or by_id[target]["type"] in IGNORED_TYPES:
            continue
        if edge.get("type") not in (None, "converse"):
            raise FlowError(f"flow.edges[{i}].type", f"edge {edge.get('id')!r}: unknown edge type {edge.get('type')!r}")
        converse.append(Edge(i, edge.get("id"), source, target, data))
    return converse, starts


@dataclass
class Wiring:
    """The converse edges sorted by what they mean, each list in edge order."""

    chats: list[Edge] = field(default_factory=list)  # the first agent's chats
    back_edges: list[Edge] = field(default_factory=list)  # agent -> agent edges from any other agent
    joins: dict[str, list[str]] = field(default_factory=dict)  # group -> agents joined by their own edge
    hosts: dict[str, list[Edge]] = field(default_factory=dict)  # nested chat node -> edges from its upstream
    nested_edges: dict[str, list[Edge]] = field(default_factory=dict)  # nested chat node -> its chats


def wire(graph: Graph) -> Wiring:
    """Sorts every converse edge by the kinds of node it joins; refuses the edges that mean nothing."""
    wiring = Wiring()
    for edge in graph.converse:
        source, target = graph.kind(edge.source), graph.kind(edge.target)
        if edge.source == edge.target:
            raise FlowError(edge.path, f"edge {edge.id!r} joins {graph.label(edge.source)} to itself")
        if source == "agent" and target == "agent":
            (wiring.chats if edge.source == graph.first else wiring.back_edges).append(edge)
        elif source == "agent" and target == GROUP_TYPE:
            if edge.source == graph.first:
                wiring.chats.append(edge)
            elif edge.source not in wiring.joins.setdefault(edge.target, []):
                wiring.joins[edge.target].append(edge.source)
        elif source == "agent" and target == NESTED_TYPE:
            wiring.hosts.setdefault(edge.target, []).append(edge)
        elif source == "agent":
            raise FlowError(f"{edge.path}.target", f"converse edge to {edge.target!r}, which is not an agent node")
        elif source == NESTED_TYPE and target == "agent":
            wiring.nested_edges.setdefault(edge.source, []).append(edge)
        elif source == NESTED_TYPE:
            raise FlowError(
                f"{edge.path}.target",
                f"nested chat node {graph.label(edge.source)} chats with {graph.label(edge.target)}: "
                "a nested chat's recipients must be agents",
            )
        elif source == GROUP_TYPE:
            raise FlowError(
                f"{edge.path}.source",
                f"edge {edge.id!r} leaves group chat node {graph.label(edge.source)}: a group starts no chats; "
                "its members join it with their own converse edges to it, or sit inside it",
            )
        else:
            raise FlowError(f"{edge.path}.source", f"edge {edge.id!r} starts at {graph.label(edge.source)}")
    if not wiring.chats and graph.first not in [e.source for edges in wiring.hosts.values() for e in edges]:
        raise FlowError("flow.edges", f"agent {graph.name(graph.first)!r} starts the chat but has no converse edge")
    return wiring


def first_agent_chats(graph: Graph, wiring: Wiring) -> list[Edge]:
    """The first agent's chats, a chat with a member routed to its group; a back edge must be one of them."""
    recipients = [e.target for e in wiring.chats if e.target in graph.agents]
    chats = _chats_through_members(graph, wiring.chats, wiring.joins)
    for edge in wiring.back_edges:
        # A back edge between the same pair (Agentok lets users draw both directions) is the same chat.
        if edge.target != graph.first or edge.source not in recipients:
            raise FlowError(
                edge.path,
                f"edge {edge.id!r} from {graph.name(edge.source)!r} to {graph.name(edge.target)!r}: only "
                f"{graph.name(graph.first)!r}, the agent the flow starts with, starts chats (several are run "
                "one after another); other agents talk in group chats or nested chats",
            )
    return chats


def _chats_through_members(graph: Graph, chats: list[Edge], joins: dict[str, list[str]]) -> list[Edge]:
    """A chat from the first agent to a member of a group that the first agent does not start itself is a
    chat with that group (real flow 04: User -> Agent, and Agent -> Group <- User2): the group is what
    the flow draws the first agent talking to, and otherwise nothing would start it. The run says so."""
    direct = {e.target for e in chats if graph.kind(e.target) == GROUP_TYPE}
    routed: list[Edge] = []
    for edge in chats:
        groups = (
            [g for g in group_of(graph, edge.target, joins) if g not in direct] if edge.target in graph.agents else []
        )
        if len(groups) > 1:
            raise FlowError(
                edge.path,
                f"edge {edge.id!r}: {graph.name(edge.target)!r} is a member of several group chats "
                f"({', '.join(graph.label(g) for g in groups)}): connect {graph.name(graph.first)!r} to the group "
                "it talks to",
            )
        if groups:
            graph.warnings.append(
                f"edge {edge.id!r}: {graph.name(graph.first)!r} converses with {graph.name(edge.target)!r}, a "
                f"member of group chat {graph.label(groups[0])}: the chat is with the group, through its manager"
            )
            edge = Edge(edge.index, edge.id, edge.source, groups[0], edge.data)
        routed.append(edge)
    return routed


def converse_spec(graph: Graph, edge: Edge, k: int, *, host: str | None = None) -> ConverseSpec:
    """The chat an edge asks for: the first agent's k-th chat, or (`host`) the host's k-th nested chat."""
    data = edge.data
    nested = host is not None
    path = f"{edge.path}.data"
    message = optional_str(data, "message", path) or optional_str(data, "instructions", path)
    summary_method = data.get("summary_method") or SummaryMethod.LAST_MSG.value
    try:
        method = SummaryMethod(summary_method)
    except ValueError:
        raise FlowError(f"{path}.summary_method", "must be last_msg or reflection_with_llm") from None
    raw_turns = data.get("max_turns")
    # Agentok's UI stores 0 / null for "no limit".
    max_turns = None if raw_turns in (None, 0) else integer(raw_turns, f"{path}.max_turns", minimum=1)
    initiator, recipient = host or edge.source, edge.target
    if recipient in graph.agents:
        if graph.name(initiator) == graph.name(recipient):
            raise FlowError("flow.nodes", f"the two agents are both named {graph.name(initiator)!r}: names must differ")
        both = (graph.agents[initiator], graph.agents[recipient])
        if method is SummaryMethod.REFLECTION_WITH_LLM and not any(a.uses_llm for a in both):
            raise FlowError(
                f"{path}.summary_method",
                f"reflection_with_llm needs a model, and neither {both[0].name!r} nor {both[1].name!r} has one",
            )
    elif max_turns is not None and max_turns > 1:
        raise FlowError(
            f"{path}.max_turns",
            f"a chat with group {graph.label(recipient)} is one turn, however many rounds the group runs: "
            "remove max_turns and set the group's max_round",
        )
    if not nested and k == 0 and message is not None:
        graph.warnings.append(
            f"edge {edge.id!r}: the first chat opens with the message the run is started with; "
            "its message/instructions are not used"
        )
    if nested and k > 0 and message is None:
        graph.warnings.append(
            f"edge {edge.id!r}: this nested chat with {graph.name(recipient)!r} has no message or instructions, "
            "so it is skipped, as in AutoGen (only the first nested chat opens with the message it answers)"
        )
    return ConverseSpec(
        initiator=initiator,
        recipient=recipient,
        max_turns=max_turns,
        message=message,
        summary_method=method,
        summary_prompt=optional_str(data, "summary_prompt", path) or DEFAULT_SUMMARY_PROMPT,
    )
