"""engine.conversation.TwoAgentChat with a person in the loop: human_input_mode ALWAYS and TERMINATE.

Expected as observed on autogen 0.14.1 (docs/autogen-semantics.md §1); how agents and the model are stood in
for: tests/unit/test_conversation.py's docstring.
"""

from __future__ import annotations

from agentok_server.domain.model import MessageType

from .conversation_support import (
    ScriptedModel,
    agent,
    ask_always,
    ask_mcar,
    ask_terminate,
    run_chat,
    two_agent_spec,
)

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
