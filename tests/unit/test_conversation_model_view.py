"""engine.conversation.TwoAgentChat as the model sees it: roles, names, system messages, message types.

Expected as observed on autogen 0.14.1 (docs/autogen-semantics.md §1); how agents and the model are stood in
for: tests/unit/test_conversation.py's docstring.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentok_server.domain.model import MessageType, NewMessage
from agentok_server.engine.code_execution import CodeBlock
from agentok_server.engine.flow_spec import AgentSpec, parse_flow

from .conversation_support import (
    ScriptedIO,
    ScriptedModel,
    agent,
    first_chat,
    run_chat,
    two_agent_spec,
)
from .scripted import NoTools

# --------------------------------------------------------------------------------------------------
# the model's view and message types


async def test_model_view_roles_names_and_system_message() -> None:
    spec = two_agent_spec(
        agent("Alice", node_type="user", reply="ok", mcar=1),
        agent("Bob", node_type="assistant", llm=True, system_message="SYS-B"),
    )
    model = ScriptedModel(["r1", "r2"])
    out = await run_chat(spec, first="hi", model=model)
    assert out.said == [("Alice", "hi"), ("Bob", "r1"), ("Alice", "ok"), ("Bob", "r2")]
    assert model.calls == [
        (
            "Bob",
            [
                {"role": "system", "content": "SYS-B"},
                {"role": "user", "content": "hi", "name": "Alice"},
            ],
        ),
        (
            "Bob",
            [
                {"role": "system", "content": "SYS-B"},
                {"role": "user", "content": "hi", "name": "Alice"},
                {"role": "assistant", "content": "r1", "name": "Bob"},
                {"role": "user", "content": "ok", "name": "Alice"},
            ],
        ),
    ]


async def test_model_view_of_the_initiator() -> None:
    spec = two_agent_spec(
        agent("A", llm=True, system_message="SYS-A", mcar=1),
        agent("B", reply="fixed", mode="ALWAYS"),
    )
    model = ScriptedModel(["a1"])
    out = await run_chat(spec, answers=["typed by human", "exit"], model=model)
    assert out.said == [("A", "hello"), ("B", "typed by human"), ("A", "a1")]
    # The human-typed text is B's message: role user in A's view, named B.
    assert model.calls == [
        (
            "A",
            [
                {"role": "system", "content": "SYS-A"},
                {"role": "assistant", "content": "hello", "name": "A"},
                {"role": "user", "content": "typed by human", "name": "B"},
            ],
        ),
    ]


async def test_model_receives_the_agent_spec() -> None:
    spec = two_agent_spec(agent("A", reply="A", mcar=0), agent("B", llm=True))
    seen: list[AgentSpec] = []

    async def complete(who: AgentSpec, messages: list[dict[str, Any]]) -> str:
        seen.append(who)
        return "b"

    conversation = first_chat(spec, complete)
    await conversation.run("hello", ScriptedIO())
    assert seen == [spec.agent("node-b")]


async def test_default_system_message_of_conversable_in_view() -> None:
    spec = two_agent_spec(agent("A", reply="A", mcar=0), agent("B", llm=True))
    model = ScriptedModel(["b"])
    await run_chat(spec, model=model)
    assert model.calls[0][1][0] == {"role": "system", "content": "You are a helpful AI Assistant."}


@pytest.mark.parametrize(
    ("a_type", "b_type", "a_kind", "b_kind"),
    [
        ("user", "assistant", MessageType.USER, MessageType.ASSISTANT),
        ("conversable", "user", MessageType.ASSISTANT, MessageType.USER),
        ("assistant", "conversable", MessageType.ASSISTANT, MessageType.ASSISTANT),
    ],
    ids=["user-assistant", "conversable-user", "assistant-conversable"],
)
async def test_message_types_follow_sender_node_type(
    a_type: str, b_type: str, a_kind: MessageType, b_kind: MessageType
) -> None:
    spec = two_agent_spec(
        agent("A", node_type=a_type, reply="A", mcar=1), agent("B", node_type=b_type, reply="B", mcar=1)
    )
    out = await run_chat(spec)
    assert [(m.sender, m.type) for m in out.messages] == [("B", b_kind), ("A", a_kind)]


async def test_user_node_auto_reply_is_empty_string_by_default() -> None:
    # UserProxyAgent with nothing to run auto-replies "" (observed `user:""`).
    spec = two_agent_spec(agent("U", node_type="user", mcar=1), agent("B", reply="B", mcar=1))
    out = await run_chat(spec)
    assert out.said == [("U", "hello"), ("B", "B"), ("U", "")]
    assert out.messages[-1].type is MessageType.USER


async def test_end_reasons_are_distinct() -> None:
    reasons = set()
    for spec, answers in [
        (two_agent_spec(agent("A", reply="A", mcar=1), agent("B", reply="B")), []),
        (two_agent_spec(agent("A", reply="A"), agent("B", reply="TERMINATE")), []),
        (two_agent_spec(agent("A", reply="A"), agent("B", reply="B"), max_turns=1), []),
        (two_agent_spec(agent("A", reply="A"), agent("B", reply="B", mode="ALWAYS")), ["exit"]),
    ]:
        reasons.add((await run_chat(spec, answers=answers)).reason)
    assert len(reasons) == 4


async def test_model_view_names_are_safe_for_openai() -> None:
    """OpenAI-compatible endpoints refuse a message `name` with whitespace or <|\\/>: agents may have them."""
    seen: list[list[dict[str, Any]]] = []

    async def complete(agent: AgentSpec, messages: list[dict[str, Any]]) -> str:
        seen.append(messages)
        return "TERMINATE"

    flow = {
        "nodes": [
            {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
            {"id": "a", "type": "user", "data": {"name": "Travel Agent", "human_input_mode": "NEVER"}},
            {"id": "b", "type": "assistant", "data": {"name": "Helper <b>"}},
        ],
        "edges": [{"source": "i", "target": "a"}, {"source": "a", "target": "b", "type": "converse"}],
    }
    conversation = first_chat(parse_flow(flow), complete)

    class _IO(NoTools):
        async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
            pass

        async def ask_human(self, agent: AgentSpec | None, prompt: str) -> str:
            raise AssertionError("nobody should be asked")

        async def run_code(self, agent: AgentSpec, blocks: list[CodeBlock]) -> str:
            raise AssertionError("no code runs here")

    await conversation.run("hi", _IO())
    assert [m.get("name") for m in seen[0][1:]] == ["Travel_Agent"]
