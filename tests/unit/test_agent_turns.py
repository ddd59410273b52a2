"""Which stored messages are agent turns (what a chat's max_agent_turns budget counts): what agents produce,
never what a person typed nor a group manager's introductions."""

from __future__ import annotations

from .scripted import agent, converse, flow, group, run


async def test_a_persons_answers_are_not_agent_turns() -> None:
    graph = flow("u", [agent("u", mode="ALWAYS"), agent("a", "A-reply")], [converse("u", "a", max_turns=3)])
    out = await run(graph, first="task", answers=["typed", ""])
    # "" is AutoGen's skip: the user proxy auto-replies (its default reply is empty): an agent turn.
    assert [(m.sender, m.content, turn) for m, turn in zip(out.io.messages, out.io.agent_turns, strict=True)] == [
        ("a", "A-reply", True),
        ("u", "typed", False),
        ("a", "A-reply", True),
        ("u", "", True),
        ("a", "A-reply", True),
    ]


async def test_introductions_are_not_agent_turns() -> None:
    graph = flow(
        "u",
        [
            agent("u", "U-auto"),
            group(max_round=3, speaker_selection_method="round_robin", send_introductions=True),
            agent("a", "A-reply", parent="g"),
            agent("b", "B-reply", parent="g"),
        ],
        [converse("u", "g")],
    )
    out = await run(graph)
    assert [(m.sender, turn) for m, turn in zip(out.io.messages, out.io.agent_turns, strict=True)] == [
        ("chat_manager", False),
        ("a", True),
        ("b", True),
    ]


async def test_a_typed_opening_message_of_a_later_chat_is_not_an_agent_turn() -> None:
    graph = flow(
        "u",
        [agent("u", "U-auto"), agent("a", "A-reply"), agent("b", "B-reply")],
        [converse("u", "a", max_turns=1), converse("u", "b", max_turns=1), converse("u", "a", max_turns=1)],
    )
    graph["edges"][-1]["data"]["instructions"] = "third"
    graph["edges"][-1]["id"] = "u-a-2"
    out = await run(graph, first="first", answers=["typed second"])
    assert [(m.receiver, m.content, turn) for m, turn in zip(out.io.messages, out.io.agent_turns, strict=True)] == [
        ("u", "A-reply", True),
        ("b", "typed second\nContext: \nA-reply", False),
        ("u", "B-reply", True),
        ("a", "third\nContext: \nA-reply\nB-reply", True),  # the edge's message: the initiator says it
        ("u", "A-reply", True),
    ]
