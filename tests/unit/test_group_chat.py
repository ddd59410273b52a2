"""Unit tests for group chats: rounds, termination, speaker selection (all four methods), introductions.

Expected sequences and prompts are those observed on autogen 0.14.1 (docs/autogen-semantics.md §3),
with GroupChat's agents in the order Agentok's codegen builds: the agents inside the group, then the
initiator appended last.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentok_server.domain.model import MessageType

from .scripted import agent, converse, flow, group, run

MANUAL = (
    "Please select the next speaker from the following list:\n1: a\n2: b\n3: u\n"
    "Enter the number of the next speaker (enter nothing or `q` to use auto selection): "
)
INVALID = "Invalid input. Please enter a number between 1 and 3.\n"
INTRO = (
    "Hello everyone. We have assembled a great team today to answer questions and solve tasks. In attendance are:\n\n"
    "a: You are a helpful AI Assistant.\nb: desc B\nu: SYS-U"
)
ROLE_PLAY = (
    "You are in a role play game. The following roles are available:\n"
    "                a: You are a helpful AI Assistant.\nb: desc B\nu: the user.\n"
    "                Read the following conversation.\n"
    "                Then select the next role from ['a', 'b', 'u'] to play. Only return the role."
)
SELECT = {
    "role": "system",
    "content": "Read the above conversation. Then select the next role from ['a', 'b', 'u'] to play. "
    "Only return the role.",
    "name": "checking_agent",
}


def group_flow(
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    u: dict[str, Any] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """u starts a group holding a and b (members [a, b, u]); fixed replies unless given."""
    a = a or agent("a", "A-reply")
    b = b or agent("b", "B-reply", description="desc B")
    settings.setdefault("speaker_selection_method", "round_robin")
    return flow(
        "u",
        [u or agent("u", "U-auto"), group(**settings), {**a, "parentId": "g"}, {**b, "parentId": "g"}],
        [converse("u", "g")],
    )


# --------------------------------------------------------------------------------------------------
# rounds and termination


async def test_round_robin_starts_with_the_first_member_and_the_initiator_speaks_last() -> None:
    out = await run(group_flow(max_round=5))
    assert out.io.said() == [("a", "A-reply"), ("b", "B-reply"), ("u", "U-auto"), ("a", "A-reply")]
    assert {m.receiver for m in out.io.messages} == {"chat_manager"}
    assert out.reason == "maximum rounds (5) reached"


@pytest.mark.parametrize(("max_round", "replies"), [(1, 0), (2, 1), (3, 2)])
async def test_the_first_message_is_round_one(max_round: int, replies: int) -> None:
    out = await run(group_flow(max_round=max_round))
    assert len(out.io.messages) == replies


async def test_manager_ends_on_exactly_terminate() -> None:
    out = await run(group_flow(b=agent("b", "TERMINATE"), a=agent("a", "done TERMINATE"), max_round=10))
    assert out.io.said() == [("a", "done TERMINATE"), ("b", "TERMINATE")]
    assert out.reason == "termination message received by 'chat_manager'"


async def test_a_terminating_first_message_ends_before_introductions() -> None:
    out = await run(group_flow(send_introductions=True), first="TERMINATE")
    assert out.io.messages == []
    assert "chat_manager" in out.reason


async def test_members_own_termination_check_ends_the_group() -> None:
    # u (NEVER, termination_msg "done") is selected after b's "all done": it ends the chat, not the manager.
    out = await run(group_flow(b=agent("b", "all done"), u=agent("u", "U-auto", termination_msg="done"), max_round=9))
    assert out.io.said() == [("a", "A-reply"), ("b", "all done")]
    assert out.reason == "no reply from 'u': termination message received by 'u'"


async def test_member_max_consecutive_auto_reply_ends_the_group() -> None:
    out = await run(group_flow(a=agent("a", "A-reply", max_consecutive_auto_reply=1), max_round=9))
    assert out.io.said() == [("a", "A-reply"), ("b", "B-reply"), ("u", "U-auto")]
    assert out.reason == "no reply from 'a': maximum consecutive auto-replies of 'a' reached"


async def test_human_member_is_asked_only_when_selected() -> None:
    out = await run(group_flow(b=agent("b", mode="ALWAYS", node_type="user"), max_round=4), answers=["from a person"])
    assert out.io.prompts == [
        (
            "b",
            "Replying as b. Provide feedback to chat_manager. Press enter to skip and use auto-reply, "
            "or type 'exit' to end the conversation: ",
        )
    ]
    assert out.io.said() == [("a", "A-reply"), ("b", "from a person"), ("u", "U-auto")]
    assert [m.type for m in out.io.messages] == [MessageType.ASSISTANT, MessageType.USER, MessageType.ASSISTANT]


async def test_human_member_exit_ends_the_group() -> None:
    out = await run(group_flow(b=agent("b", mode="ALWAYS"), max_round=9), answers=["exit"])
    assert out.io.said() == [("a", "A-reply")]
    assert out.reason == "no reply from 'b': the person answering for 'b' typed 'exit'"


async def test_initiator_outside_the_group() -> None:
    """Observed: with the initiator not a member, round robin starts with the first member, the initiator
    gets nothing relayed, and its `last_msg` summary is its own message ('task')."""
    graph = flow(
        "u",
        [
            agent("u", "U-auto"),
            group(max_round=4, speaker_selection_method="round_robin", send_introductions=True),
            agent("a", "A-reply"),
            agent("b", "B-reply", parent="g"),
            agent("x", "X"),
        ],
        [converse("u", "a"), converse("a", "g"), converse("u", "x", message="next", max_turns=1)],
    )
    out = await run(graph)
    assert out.io.routed() == [
        (
            "chat_manager",
            "",
            "Hello everyone. We have assembled a great team today to answer questions and solve tasks. In "
            "attendance are:\n\nb: You are a helpful AI Assistant.\na: You are a helpful AI Assistant.",
        ),
        ("b", "chat_manager", "B-reply"),
        ("a", "chat_manager", "A-reply"),
        ("b", "chat_manager", "B-reply"),
        ("u", "x", "next\nContext: \ntask"),
        ("x", "u", "X"),
    ]


# --------------------------------------------------------------------------------------------------
# introductions and what members' models see


async def test_introductions_message_and_member_views() -> None:
    graph = group_flow(
        b=agent("b", llm=True, system_message="SYS-B", description="desc B"),
        u=agent("u", llm=True, system_message="SYS-U"),
        speaker_selection_method="manual",
        send_introductions=True,
        max_round=3,
    )
    # Round 2: b; round 3: u (the initiator).
    out = await run(graph, answers=["2", "3"], replies=["B-llm", "U-llm"])
    # Descriptions: a conversable's is its system message unless it has one of its own.
    intro = out.io.routed()[0]
    assert intro == ("chat_manager", "", INTRO)
    assert out.io.messages[0].type is MessageType.ASSISTANT
    assert out.io.routed()[1:] == [("b", "chat_manager", "B-llm"), ("u", "chat_manager", "U-llm")]
    b_view, u_view = (messages for _, messages in out.model.calls)
    # A member got the introductions before the initiator's message was relayed to it...
    assert b_view == [
        {"role": "system", "content": "SYS-B"},
        {"role": "user", "content": INTRO, "name": "chat_manager"},
        {"role": "user", "content": "task", "name": "u"},
    ]
    # ... the initiator after its own message.
    assert u_view == [
        {"role": "system", "content": "SYS-U"},
        {"role": "assistant", "content": "task", "name": "u"},
        {"role": "user", "content": INTRO, "name": "chat_manager"},
        {"role": "user", "content": "B-llm", "name": "b"},
    ]


# --------------------------------------------------------------------------------------------------
# random


async def test_random_chooses_among_all_members_repeats_allowed() -> None:
    out = await run(group_flow(speaker_selection_method="random", max_round=4), choices=["b", "b", "u"])
    assert out.io.said() == [("b", "B-reply"), ("b", "B-reply"), ("u", "U-auto")]
    assert out.io.options == [["a", "b", "u"]] * 3


async def test_random_choice_must_be_a_member() -> None:
    with pytest.raises(ValueError, match="'z', which is not one of"):
        await run(group_flow(speaker_selection_method="random", max_round=2), choices=["z"])


# --------------------------------------------------------------------------------------------------
# manual


async def test_manual_valid_invalid_and_fallbacks() -> None:
    # "2" picks b; "x" then "9" are bad twice: round robin after b (u); "q" and "" also fall back to round robin.
    out = await run(group_flow(speaker_selection_method="manual", max_round=5), answers=["2", "x", "9", "q", ""])
    assert out.io.said() == [("b", "B-reply"), ("u", "U-auto"), ("a", "A-reply"), ("b", "B-reply")]
    assert out.io.prompts == [
        (None, MANUAL),
        (None, MANUAL),
        (None, INVALID + MANUAL),
        (None, MANUAL),
        (None, MANUAL),
    ]


async def test_manual_takes_numbers_as_python_int_does() -> None:
    out = await run(group_flow(speaker_selection_method="manual", max_round=4), answers=["0", " 3 ", "+1", "4", ""])
    # "0" is out of range, " 3 " is 3 (u); "+1" is 1 (a); "4" is out of range, then "" falls back: after a, b.
    assert out.io.said() == [("u", "U-auto"), ("a", "A-reply"), ("b", "B-reply")]
    assert [p for _, p in out.io.prompts] == [MANUAL, INVALID + MANUAL, MANUAL, MANUAL, INVALID + MANUAL]


# --------------------------------------------------------------------------------------------------
# auto


async def test_auto_prompts_reasks_and_round_robin_fallback() -> None:
    graph = group_flow(u=agent("u", "U-auto", description="the user"), speaker_selection_method="auto", max_round=3)
    out = await run(graph, replies=["a and b", "nobody", "u b", "I pick b"])
    # Three answers naming several or no members: round robin after u (a). Then one name: b.
    assert out.io.said() == [("a", "A-reply"), ("b", "B-reply")]
    assert [who for who, _ in out.model.calls] == ["chat_manager"] * 4
    first, second, third, fourth = (messages for _, messages in out.model.calls)
    context = [{"role": "system", "content": ROLE_PLAY}, {"role": "user", "content": "task", "name": "u"}]
    assert first == [*context, SELECT]
    multiple = second[-1]["content"]
    assert multiple.startswith("You provided more than one name in your text, please return just the name")
    assert second == [
        *context,
        SELECT,
        {"role": "assistant", "content": "a and b", "name": "speaker_selection_agent"},
        {"role": "system", "content": multiple, "name": "checking_agent"},
    ]
    none = third[-1]["content"]
    assert none.startswith("You didn't choose a speaker. As a reminder, to determine the speaker use these")
    assert "The only names that are accepted are ['a', 'b', 'u']." in none
    assert third == [
        *second,
        {"role": "assistant", "content": "nobody", "name": "speaker_selection_agent"},
        {"role": "system", "content": none, "name": "checking_agent"},
    ]
    assert fourth == [*context, {"role": "user", "content": "A-reply", "name": "a"}, SELECT]


@pytest.mark.parametrize(
    ("name", "answer", "speaker"),
    [
        ("b", "b", "b"),
        ("b", "Next: b.", "b"),
        ("b", "bob", "a"),  # whole words only: names nobody, three times, then round robin after u
        ("Story_writer", "Story writer", "Story_writer"),
        ("Story_writer", r"Story\_writer", "Story_writer"),
    ],
)
async def test_auto_name_matching(name: str, answer: str, speaker: str) -> None:
    graph = group_flow(b=agent(name, "B-reply"), speaker_selection_method="auto", max_round=2)
    out = await run(graph, replies=[answer] * (3 if speaker == "a" else 1))
    assert out.io.said()[0][0] == speaker
