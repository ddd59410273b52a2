"""Reads Agentok Studio flow JSON (2024 and 2025 schemas) into a FlowSpec the engine can run.

Everything a flow asks for that the engine cannot honour is rejected here (FlowError), naming the node or
edge, so a chat never starts on a flow that would silently behave differently from Agentok Studio
(what Agentok's flow JSON means: docs/autogen-semantics.md §7).

How the graph reads (converse edges; the initializer's edge names the first agent):
- first agent -> agent or group node: a chat the first agent starts. Several: sequential chats, in edge
  order (Agentok's codegen ordered them by flow.nodes; the issue asks for edge order). The first chat opens
  with the run's message; the later ones with the edge's `message` or `instructions`, else a person's.
- first agent -> a member of a group it does not start itself: a chat with that group (real flow 04).
- other agent -> group node: that agent joins the group. A group's members: the agents inside it
  (`parentId`, in node order), then the agents joined by their own edge (edge order), then the first
  agent if its own edge joins it: Agentok appends the group's "preceding node" last.
- agent -> nestedchat node -> agents: the agent's nested chats, in edge order (exactly one upstream agent).
- recipient -> first agent, where the first agent has a chat with that recipient: the same chat.

Modules: `spec` (what the engine runs), `autogen_defaults`, `errors`, and the parser's passes in the order
`parser.parse_flow` runs them: `nodes`, `edges` (then `initializers`), `groups`, `nested_chats`, `tools`.
"""

from __future__ import annotations

from .autogen_defaults import DEFAULT_MAX_ROUND, DEFAULT_MCAR, DEFAULT_SUMMARY_PROMPT, MANAGER_NAME
from .errors import FlowError
from .parser import check_graph_size, parse_flow
from .spec import (
    AgentSpec,
    ConverseSpec,
    FlowSpec,
    GroupSpec,
    HumanInputMode,
    LlmConfig,
    SpeakerSelection,
    SummaryMethod,
    ToolBinding,
)

__all__ = [
    "DEFAULT_MAX_ROUND",
    "DEFAULT_MCAR",
    "DEFAULT_SUMMARY_PROMPT",
    "MANAGER_NAME",
    "AgentSpec",
    "ConverseSpec",
    "FlowError",
    "FlowSpec",
    "GroupSpec",
    "HumanInputMode",
    "LlmConfig",
    "SpeakerSelection",
    "SummaryMethod",
    "ToolBinding",
    "check_graph_size",
    "parse_flow",
]
