"""The parser's first pass: the flow's nodes, read into agents (with AutoGen's defaults for what a node leaves
unsaid), the initializers, and the flow's model settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .autogen_defaults import (
    ASSISTANT_DESCRIPTION,
    DEFAULT_HUMAN_INPUT_MODE,
    DEFAULT_MCAR,
    DEFAULT_SYSTEM_MESSAGE,
    USER_DESCRIPTIONS,
)
from .errors import FlowError
from .fields import integer
from .graph import (
    AGENT_TYPES,
    GROUP_TYPE,
    IGNORED_TYPES,
    INITIALIZER_TYPE,
    NESTED_TYPE,
    UNSUPPORTED_CLASSES,
    UNSUPPORTED_TYPES,
)
from .spec import AgentSpec, HumanInputMode, LlmConfig


@dataclass
class Nodes:
    """The nodes pass's result: agents by node id (flow order), the initializer node ids, and warnings."""

    agents: dict[str, AgentSpec] = field(default_factory=dict)
    initializers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def index_nodes(nodes: list[Any]) -> dict[str, dict[str, Any]]:
    """Every node by its id; each needs an id (unique) and a type."""
    by_id: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or "id" not in node or not isinstance(node.get("type"), str):
            raise FlowError(f"flow.nodes[{i}]", "each node needs an id and a type")
        if not isinstance(node.get("data") or {}, dict):
            raise FlowError(f"flow.nodes[{i}].data", "must be an object")
        node_id = str(node["id"])
        if node_id in by_id:
            raise FlowError(f"flow.nodes[{i}].id", f"duplicate node id {node_id!r}")
        by_id[node_id] = node
    return by_id


def read_nodes(nodes: list[dict[str, Any]], code_execution: bool) -> Nodes:
    """The agents and initializers; groups, nested chat nodes and notes are read by later passes (or not)."""
    read = Nodes()
    for i, node in enumerate(nodes):
        node_id, kind = str(node["id"]), node["type"]
        data = node.get("data") or {}
        label = f"node {node_id!r} ({data.get('name') or kind})"
        if kind in IGNORED_TYPES or kind in (GROUP_TYPE, NESTED_TYPE):
            continue
        if kind == INITIALIZER_TYPE:
            read.initializers.append(node_id)
            continue
        if kind in UNSUPPORTED_TYPES:
            raise FlowError(f"flow.nodes[{i}].type", f"{label}: {UNSUPPORTED_TYPES[kind]}")
        if kind not in AGENT_TYPES:
            raise FlowError(f"flow.nodes[{i}].type", f"{label}: unknown node type {kind!r}")
        cls = _node_class(data)
        if cls in UNSUPPORTED_CLASSES:
            raise FlowError(f"flow.nodes[{i}].data.class", f"{label}: {cls}: {UNSUPPORTED_CLASSES[cls]}")
        agent, agent_warnings = _agent(node, i, code_execution)
        read.agents[node_id] = agent
        read.warnings.extend(agent_warnings)
    return read


def llm_config(raw: Any, path: str) -> LlmConfig:
    if raw is None:
        return LlmConfig()
    if not isinstance(raw, dict):
        raise FlowError(path, "must be an object with model, base_url, api_key, temperature, max_tokens")
    temperature = raw.get("temperature")
    max_tokens = raw.get("max_tokens")
    if temperature is not None and not isinstance(temperature, int | float):
        raise FlowError(f"{path}.temperature", "must be a number")
    base_url = raw.get("base_url")
    # Only its type here: whether it may be called is the egress policy's (engine/egress.py), which
    # FlowService applies at CreateFlow and the model client again at every call.
    if base_url is not None and not isinstance(base_url, str):
        raise FlowError(f"{path}.base_url", "must be a string (an http:// or https:// URL)")
    return LlmConfig(
        base_url=base_url or None,
        model=raw.get("model") or None,
        api_key=raw.get("api_key") or None,
        temperature=float(temperature) if temperature is not None else None,
        max_tokens=integer(max_tokens, f"{path}.max_tokens", minimum=1) if max_tokens is not None else None,
    )


def _node_class(data: dict[str, Any]) -> str:
    return str(data.get("class_type") or data.get("class") or "")


def _agent(node: dict[str, Any], index: int, code_execution: bool) -> tuple[AgentSpec, list[str]]:
    data = node.get("data") or {}
    path = f"flow.nodes[{index}]"
    kind = node["type"]
    node_id = str(node["id"])
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise FlowError(f"{path}.data.name", f"agent node {node_id!r} needs a name")
    raw_mode = data.get("human_input_mode")
    if raw_mode is None:
        mode = HumanInputMode(DEFAULT_HUMAN_INPUT_MODE.get(kind, HumanInputMode.NEVER))
    else:
        try:
            mode = HumanInputMode(str(raw_mode).upper())
        except ValueError:
            raise FlowError(f"{path}.data.human_input_mode", "must be ALWAYS, TERMINATE or NEVER") from None
    mcar_raw = data.get("max_consecutive_auto_reply")
    mcar = DEFAULT_MCAR if mcar_raw is None else integer(mcar_raw, f"{path}.data.max_consecutive_auto_reply")
    # Agentok writes disable_llm on conversable nodes and enable_llm on user nodes (and the conversable
    # panel writes enable_llm too); a user proxy has no model unless asked, the others have one unless told.
    if kind == "user":
        uses_llm = data.get("enable_llm") is True or data.get("disable_llm") is False
    else:
        uses_llm = data.get("disable_llm") is not True and data.get("enable_llm") is not False
    default_reply = data.get("default_auto_reply")
    if default_reply is not None and not isinstance(default_reply, str):
        raise FlowError(f"{path}.data.default_auto_reply", "must be a string")
    system_message = data.get("system_message")
    own_system_message = isinstance(system_message, str) and bool(system_message)
    if not isinstance(system_message, str) or not system_message:
        system_message = DEFAULT_SYSTEM_MESSAGE.get(kind, "")
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        if kind == "user":
            description = USER_DESCRIPTIONS[mode]
        elif kind == "assistant" and not own_system_message:
            description = ASSISTANT_DESCRIPTION
        else:
            description = system_message
    warnings = []
    executes_code = bool(data.get("enable_code_execution")) and code_execution
    if data.get("enable_code_execution") and not code_execution:
        warnings.append(
            f"node {node_id!r} ({name}): code execution is off on this server; the agent replies as AutoGen "
            "does when a message holds no code to run"
        )
    if data.get("tools"):
        warnings.append(
            f"node {node_id!r} ({name}): node-level tools are Agentok Studio's UI state and bind nothing; "
            "tools are bound on converse edges (edge data.tools)"
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
            description=description,
            executes_code=executes_code,
        ),
        warnings,
    )
