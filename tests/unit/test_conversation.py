"""Unit tests for engine.conversation.TwoAgentChat: AutoGen's two-agent chat semantics.

Expected sequences are those observed on autogen 0.14.1 (docs/autogen-semantics.md §1). Agents
with `disable_llm: true` and a `default_auto_reply` stand in for AutoGen's `llm_config=False` agents with
a fixed `default_auto_reply`; a scripted `complete` stands in for the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentok_server.domain.model import MessageType, NewMessage
from agentok_server.engine.conversation import TwoAgentChat
from agentok_server.engine.flow_spec import AgentSpec, FlowSpec, parse_flow

from .scripted import first_chat

# AutoGen's prompts, word for word (conversable_agent.check_termination_and_human_reply).
ALWAYS_PROMPT = (
    "Replying as {me}. Provide feedback to {peer}. Press enter to skip and use auto-reply, "
    "or type 'exit' to end the conversation: "
)
TERMINATE_PROMPT = "Please give feedback to {peer}. Press enter or type 'exit' to stop the conversation: "
MCAR_PROMPT = (
    "Please give feedback to {peer}. Press enter to skip and use auto-reply, or type 'exit' to stop the conversation: "
)


# --------------------------------------------------------------------------------------------------
# helpers


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
    """Node data for one agent; without `llm` it has no model and answers `reply` (AutoGen's default_auto_reply)."""
    data: dict[str, Any] = {"name": name}
    if node_type == "user":
        data["enable_llm"] = llm
    else:
        data["disable_llm"] = not llm
    if reply is not None:
        data["default_auto_reply"] = reply
    if mode is not None:
        data["human_input_mode"] = mode
    if mcar is not None:
        data["max_consecutive_auto_reply"] = mcar
    if termination_msg is not None:
        data["termination_msg"] = termination_msg
    if system_message is not None:
        data["system_message"] = system_message
    return {"type": node_type, "data": data}


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


class ScriptedIO:
    """Records what the run says and asks; answers questions from a script and fails past its end."""

    def __init__(self, answers: list[str] | None = None) -> None:
        self.answers = list(answers or [])
        self.messages: list[NewMessage] = []
        self.prompts: list[tuple[str, str]] = []

    async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
        self.messages.append(message)

    async def ask_human(self, agent: AgentSpec, prompt: str) -> str:
        self.prompts.append((agent.name, prompt))
        if not self.answers:
            pytest.fail(
                f"asked more times than scripted ({len(self.prompts)}): {agent.name}: {prompt!r}; "
                f"said so far: {self.said()}"
            )
        return self.answers.pop(0)

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


# --------------------------------------------------------------------------------------------------
# ping-pong, max_consecutive_auto_reply, max_turns


async def test_both_fixed_never_mcar2_no_max_turns() -> None:
    spec = two_agent_spec(agent("A", reply="A", mcar=2), agent("B", reply="B", mcar=2))
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "A"), ("B", "B"), ("A", "A")]
    assert out.prompts == []
    assert "consecutive" in out.reason


async def test_first_message_is_not_said_again_and_receivers_alternate() -> None:
    spec = two_agent_spec(agent("A", reply="A", mcar=1), agent("B", reply="B", mcar=1))
    out = await run_chat(spec)
    assert [(m.sender, m.receiver, m.content) for m in out.messages] == [("B", "A", "B"), ("A", "B", "A")]


async def test_all_defaults_run_201_messages() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B"))
    out = await run_chat(spec)
    assert len(out.said) == 201
    assert names(out.said[1:5]) == ["B", "A", "B", "A"]
    assert out.said[-1] == ("A", "A")
    assert [s for s, _ in out.said].count("B") == 100


async def test_max_turns_2() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B"), max_turns=2)
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "A"), ("B", "B")]
    assert "turns" in out.reason


async def test_max_turns_1_is_one_reply() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B"), max_turns=1)
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "B")]


async def test_max_turns_stops_earlier_on_recipient_mcar() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B", mcar=2), max_turns=5)
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "A"), ("B", "B"), ("A", "A")]


async def test_max_turns_stops_on_initiator_mcar() -> None:
    spec = two_agent_spec(agent("A", reply="A", mcar=1), agent("B", reply="B"), max_turns=5)
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "A"), ("B", "B")]


async def test_max_turns_initiator_not_asked_after_last_turn() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="ALWAYS"), agent("B", reply="B"), max_turns=2)
    out = await run_chat(spec, answers=["typed"])
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "typed"), ("B", "B")]
    assert out.prompts == [ask_always("A", "B")]


async def test_max_turns_stops_when_recipient_reply_is_its_termination_message() -> None:
    # AutoGen checks the recipient's is_termination_msg on its own last reply between rounds.
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="TERMINATE"), max_turns=3)
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "TERMINATE")]


async def test_max_turns_stops_when_initiator_receives_termination_in_its_own_sense() -> None:
    spec = two_agent_spec(agent("A", reply="A", termination_msg="done"), agent("B", reply="all done"), max_turns=3)
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "all done")]


async def test_max_turns_initiator_termination_message_ends_chat() -> None:
    spec = two_agent_spec(agent("A", reply="TERMINATE"), agent("B", reply="B"), max_turns=3)
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "TERMINATE")]


async def test_max_turns_respects_recipient_mcar_against_initiator_counter() -> None:
    """Regression (once a bug in conversation.py `run`, the max_turns loop).

    autogen 0.14.1 initiate_chat (conversable_agent.py, max_turns branch) starts every round with
    `if self._consecutive_auto_reply_counter[recipient] >= recipient._max_consecutive_auto_reply: break`:
    the initiator's auto-reply count is compared with the recipient's mcar. A recipient in ALWAYS mode
    never checks its own mcar, so this is what stops the chat. Observed on 0.14.1 with these agents:
    `hello, B, A, B` and B asked twice; the engine runs all 3 turns and asks B a third time.
    """
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B", mode="ALWAYS", mcar=1), max_turns=3)
    out = await run_chat(spec, answers=["", ""])
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "A"), ("B", "B")]
    assert out.prompts == [ask_always("B", "A")] * 2


async def test_max_turns_goes_on_after_the_recipient_gives_no_reply() -> None:
    """Regression (once a bug in conversation.py `run`, the max_turns loop: the recipient's None ended the chat).

    autogen 0.14.1 initiate_chat with max_turns sends each turn's message with request_reply=True and
    breaks only on the initiator's own None; the recipient's reply is sent back only when it is not None.
    B (NEVER, mcar 1) auto-replies once; to A's typed "a1" its check_termination_and_human_reply hits the
    limit, resets its counter and returns None, so B says nothing; turn 3 asks A again, and B, its counter
    reset, auto-replies to "a2". The engine used to end the chat after "a1".
    """
    spec = two_agent_spec(agent("A", reply="A", mode="ALWAYS"), agent("B", reply="B", mcar=1), max_turns=3)
    out = await run_chat(spec, answers=["a1", "a2"])
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "a1"), ("A", "a2"), ("B", "B")]
    assert [(m.sender, m.receiver) for m in out.messages] == [("B", "A"), ("A", "B"), ("A", "B"), ("B", "A")]
    assert out.prompts == [ask_always("A", "B")] * 2
    assert out.reason == "maximum turns (3) reached"


async def test_max_turns_recipient_exit_skips_its_reply_only() -> None:
    # Same loop: 'exit' typed for the recipient makes its reply None, which ends no max_turns chat.
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B", mode="ALWAYS"), max_turns=2)
    out = await run_chat(spec, answers=["exit", ""])
    assert out.said == [("A", "hello"), ("A", "A"), ("B", "B")]
    assert out.prompts == [ask_always("B", "A")] * 2
    assert out.reason == "maximum turns (2) reached"


# --------------------------------------------------------------------------------------------------
# termination messages


async def test_default_termination_is_exactly_terminate() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="TERMINATE"))
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "TERMINATE")]
    assert "termination" in out.reason


async def test_default_termination_does_not_match_substring() -> None:
    spec = two_agent_spec(agent("A", reply="A", mcar=3), agent("B", reply="done TERMINATE", mcar=3))
    out = await run_chat(spec)
    assert out.said == [("A", "hello")] + [("B", "done TERMINATE"), ("A", "A")] * 3
    assert "consecutive" in out.reason


async def test_termination_msg_substring_ends_chat() -> None:
    spec = two_agent_spec(agent("A", reply="A", termination_msg="TERMINATE"), agent("B", reply="done terminate."))
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "done terminate.")]
    assert "termination" in out.reason and "'A'" in out.reason


async def test_termination_is_checked_by_the_receiver_only() -> None:
    # B's own termination_msg does not apply to what B itself says; A (default: exact) does not match.
    spec = two_agent_spec(
        agent("A", reply="A", mcar=1), agent("B", reply="done TERMINATE", termination_msg="terminate")
    )
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "done TERMINATE"), ("A", "A"), ("B", "done TERMINATE")]


async def test_first_message_can_terminate() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B"))
    out = await run_chat(spec, first="TERMINATE")
    assert out.said == [("A", "TERMINATE")]
    assert out.messages == []


# --------------------------------------------------------------------------------------------------
# human_input_mode ALWAYS


async def test_always_prompt_typed_text_and_exit() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="ALWAYS", mcar=1), agent("B", reply="B"))
    out = await run_chat(spec, answers=["", "typed", "", "exit"])
    assert out.said == [
        ("A", "hello"),
        ("B", "B"),
        ("A", "A"),  # empty answer: auto-reply
        ("B", "B"),
        ("A", "typed"),  # typed text is A's message
        ("B", "B"),
        ("A", "A"),  # ALWAYS ignores mcar=1: a third auto-reply
        ("B", "B"),
    ]
    assert out.prompts == [ask_always("A", "B")] * 4
    assert "exit" in out.reason


async def test_always_typed_text_is_user_message_and_resets_counter() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="ALWAYS"), agent("B", reply="B", mcar=2))
    out = await run_chat(spec, answers=["", "typed"])
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "A"), ("B", "B"), ("A", "typed")]
    typed = out.messages[-1]
    assert (typed.type, typed.sender, typed.receiver, typed.content) == (MessageType.USER, "A", "B", "typed")
    assert out.messages[1].type is MessageType.ASSISTANT  # A's auto-reply (a conversable node)
    assert out.conversation.state.auto_replies["node-a"] == 0


async def test_always_exit_at_first_question() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B", mode="ALWAYS"))
    out = await run_chat(spec, answers=["exit"])
    assert out.said == [("A", "hello")]
    assert out.prompts == [ask_always("B", "A")]
    assert out.messages == []


async def test_always_empty_answer_on_termination_message_ends() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="ALWAYS"), agent("B", reply="TERMINATE"))
    out = await run_chat(spec, answers=[""])
    assert out.said == [("A", "hello"), ("B", "TERMINATE")]
    assert out.prompts == [ask_always("A", "B")]


async def test_always_text_on_termination_message_continues() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="ALWAYS"), agent("B", reply="TERMINATE"))
    out = await run_chat(spec, answers=["more please", ""])
    assert out.said == [("A", "hello"), ("B", "TERMINATE"), ("A", "more please"), ("B", "TERMINATE")]


async def test_always_empty_answer_falls_through_to_model() -> None:
    spec = two_agent_spec(agent("A", reply="A", mcar=1), agent("B", mode="ALWAYS", llm=True, system_message="SYS-B"))
    model = ScriptedModel(["from model"])
    out = await run_chat(spec, answers=["", "exit"], model=model)
    assert out.said == [("A", "hello"), ("B", "from model"), ("A", "A")]
    assert [who for who, _ in model.calls] == ["B"]
    assert out.messages[0].type is MessageType.ASSISTANT


async def test_always_mcar0_empty_answer_sends_empty_message() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="ALWAYS", mcar=0), agent("B", reply="B", mcar=2))
    out = await run_chat(spec, answers=["", ""])
    assert out.said == [("A", "hello"), ("B", "B"), ("A", ""), ("B", "B"), ("A", "")]
    assert out.prompts == [ask_always("A", "B")] * 2
    empty = out.messages[1]
    assert (empty.type, empty.content) == (MessageType.USER, "")


# --------------------------------------------------------------------------------------------------
# human_input_mode TERMINATE


async def test_terminate_mode_asks_on_termination_message_empty_ends() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="TERMINATE"), agent("B", reply="TERMINATE"))
    out = await run_chat(spec, answers=[""])
    assert out.said == [("A", "hello"), ("B", "TERMINATE")]
    assert out.prompts == [ask_terminate("A", "B")]
    assert "termination" in out.reason


async def test_terminate_mode_text_continues_then_exit() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="TERMINATE"), agent("B", reply="TERMINATE"))
    out = await run_chat(spec, answers=["go on", "exit"])
    assert out.said == [("A", "hello"), ("B", "TERMINATE"), ("A", "go on"), ("B", "TERMINATE")]
    assert out.prompts == [ask_terminate("A", "B")] * 2
    assert out.messages[1].type is MessageType.USER


async def test_terminate_mode_never_asks_before_mcar_or_termination() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="TERMINATE", mcar=2), agent("B", reply="B", mcar=2))
    out = await run_chat(spec)
    assert out.said == [("A", "hello"), ("B", "B"), ("A", "A"), ("B", "B"), ("A", "A")]
    assert out.prompts == []


async def test_terminate_mode_at_mcar_asks_each_turn_until_text_resets() -> None:
    spec = two_agent_spec(agent("A", reply="A", mode="TERMINATE", mcar=1), agent("B", reply="B"))
    out = await run_chat(spec, answers=["", "", "typed", "exit"])
    assert out.said == [
        ("A", "hello"),
        ("B", "B"),
        ("A", "A"),  # counter 0 -> 1, not asked
        ("B", "B"),
        ("A", "A"),  # asked (mcar reached), empty: one more auto-reply
        ("B", "B"),
        ("A", "A"),  # asked again, empty
        ("B", "B"),
        ("A", "typed"),  # asked, text: counter reset
        ("B", "B"),
        ("A", "A"),  # not asked
        ("B", "B"),
    ]
    assert out.prompts == [ask_mcar("A", "B")] * 4


async def test_terminate_mode_text_at_termination_resets_counter() -> None:
    spec = two_agent_spec(
        agent("A", reply="A", mode="TERMINATE", mcar=1, termination_msg="stop"), agent("B", reply="B stop")
    )
    # First "B stop": termination branch (counter 0); text continues and resets the counter.
    # Second "B stop": same. Then "" at a termination message ends.
    out = await run_chat(spec, answers=["go", ""])
    assert out.said == [("A", "hello"), ("B", "B stop"), ("A", "go"), ("B", "B stop")]
    assert out.prompts == [ask_terminate("A", "B")] * 2


async def test_terminate_mode_mcar_reached_on_termination_message_prompt() -> None:
    spec = two_agent_spec(
        agent("A", reply="A", mode="TERMINATE", mcar=0, termination_msg="stop"), agent("B", reply="B stop")
    )
    out = await run_chat(spec, answers=[""])
    assert out.said == [("A", "hello"), ("B", "B stop")]
    assert out.prompts == [ask_terminate("A", "B")]


async def test_terminate_mode_mcar0_empty_answer_sends_empty_message() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B", mode="TERMINATE", mcar=0))
    out = await run_chat(spec, answers=["", "", "exit"])
    assert out.said == [("A", "hello"), ("B", ""), ("A", "A"), ("B", ""), ("A", "A")]
    assert out.prompts == [ask_mcar("B", "A")] * 3


async def test_never_mcar0_ends_at_once() -> None:
    spec = two_agent_spec(agent("A", reply="A"), agent("B", reply="B", mcar=0))
    out = await run_chat(spec)
    assert out.said == [("A", "hello")]
    assert out.prompts == []


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

    class _IO:
        async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
            pass

        async def ask_human(self, agent: AgentSpec, prompt: str) -> str:
            raise AssertionError("nobody should be asked")

    await conversation.run("hi", _IO())
    assert [m.get("name") for m in seen[0][1:]] == ["Travel_Agent"]
