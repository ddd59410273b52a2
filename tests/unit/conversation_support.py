"""What the two-agent chat tests share: agent and spec builders, a scripted person and model, and
`run_chat`, which runs a TwoAgentChat and records what it said and asked."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentok_server.domain.model import NewMessage
from agentok_server.engine.code_execution import CodeBlock
from agentok_server.engine.conversation import TwoAgentChat
from agentok_server.engine.flow_spec import AgentSpec, FlowSpec, parse_flow

from .scripted import NoTools, first_chat
from .scripted import agent as scripted_agent

# AutoGen's prompts, word for word (conversable_agent.check_termination_and_human_reply).
ALWAYS_PROMPT = (
    "Replying as {me}. Provide feedback to {peer}. Press enter to skip and use auto-reply, "
    "or type 'exit' to end the conversation: "
)
TERMINATE_PROMPT = "Please give feedback to {peer}. Press enter or type 'exit' to stop the conversation: "
MCAR_PROMPT = (
    "Please give feedback to {peer}. Press enter to skip and use auto-reply, or type 'exit' to stop the conversation: "
)


def agent(
    name: str,
    *,
    node_type: str = "conversable",
    reply: str | None = None,
    mode: str | None = "NEVER",
    mcar: int | None = None,
    termination_msg: str | None = None,
    llm: bool = False,
    system_message: str | None = None,
) -> dict[str, Any]:
    """Node data for one agent (no id: two_agent_spec gives it one); scripted.agent builds it."""
    settings: dict[str, Any] = {
        "max_consecutive_auto_reply": mcar,
        "termination_msg": termination_msg,
        "system_message": system_message,
    }
    node = scripted_agent(
        name, reply, node_type=node_type, mode=mode, llm=llm, **{k: v for k, v in settings.items() if v is not None}
    )
    return {"type": node["type"], "data": node["data"]}


def two_agent_spec(a: dict[str, Any], b: dict[str, Any], *, max_turns: int | None = None) -> FlowSpec:
    """initializer -> A -converse-> B, parsed by the real parser."""
    edge_data = {} if max_turns is None else {"max_turns": max_turns}
    flow = {
        "nodes": [
            {"id": "init", "type": "initializer", "data": {"name": "Initializer"}},
            {"id": "node-a", **a},
            {"id": "node-b", **b},
        ],
        "edges": [
            {"id": "init-a", "source": "init", "target": "node-a"},
            {"id": "a-b", "source": "node-a", "target": "node-b", "type": "converse", "data": edge_data},
        ],
    }
    return parse_flow(flow)


class ScriptedIO(NoTools):
    """Records what the run says and asks; answers questions from a script and fails past its end."""

    def __init__(self, answers: list[str] | None = None) -> None:
        self.answers = list(answers or [])
        self.messages: list[NewMessage] = []
        self.prompts: list[tuple[str, str]] = []

    async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
        self.messages.append(message)

    async def ask_human(self, agent: AgentSpec | None, prompt: str) -> str:
        assert agent is not None, "a two-agent chat asks a person for an agent"
        self.prompts.append((agent.name, prompt))
        if not self.answers:
            pytest.fail(
                f"asked more times than scripted ({len(self.prompts)}): {agent.name}: {prompt!r}; "
                f"said so far: {self.said()}"
            )
        return self.answers.pop(0)

    async def run_code(self, agent: AgentSpec, blocks: list[CodeBlock]) -> str:
        raise AssertionError("no agent of these flows executes code")

    def said(self) -> list[tuple[str, str]]:
        return [(m.sender, m.content) for m in self.messages]


@dataclass
class ScriptedModel:
    """The `complete` callable: returns scripted replies in order and records what each call was sent."""

    replies: list[str]
    calls: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)

    async def __call__(self, spec: AgentSpec, messages: list[dict[str, Any]]) -> str:
        self.calls.append((spec.name, copy.deepcopy(messages)))
        if not self.replies:
            pytest.fail(f"model called more times than scripted, by {spec.name}")
        return self.replies.pop(0)


async def no_model(spec: AgentSpec, messages: list[dict[str, Any]]) -> str:
    pytest.fail(f"{spec.name} has no model but the model was called")


@dataclass
class Outcome:
    said: list[tuple[str, str]]  # (sender, content), first message included
    prompts: list[tuple[str, str]]
    messages: list[NewMessage]
    reason: str
    conversation: TwoAgentChat


async def run_chat(
    spec: FlowSpec,
    *,
    first: str = "hello",
    answers: list[str] | None = None,
    model: Any = no_model,
) -> Outcome:
    io = ScriptedIO(answers)
    conversation = first_chat(spec, model)
    reason = await conversation.run(first, io)
    assert isinstance(reason, str) and reason.strip(), "a run must say why it ended"
    assert io.answers == [], f"scripted answers left unused: {io.answers}"
    initiator = spec.agent(spec.chat.initiator).name
    return Outcome(
        said=[(initiator, first), *io.said()],
        prompts=io.prompts,
        messages=io.messages,
        reason=reason,
        conversation=conversation,
    )


def ask_always(me: str, peer: str) -> tuple[str, str]:
    return (me, ALWAYS_PROMPT.format(me=me, peer=peer))


def ask_terminate(me: str, peer: str) -> tuple[str, str]:
    return (me, TERMINATE_PROMPT.format(peer=peer))


def ask_mcar(me: str, peer: str) -> tuple[str, str]:
    return (me, MCAR_PROMPT.format(peer=peer))


def names(pairs: list[tuple[str, str]]) -> list[str]:
    return [content for _, content in pairs]
