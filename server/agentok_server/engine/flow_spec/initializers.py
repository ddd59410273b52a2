"""The parser's initializer pass: exactly one initializer node, whose one edge names the agent the flow
starts with."""

from __future__ import annotations

from .errors import FlowError
from .spec import AgentSpec


def first_agent(initializers: list[str], starts: dict[str, list[str]], agents: dict[str, AgentSpec]) -> str:
    """The first agent's node id; `starts`: each initializer's edge targets, in edge order."""
    if not initializers:
        raise FlowError("flow.nodes", "no initializer node: add one and connect it to the agent that starts the chat")
    if len(initializers) > 1:
        raise FlowError("flow.nodes", f"more than one initializer node ({', '.join(initializers)}): keep exactly one")
    first_targets = starts.get(initializers[0], [])
    if len(first_targets) != 1:
        raise FlowError(
            "flow.edges",
            f"the initializer {initializers[0]!r} must connect to exactly one agent (found {len(first_targets)})",
        )
    first = first_targets[0]
    if first not in agents:
        raise FlowError("flow.edges", f"the initializer connects to {first!r}, which is not an agent node")
    return first
