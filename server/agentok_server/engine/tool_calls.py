"""Tools as the engine sees them (docs/autogen-semantics.md, "Tools"): which agents' model requests offer
which tools, which agent runs which function, and AutoGen's texts for calls nobody can run.

A flow binds tools by id on its edges (flow_spec.ToolBinding); the run resolves the ids to their definitions
(the owner's stored tools) before it starts and hands the engine a ToolSet. As in AutoGen, a name bound twice
to one agent keeps the last binding (register_for_llm / register_for_execution overwrite).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain.model import ToolCall, ToolResult, Usage
from .flow_spec import ToolBinding


@dataclass(frozen=True)
class ModelReply:
    """An agent's model reply when its request offered tools: text, or calls of them (or both)."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    # What the call used, as the provider reported it; None when it did not.
    usage: Usage | None = None


@dataclass(frozen=True)
class ToolDef:
    """What the engine knows of a tool: its id and the function the model is offered."""

    id: str
    name: str
    description: str
    parameters: dict[str, Any]

    def for_model(self) -> dict[str, Any]:
        """The entry of a chat-completions request's `tools` array."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolSet:
    offered: Mapping[str, tuple[ToolDef, ...]] = field(default_factory=dict)  # agent node id -> its model's tools
    functions: Mapping[str, Mapping[str, ToolDef]] = field(default_factory=dict)  # agent -> name -> tool it runs

    @classmethod
    def build(cls, bindings: Sequence[ToolBinding], tools: Mapping[str, ToolDef]) -> ToolSet:
        """`tools` holds every bound id (the run checked them before it started)."""
        offered: dict[str, dict[str, ToolDef]] = {}
        functions: dict[str, dict[str, ToolDef]] = {}
        for binding in bindings:
            if binding.caller is None or binding.executor is None:
                continue
            tool = tools[binding.tool_id]
            offered.setdefault(binding.caller, {})[tool.name] = tool
            functions.setdefault(binding.executor, {})[tool.name] = tool
        return cls({a: tuple(by_name.values()) for a, by_name in offered.items()}, functions)

    def for_model(self, agent_id: str) -> list[dict[str, Any]]:
        return [tool.for_model() for tool in self.offered.get(agent_id, ())]

    def runs(self, agent_id: str, name: str) -> ToolDef | None:
        return self.functions.get(agent_id, {}).get(name)


NO_TOOLS = ToolSet()


def not_found(call: ToolCall) -> ToolResult:
    """AutoGen's answer to a call of a function the executing agent does not have."""
    return ToolResult(call.call_id, f"Error: Function {call.name} not found.", is_error=True)


def joined_content(results: Sequence[ToolResult]) -> str:
    """The tool message's own content: AutoGen joins the results' contents with a blank line."""
    return "\n\n".join(r.content for r in results)
