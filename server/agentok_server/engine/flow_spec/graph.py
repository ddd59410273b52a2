"""The flow's graph as the parser's passes share it: Agentok's node types, converse edges, and the context
(nodes, agents, the first agent) that the edge, group and nested chat passes read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .spec import AgentSpec

AGENT_TYPES = {"user", "assistant", "conversable"}
GROUP_TYPE = "groupchat"
NESTED_TYPE = "nestedchat"
INITIALIZER_TYPE = "initializer"
# Node types the engine does not run, with what a user can do about them.
UNSUPPORTED_TYPES = {
    "gpt_assistant": "GPTAssistantAgent needs the OpenAI Assistants API, which this service does not provide",
    "config": "the 2023 FlowGen 'config' node is not supported: recreate the flow in Agentok Studio",
}
UNSUPPORTED_CLASSES = {
    "RetrieveUserProxyAgent": "retrieval (RAG) agents are not supported",
    "RetrieveAssistantAgent": "retrieval (RAG) agents are not supported",
}
IGNORED_TYPES = {"note"}


@dataclass
class Edge:
    """A converse edge between two nodes the engine runs; `index` is its place in flow.edges."""

    index: int
    id: Any
    source: str
    target: str
    data: dict[str, Any]

    @property
    def path(self) -> str:
        return f"flow.edges[{self.index}]"


@dataclass
class Graph:
    """What the passes after nodes and edges read: every node, the agents, the agent the initializer starts,
    and the converse edges in flow order. Passes append what they warn about to `warnings`."""

    nodes: list[dict[str, Any]]
    by_id: dict[str, dict[str, Any]]
    agents: dict[str, AgentSpec]
    first: str
    converse: list[Edge]
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.position = {str(node["id"]): i for i, node in enumerate(self.nodes)}

    def kind(self, node_id: str) -> str:
        if node_id in self.agents:
            return "agent"
        return str(self.by_id[node_id]["type"])

    def label(self, node_id: str) -> str:
        data = self.by_id[node_id].get("data") or {}
        return f"{node_id!r} ({data.get('name') or self.by_id[node_id]['type']})"

    def name(self, node_id: str) -> str:
        return self.agents[node_id].name
