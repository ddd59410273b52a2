"""Helpers for the flow-run tests: flow builders, and a scripted IO and model that record every call.

Agents with `disable_llm: true` and a `default_auto_reply` stand in for AutoGen's `llm_config=False` agents
with a fixed `default_auto_reply`; a scripted `complete` stands in for the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentok_server.domain.model import NewMessage, ToolCall, ToolResult
from agentok_server.engine.code_execution import CodeBlock
from agentok_server.engine.conversation import TwoAgentChat
from agentok_server.engine.flow_run import run_flow
from agentok_server.engine.flow_spec import AgentSpec, FlowSpec, parse_flow
from agentok_server.engine.replies import Replier
from agentok_server.engine.run_io import Complete
from agentok_server.engine.tool_calls import NO_TOOLS, ModelReply, ToolDef, ToolSet

INITIALIZER: dict[str, Any] = {"id": "init", "type": "initializer", "data": {"name": "Initializer"}}


def agent(
    node_id: str,
    reply: str | None = None,
    *,
    node_type: str = "conversable",
    mode: str | None = "NEVER",
    llm: bool | None = False,
    parent: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    """An agent node named `node_id`; without `llm` it has no model and answers `reply`. A `mode` or `llm` of
    None leaves that setting out, to the parser's default for the node type."""
    node_data: dict[str, Any] = {"name": node_id, **data}
    if llm is not None and node_type == "user":
        node_data["enable_llm"] = llm
    elif llm is not None:
        node_data["disable_llm"] = not llm
    if reply is not None:
        node_data["default_auto_reply"] = reply
    if mode is not None:
        node_data["human_input_mode"] = mode
    node: dict[str, Any] = {"id": node_id, "type": node_type, "data": node_data}
    if parent is not None:
        node["parentId"] = parent
    return node


def group(node_id: str = "g", **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "groupchat", "data": {"name": "Group", **data}}


def nested(node_id: str = "n") -> dict[str, Any]:
    return {"id": node_id, "type": "nestedchat", "data": {"name": "Nested Chat"}}


def converse(source: str, target: str, **data: Any) -> dict[str, Any]:
    return {"id": f"{source}-{target}", "source": source, "target": target, "type": "converse", "data": data}


def flow(first: str, nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    """initializer -> `first`, plus the given nodes and converse edges."""
    return {
        "nodes": [INITIALIZER, *nodes],
        "edges": [{"id": f"init-{first}", "source": "init", "target": first}, *edges],
    }


class NoTools:
    """For the scripted IOs of flows that bind no tools: being asked to run one is a bug."""

    async def propose(
        self, agent: AgentSpec, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        raise AssertionError(f"no model is offered tools in these flows ({agent.name} was)")

    async def run_tools(self, agent: AgentSpec, calls: list[tuple[ToolCall, ToolDef]]) -> list[ToolResult]:
        raise AssertionError(f"no tools run in these flows ({agent.name} was asked)")


class ScriptedIO:
    """Records every call in `log`; answers people from `answers` and random choices from `choices`, and fails
    when asked past the end of either."""

    def __init__(
        self,
        answers: list[str] | None = None,
        choices: list[str] | None = None,
        proposals: list[ModelReply] | None = None,
        results: dict[str, str] | None = None,
    ) -> None:
        """`proposals`: the replies of models offered tools; `results`: each tool's result, by function name."""
        self.answers = list(answers or [])
        self.choices = list(choices or [])
        self.proposals = list(proposals or [])
        self.results = dict(results or {})
        # What each proposing model was sent: (agent name, messages, tools).
        self.proposed: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
        self.messages: list[NewMessage] = []
        # For each message: whether the run called it an agent turn (what the turn budget counts).
        self.agent_turns: list[bool] = []
        self.prompts: list[tuple[str | None, str]] = []
        self.options: list[list[str]] = []
        self.log: list[tuple[Any, ...]] = []

    async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
        self.messages.append(message)
        self.agent_turns.append(agent_turn)
        self.log.append(("say", message))

    async def ask_human(self, agent: AgentSpec | None, prompt: str) -> str:
        who = agent.name if agent is not None else None
        self.prompts.append((who, prompt))
        if not self.answers:
            pytest.fail(f"asked more times than scripted: {who}: {prompt!r}; said so far: {self.said()}")
        answer = self.answers.pop(0)
        self.log.append(("ask", who, prompt, answer))
        return answer

    async def choose(self, options: list[str]) -> str:
        self.options.append(list(options))
        if not self.choices:
            pytest.fail(f"chose more times than scripted among {options}")
        choice = self.choices.pop(0)
        self.log.append(("choose", list(options), choice))
        return choice

    async def run_code(self, agent: AgentSpec, blocks: list[CodeBlock]) -> str:
        raise AssertionError("no agent of these flows executes code")

    async def propose(
        self, agent: AgentSpec, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        self.proposed.append((agent.name, copy.deepcopy(messages), copy.deepcopy(tools)))
        if not self.proposals:
            pytest.fail(f"a model offered tools was called more times than scripted, by {agent.name}: {messages}")
        reply = self.proposals.pop(0)
        self.log.append(("propose", agent.name, reply))
        return reply

    async def run_tools(self, agent: AgentSpec, calls: list[tuple[ToolCall, ToolDef]]) -> list[ToolResult]:
        self.log.append(("tools", agent.name, [(c.name, c.arguments) for c, _ in calls]))
        return [ToolResult(c.call_id, self.results[c.name]) for c, _ in calls]

    def said(self) -> list[tuple[str, str]]:
        return [(m.sender, m.content) for m in self.messages]

    def routed(self) -> list[tuple[str, str, str]]:
        return [(m.sender, m.receiver, m.content) for m in self.messages]


@dataclass
class ScriptedModel:
    """The `complete` callable: returns scripted replies in order and records what each call was sent."""

    replies: list[str] = field(default_factory=list)
    calls: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    log: list[tuple[Any, ...]] | None = None

    async def __call__(self, spec: AgentSpec, messages: list[dict[str, Any]]) -> str:
        self.calls.append((spec.name, copy.deepcopy(messages)))
        if not self.replies:
            pytest.fail(f"model called more times than scripted, by {spec.name}: {messages}")
        reply = self.replies.pop(0)
        if self.log is not None:
            self.log.append(("complete", spec.name, copy.deepcopy(messages), reply))
        return reply


@dataclass
class Run:
    spec: FlowSpec
    io: ScriptedIO
    model: ScriptedModel
    reason: str


async def run(
    graph: dict[str, Any],
    first: str = "task",
    *,
    answers: list[str] | None = None,
    choices: list[str] | None = None,
    replies: list[str] | None = None,
    proposals: list[ModelReply] | None = None,
    tools: dict[str, ToolDef] | None = None,
    results: dict[str, str] | None = None,
) -> Run:
    """Parses and runs a flow; every scripted answer, choice, model reply and proposal must be used. `tools`:
    the definitions of the tool ids the flow binds."""
    spec = parse_flow(graph)
    io = ScriptedIO(answers, choices, proposals, results)
    model = ScriptedModel(list(replies or []), log=io.log)
    toolset = ToolSet.build(spec.tools, tools) if tools else NO_TOOLS
    reason = await run_flow(spec, first, io, model, toolset)
    assert isinstance(reason, str) and reason.strip(), "a run must say why it ended"
    assert io.answers == [], f"scripted answers left unused: {io.answers}"
    assert io.choices == [], f"scripted choices left unused: {io.choices}"
    assert model.replies == [], f"scripted model replies left unused: {model.replies}"
    assert io.proposals == [], f"scripted proposals left unused: {io.proposals}"
    return Run(spec, io, model, reason)


def first_chat(spec: FlowSpec, complete: Complete) -> TwoAgentChat:
    """The flow's first chat between two agents, on its own (run_flow runs a two-agent flow as this chat)."""
    chat = spec.chat
    return TwoAgentChat(spec.agent(chat.initiator), spec.agent(chat.recipient), chat.max_turns, Replier(complete))
