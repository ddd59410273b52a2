"""engine.conversation.TwoAgentChat, AutoGen's two-agent chat: turns, max_consecutive_auto_reply, max_turns
and termination messages.

Expected sequences are those observed on autogen 0.14.1 (docs/autogen-semantics.md §1). Agents
with `disable_llm: true` and a `default_auto_reply` stand in for AutoGen's `llm_config=False` agents with
a fixed `default_auto_reply`; a scripted `complete` stands in for the model.
"""

from __future__ import annotations

from .conversation_support import (
    agent,
    ask_always,
    names,
    run_chat,
    two_agent_spec,
)

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
