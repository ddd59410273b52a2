"""Reads Agentok Studio flow JSON (2024 and 2025 schemas) into a FlowSpec the engine can run.

Everything a flow asks for that the engine cannot honour is rejected here, naming the node or edge,
so a chat never starts on a flow that would silently behave differently from Agentok Studio.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..domain.errors import InvalidArgument

AGENT_TYPES = {"user", "assistant", "conversable"}
# Node types the engine knows but does not run yet, with what a user can do about them.
NOT_YET_SUPPORTED = {
    "groupchat": "group chats are not supported yet",
    "nestedchat": "nested chats are not supported yet",
    "gpt_assistant": "GPTAssistantAgent needs the OpenAI Assistants API, which this service does not provide",
    "config": "the 2023 FlowGen 'config' node is not supported: recreate the flow in Agentok Studio",
}
UNSUPPORTED_CLASSES = {
    "RetrieveUserProxyAgent": "retrieval (RAG) agents are not supported",
    "RetrieveAssistantAgent": "retrieval (RAG) agents are not supported",
}
IGNORED_TYPES = {"note"}
DEFAULT_MCAR = 100


class HumanInputMode(enum.StrEnum):
    ALWAYS = "ALWAYS"
    TERMINATE = "TERMINATE"
    NEVER = "NEVER"


# AutoGen's per-class defaults (UserProxyAgent asks always, ConversableAgent at termination).
_DEFAULT_MODE = {"user": HumanInputMode.ALWAYS, "conversable": HumanInputMode.TERMINATE}
# AssistantAgent's default prompt ends by asking for TERMINATE, which is what lets a user proxy with
# termination_msg end the chat; ours keeps that and drops AutoGen's coding instructions (no code runs here).
_DEFAULT_SYSTEM = {
    "assistant": "You are a helpful AI assistant. Solve tasks using your language skills. "
    'Reply "TERMINATE" in the end when everything is done.',
    "conversable": "You are a helpful AI Assistant.",
}


@dataclass(frozen=True)
class LlmConfig:
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class AgentSpec:
    node_id: str
    name: str
    kind: str
    system_message: str
    human_input_mode: HumanInputMode
    max_consecutive_auto_reply: int
    termination_msg: str
    uses_llm: bool
    default_auto_reply: str

    def is_termination_msg(self, content: str) -> bool:
        # Agentok turns a node's termination_msg into a case-insensitive substring check;
        # AutoGen's default (no termination_msg) is content exactly "TERMINATE".
        if self.termination_msg:
            return self.termination_msg.lower() in content.lower()
        return content == "TERMINATE"


@dataclass(frozen=True)
class ConverseSpec:
    initiator: str
    recipient: str
    max_turns: int | None


@dataclass(frozen=True)
class FlowSpec:
    agents: dict[str, AgentSpec]
    chat: ConverseSpec
    llm: LlmConfig
    warnings: list[str] = field(default_factory=list)

    def agent(self, node_id: str) -> AgentSpec:
        return self.agents[node_id]


def _fail(field_path: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid flow: {field_path}: {description}",
        reason="INVALID_FLOW",
        field_violations=[(field_path, description)],
    )


def _node_class(data: dict[str, Any]) -> str:
    return str(data.get("class_type") or data.get("class") or "")


def _int(value: Any, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < minimum:
        raise _fail(path, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _llm_config(raw: Any, path: str) -> LlmConfig:
    if raw is None:
        return LlmConfig()
    if not isinstance(raw, dict):
        raise _fail(path, "must be an object with model, base_url, api_key, temperature, max_tokens")
    temperature = raw.get("temperature")
    max_tokens = raw.get("max_tokens")
    if temperature is not None and not isinstance(temperature, int | float):
        raise _fail(f"{path}.temperature", "must be a number")
    return LlmConfig(
        base_url=raw.get("base_url") or None,
        model=raw.get("model") or None,
        api_key=raw.get("api_key") or None,
        temperature=float(temperature) if temperature is not None else None,
        max_tokens=_int(max_tokens, f"{path}.max_tokens", minimum=1) if max_tokens is not None else None,
    )


def _agent(node: dict[str, Any], index: int) -> tuple[AgentSpec, list[str]]:
    data = node.get("data") or {}
    path = f"flow.nodes[{index}]"
    kind = node["type"]
    node_id = str(node["id"])
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"{path}.data.name", f"agent node {node_id!r} needs a name")
    raw_mode = data.get("human_input_mode")
    if raw_mode is None:
        mode = _DEFAULT_MODE.get(kind, HumanInputMode.NEVER)
    else:
        try:
            mode = HumanInputMode(str(raw_mode).upper())
        except ValueError:
            raise _fail(f"{path}.data.human_input_mode", "must be ALWAYS, TERMINATE or NEVER") from None
    mcar_raw = data.get("max_consecutive_auto_reply")
    mcar = DEFAULT_MCAR if mcar_raw is None else _int(mcar_raw, f"{path}.data.max_consecutive_auto_reply")
    # Agentok writes disable_llm on conversable nodes and enable_llm on user nodes (and the conversable
    # panel writes enable_llm too); a user proxy has no model unless asked, the others have one unless told.
    if kind == "user":
        uses_llm = data.get("enable_llm") is True or data.get("disable_llm") is False
    else:
        uses_llm = data.get("disable_llm") is not True and data.get("enable_llm") is not False
    default_reply = data.get("default_auto_reply")
    if default_reply is not None and not isinstance(default_reply, str):
        raise _fail(f"{path}.data.default_auto_reply", "must be a string")
    system_message = data.get("system_message")
    if not isinstance(system_message, str) or not system_message:
        system_message = _DEFAULT_SYSTEM.get(kind, "")
    warnings = []
    if data.get("enable_code_execution"):
        warnings.append(
            f"node {node_id!r} ({name}): code execution is off on this server; the agent replies as AutoGen "
            "does when a message holds no code to run"
        )
    termination = data.get("termination_msg")
    return (
        AgentSpec(
            node_id=node_id,
            name=name.strip(),
            kind=kind,
            system_message=system_message,
            human_input_mode=mode,
            max_consecutive_auto_reply=mcar,
            termination_msg=termination if isinstance(termination, str) else "",
            uses_llm=uses_llm,
            default_auto_reply=default_reply or "",
        ),
        warnings,
    )


def parse_flow(flow: Any) -> FlowSpec:
    """Validates a flow graph; raises InvalidArgument (reason INVALID_FLOW) naming what is wrong."""
    if not isinstance(flow, dict):
        raise _fail("flow", "must be an object with nodes and edges")
    nodes = flow.get("nodes")
    edges = flow.get("edges", [])
    if not isinstance(nodes, list) or not nodes:
        raise _fail("flow.nodes", "must be a non-empty list of nodes")
    if not isinstance(edges, list):
        raise _fail("flow.edges", "must be a list of edges")

    by_id: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or "id" not in node or not isinstance(node.get("type"), str):
            raise _fail(f"flow.nodes[{i}]", "each node needs an id and a type")
        if not isinstance(node.get("data") or {}, dict):
            raise _fail(f"flow.nodes[{i}].data", "must be an object")
        node_id = str(node["id"])
        if node_id in by_id:
            raise _fail(f"flow.nodes[{i}].id", f"duplicate node id {node_id!r}")
        by_id[node_id] = node

    agents: dict[str, AgentSpec] = {}
    warnings: list[str] = []
    initializers: list[str] = []
    for i, node in enumerate(nodes):
        node_id, kind = str(node["id"]), node["type"]
        data = node.get("data") or {}
        label = f"node {node_id!r} ({data.get('name') or kind})"
        if kind in IGNORED_TYPES:
            continue
        if kind == "initializer":
            initializers.append(node_id)
            continue
        if kind in NOT_YET_SUPPORTED:
            raise _fail(f"flow.nodes[{i}].type", f"{label}: {NOT_YET_SUPPORTED[kind]}")
        if kind not in AGENT_TYPES:
            raise _fail(f"flow.nodes[{i}].type", f"{label}: unknown node type {kind!r}")
        cls = _node_class(data)
        if cls in UNSUPPORTED_CLASSES:
            raise _fail(f"flow.nodes[{i}].data.class", f"{label}: {cls}: {UNSUPPORTED_CLASSES[cls]}")
        agent, agent_warnings = _agent(node, i)
        agents[node_id] = agent
        warnings.extend(agent_warnings)

    converse: list[tuple[int, str, str, dict[str, Any]]] = []
    starts: dict[str, list[str]] = {}
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict):
            raise _fail(f"flow.edges[{i}]", "each edge must be an object")
        if not isinstance(edge.get("data") or {}, dict):
            raise _fail(f"flow.edges[{i}].data", "must be an object")
        source, target = str(edge.get("source")), str(edge.get("target"))
        for end, end_id in (("source", source), ("target", target)):
            if end_id not in by_id:
                raise _fail(f"flow.edges[{i}].{end}", f"edge {edge.get('id')!r} points to no node ({end_id!r})")
        data = edge.get("data") or {}
        if data.get("tools"):
            raise _fail(
                f"flow.edges[{i}].data.tools",
                f"edge {edge.get('id')!r} binds tools {data['tools']}; this service has no tools to bind",
            )
        if source in initializers:
            starts.setdefault(source, []).append(target)
            continue
        if by_id[source]["type"] in IGNORED_TYPES or by_id[target]["type"] in IGNORED_TYPES:
            continue
        if edge.get("type") not in (None, "converse"):
            raise _fail(f"flow.edges[{i}].type", f"edge {edge.get('id')!r}: unknown edge type {edge.get('type')!r}")
        converse.append((i, source, target, data))

    if not initializers:
        raise _fail("flow.nodes", "no initializer node: add one and connect it to the agent that starts the chat")
    if len(initializers) > 1:
        raise _fail("flow.nodes", f"more than one initializer node ({', '.join(initializers)}): keep exactly one")
    first_targets = starts.get(initializers[0], [])
    if len(first_targets) != 1:
        raise _fail(
            "flow.edges",
            f"the initializer {initializers[0]!r} must connect to exactly one agent (found {len(first_targets)})",
        )
    first = first_targets[0]
    if first not in agents:
        raise _fail("flow.edges", f"the initializer connects to {first!r}, which is not an agent node")

    outgoing = [(i, t, d) for i, s, t, d in converse if s == first]
    if not outgoing:
        raise _fail("flow.edges", f"agent {agents[first].name!r} starts the chat but has no converse edge")
    if len(outgoing) > 1:
        raise _fail(
            "flow.edges",
            f"agent {agents[first].name!r} has {len(outgoing)} converse edges: sequential chats are not supported yet",
        )
    index, recipient, data = outgoing[0]
    if recipient not in agents:
        raise _fail(f"flow.edges[{index}].target", f"converse edge to {recipient!r}, which is not an agent node")
    for i, source, target, _ in converse:
        # A back edge between the same pair (Agentok lets users draw both directions) is the same chat.
        if {source, target} != {first, recipient}:
            raise _fail(
                f"flow.edges[{i}]",
                "only one two-agent chat per flow is supported yet; this edge joins other agents",
            )
    max_turns_raw = data.get("max_turns")
    max_turns = (
        None if max_turns_raw in (None, 0) else _int(max_turns_raw, f"flow.edges[{index}].data.max_turns", minimum=1)
    )
    if agents[first].name == agents[recipient].name:
        raise _fail("flow.nodes", f"the two agents are both named {agents[first].name!r}: names must differ")
    return FlowSpec(
        agents={first: agents[first], recipient: agents[recipient]},
        chat=ConverseSpec(initiator=first, recipient=recipient, max_turns=max_turns),
        llm=_llm_config(flow.get("llm_config"), "flow.llm_config"),
        warnings=warnings,
    )
