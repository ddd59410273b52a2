"""What a run needs from its host. Every nondeterministic input of a run comes through here, so that a run
is a deterministic function of (flow, first message, results of these calls) and can be rebuilt by replay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..domain.model import NewMessage, ToolCall, ToolResult
from .code_execution import CodeBlock
from .flow_spec import AgentSpec
from .tool_calls import ModelReply, ToolDef

# A model call: the agent it is made for (a group's manager for speaker selection and group summaries),
# and the OpenAI-style messages.
Complete = Callable[[AgentSpec, list[dict[str, Any]]], Awaitable[str]]


class RunIO(Protocol):
    """Store a message, and ask a person (for an agent, or with no agent: the manual choice of a speaker);
    run code blocks for an agent that executes code (only agents with `executes_code` ask for it); ask a
    model that is offered tools, and run the calls it makes."""

    async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
        """Stores `message`. `agent_turn`: an agent produced it (its model, code, nested chats, default
        reply or an edge's message), which a run's agent-turn budget counts; not text a person typed, nor
        a group manager's introductions."""
        ...

    async def ask_human(self, agent: AgentSpec | None, prompt: str) -> str: ...

    async def run_code(self, agent: AgentSpec, blocks: list[CodeBlock]) -> str: ...

    async def propose(
        self, agent: AgentSpec, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        """The agent's model reply to a request that offers `tools` (OpenAI's `tools` array)."""
        ...

    async def run_tools(self, agent: AgentSpec, calls: list[tuple[ToolCall, ToolDef]]) -> list[ToolResult]:
        """Runs calls of tools `agent` executes (by the server, or by the caller's backend for client tools);
        one result per call, in order. A failing call is an error result, never an exception."""
        ...


class FlowIO(RunIO, Protocol):
    """A run of any flow: also makes random choices (a group's `random` speaker selection)."""

    async def choose(self, options: list[str]) -> str:
        """Returns one of `options`, uniformly at random when live."""
        ...
