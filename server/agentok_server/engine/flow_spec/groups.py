"""The parser's group pass: each group chat node's members, in AutoGen's list order, its settings, and the
manager that runs it (docs/autogen-semantics.md §3, §7)."""

from __future__ import annotations

from typing import Any

from .autogen_defaults import DEFAULT_MAX_ROUND, MANAGER_MCAR, MANAGER_NAME, MANAGER_SYSTEM_MESSAGE
from .errors import FlowError
from .fields import integer
from .graph import GROUP_TYPE, IGNORED_TYPES, Edge, Graph
from .spec import AgentSpec, GroupSpec, HumanInputMode, SpeakerSelection


def group_of(graph: Graph, agent_id: str, joins: dict[str, list[str]]) -> list[str]:
    """The groups an agent is a member of: inside them (parentId), or joined by its own converse edge."""
    inside = str(graph.by_id[agent_id].get("parentId") or graph.by_id[agent_id].get("parentNode") or "")
    groups = [g for g, joined in joins.items() if agent_id in joined]
    if inside in graph.by_id and graph.by_id[inside]["type"] == GROUP_TYPE and inside not in groups:
        groups.insert(0, inside)
    return groups


def read_groups(graph: Graph, chats: list[Edge], joins: dict[str, list[str]]) -> dict[str, GroupSpec]:
    """Every group chat node, which the first agent's `chats` must start; `joins`: agents joined by their edge."""
    groups: dict[str, GroupSpec] = {}
    started = [e.target for e in chats]
    # The first agent is a member of a group it converses with by its own edge (Agentok's "preceding node").
    joined_by_first = [e.target for e in graph.converse if e.source == graph.first and e.target in graph.by_id]
    for i, node in enumerate(graph.nodes):
        if node["type"] != GROUP_TYPE:
            continue
        group_id, path = str(node["id"]), f"flow.nodes[{i}]"
        if group_id not in started:
            raise FlowError(
                path,
                f"group chat node {graph.label(group_id)} is never started: connect "
                f"{graph.name(graph.first)!r}, the agent the flow starts with, to it with a converse edge",
            )
        # Agentok's codegen: the agents inside the group, then the agent that starts it, appended last
        # (so round robin starts with the first one inside). Agents joined to the group by their own
        # converse edge come between the two, in edge order.
        members: list[str] = []
        for child in graph.nodes:
            if str(child.get("parentId") or child.get("parentNode") or "") != group_id:
                continue
            child_id = str(child["id"])
            if child["type"] in IGNORED_TYPES:
                continue
            if child_id not in graph.agents:
                raise FlowError(path, f"group chat node {graph.label(group_id)} holds {graph.label(child_id)}")
            members.append(child_id)
        for agent_id in [*joins.get(group_id, []), *([graph.first] if group_id in joined_by_first else [])]:
            if agent_id not in members:
                members.append(agent_id)
        if len(members) < 2:
            raise FlowError(
                path, f"group chat node {graph.label(group_id)} needs at least two agents (found {len(members)})"
            )
        names = [graph.name(m) for m in members]
        for name in names:
            if names.count(name) > 1 or name == MANAGER_NAME:
                raise FlowError(
                    path,
                    f"group chat node {graph.label(group_id)}: more than one member is named {name!r}"
                    if name != MANAGER_NAME
                    else f"group chat node {graph.label(group_id)}: no member can be named {MANAGER_NAME!r}, "
                    "the group's manager",
                )
        groups[group_id] = _group_settings(node, path, tuple(members))
    return groups


def manager(group: GroupSpec) -> AgentSpec:
    """The group's GroupChatManager, as AutoGen makes it, under the group node's id."""
    return AgentSpec(
        node_id=group.node_id,
        name=MANAGER_NAME,
        kind=GROUP_TYPE,
        system_message=MANAGER_SYSTEM_MESSAGE,
        human_input_mode=HumanInputMode.NEVER,
        max_consecutive_auto_reply=MANAGER_MCAR,
        termination_msg="",
        uses_llm=True,  # Agentok's codegen always gives the manager the flow's model
        default_auto_reply="",
        description=MANAGER_SYSTEM_MESSAGE,
    )


def _group_settings(node: dict[str, Any], path: str, members: tuple[str, ...]) -> GroupSpec:
    data = node.get("data") or {}
    raw_round = data.get("max_round")
    max_round = DEFAULT_MAX_ROUND if raw_round is None else integer(raw_round, f"{path}.data.max_round", minimum=1)
    raw_method = data.get("speaker_selection_method")
    try:
        # AutoGen's GroupChat default is "auto"; it reads the method case-insensitively.
        method = SpeakerSelection(str(raw_method or SpeakerSelection.AUTO.value).lower())
    except ValueError:
        raise FlowError(
            f"{path}.data.speaker_selection_method", "must be round_robin, random, manual or auto"
        ) from None
    introductions = data.get("send_introductions", False)
    if not isinstance(introductions, bool):
        raise FlowError(f"{path}.data.send_introductions", "must be true or false")
    return GroupSpec(
        node_id=str(node["id"]),
        name=str(data.get("name") or "Group"),
        members=members,
        max_round=max_round,
        speaker_selection=method,
        send_introductions=introductions,
    )
