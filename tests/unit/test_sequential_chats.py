"""Unit tests for sequential chats: several converse edges from the first agent (AutoGen's initiate_chats).

Expected messages are those observed on autogen 0.14.1 (docs/autogen-semantics.md §2).
"""

from __future__ import annotations

from agentok_server.domain.model import MessageType

from .scripted import agent, converse, flow, group, run


async def test_carryover_and_a_chat_without_message_asks() -> None:
    """Observed: `u.initiate_chats([a "first" max_turns=1, manager "second", b (no message) max_turns=1])`."""
    graph = flow(
        "u",
        [
            agent("u", "U-auto"),
            agent("a", "A TERMINATE"),
            group(max_round=3, speaker_selection_method="round_robin"),
            agent("b", "B-reply", parent="g"),
            agent("c", "C-reply", parent="g"),
        ],
        [converse("u", "a", max_turns=1), converse("u", "g", instructions="second"), converse("u", "b", max_turns=1)],
    )
    out = await run(graph, first="first", answers=["typed third"])
    assert out.io.routed() == [
        ("a", "u", "A TERMINATE"),
        ("u", "chat_manager", "second\nContext: \nA "),
        ("b", "chat_manager", "B-reply"),
        ("c", "chat_manager", "C-reply"),
        ("u", "b", "typed third\nContext: \nA \nC-reply"),
        ("b", "u", "B-reply"),
    ]
    # The `>` question is the initiator's; what the person typed is a person's message.
    assert out.io.prompts == [("u", ">")]
    assert out.io.messages[1].type is MessageType.ASSISTANT
    assert out.io.messages[4].type is MessageType.USER
    assert out.reason == (
        "chat 1 with 'a': maximum turns (1) reached; chat 2 with 'chat_manager': maximum rounds (3) reached; "
        "chat 3 with 'b': maximum turns (1) reached"
    )


async def test_chats_run_in_edge_order_not_node_order() -> None:
    graph = flow(
        "u",
        [agent("u"), agent("c", "C"), agent("b", "B")],
        [converse("u", "b", max_turns=1), converse("u", "c", message="then c", max_turns=1)],
    )
    out = await run(graph)
    assert out.io.routed() == [("b", "u", "B"), ("u", "c", "then c\nContext: \nB"), ("c", "u", "C")]


async def test_every_earlier_summary_is_carried_over() -> None:
    """Observed: `"edit it\\nContext: \\nR: facts \\nW: draft"` (last_msg drops every "TERMINATE")."""
    graph = flow(
        "u",
        [agent("u"), agent("r", "R: facts TERMINATE"), agent("w", "W: draft"), agent("e", "E: done")],
        [
            converse("u", "r", max_turns=1),
            converse("u", "w", message="write", max_turns=1),
            converse("u", "e", message="edit it", max_turns=1),
        ],
    )
    out = await run(graph, first="research")
    assert [m.content for m in out.io.messages if m.sender == "u"] == [
        "write\nContext: \nR: facts ",
        "edit it\nContext: \nR: facts \nW: draft",
    ]


async def test_empty_summaries_are_still_joined() -> None:
    graph = flow(
        "u",
        [agent("u"), agent("a", ""), agent("b", "B")],
        [converse("u", "a", max_turns=1), converse("u", "b", message="second", max_turns=1)],
    )
    out = await run(graph)
    assert out.io.said() == [("a", ""), ("u", "second\nContext: \n"), ("b", "B")]


async def test_last_msg_summary_is_the_last_message_whoever_sent_it() -> None:
    # Without max_turns, u speaks last: a's mcar 1 ends the ping-pong when a must answer u's auto-reply.
    graph = flow(
        "u",
        [agent("u", "U-last"), agent("a", "A", max_consecutive_auto_reply=1), agent("b", "B")],
        [converse("u", "a"), converse("u", "b", message="next", max_turns=1)],
    )
    out = await run(graph)
    assert out.io.said() == [("a", "A"), ("u", "U-last"), ("u", "next\nContext: \nU-last"), ("b", "B")]


async def test_reflection_with_llm_uses_the_recipients_model_and_view() -> None:
    graph = flow(
        "u",
        [agent("u", "U"), agent("a", llm=True, system_message="SYS-A"), agent("b", llm=True)],
        [
            converse("u", "a", max_turns=1, summary_method="reflection_with_llm", summary_prompt="Sum up."),
            converse("u", "b", message="next", max_turns=1, summary_method="reflection_with_llm"),
        ],
    )
    out = await run(graph, replies=["A-llm", "SUMMARY", "B-llm"])
    assert out.io.said() == [("a", "A-llm"), ("u", "next\nContext: \nSUMMARY"), ("b", "B-llm")]
    # The summary call: the recipient's history without its system message, then the prompt as a system
    # message. The last chat's summary is not made: nothing reads it.
    assert out.model.calls[1] == (
        "a",
        [
            {"role": "user", "content": "task", "name": "u"},
            {"role": "assistant", "content": "A-llm", "name": "a"},
            {"role": "system", "content": "Sum up."},
        ],
    )
    assert [who for who, _ in out.model.calls] == ["a", "a", "b"]
    assert out.model.calls[2][1][-1] == {"role": "user", "content": "next\nContext: \nSUMMARY", "name": "u"}


async def test_reflection_with_llm_falls_back_to_the_initiators_model() -> None:
    graph = flow(
        "u",
        [agent("u", llm=True), agent("a", "A"), agent("b", "B")],
        [
            converse("u", "a", max_turns=1, summary_method="reflection_with_llm"),
            converse("u", "b", message="m", max_turns=1),
        ],
    )
    out = await run(graph, replies=["S"])
    assert out.model.calls[0] == (
        "u",
        [
            {"role": "user", "content": "task", "name": "u"},
            {"role": "assistant", "content": "A", "name": "a"},
            {
                "role": "system",
                "content": "Summarize the takeaway from the conversation. Do not add any introductory phrases.",
            },
        ],
    )
    assert out.io.said() == [("a", "A"), ("u", "m\nContext: \nS"), ("b", "B")]


async def test_group_summary_by_reflection_reads_the_rounds_with_the_managers_model() -> None:
    graph = flow(
        "u",
        [agent("u", "U"), group(max_round=2, speaker_selection_method="round_robin"), agent("m", "M", parent="g")],
        [converse("u", "g", summary_method="reflection_with_llm"), converse("u", "x", message="next", max_turns=1)],
    )
    graph["nodes"].append(agent("x", "X"))
    out = await run(graph, replies=["GROUP SUMMARY"])
    assert out.model.calls == [
        (
            "chat_manager",
            [
                {"role": "user", "content": "task", "name": "u"},
                {"role": "user", "content": "M", "name": "m"},
                {
                    "role": "system",
                    "content": "Summarize the takeaway from the conversation. Do not add any introductory phrases.",
                },
            ],
        )
    ]
    assert out.io.said() == [("m", "M"), ("u", "next\nContext: \nGROUP SUMMARY"), ("x", "X")]


async def test_group_last_msg_summary_is_the_initiators_last_message() -> None:
    graph = flow(
        "u",
        [
            agent("u", "U-auto"),
            group(max_round=3, speaker_selection_method="round_robin"),
            agent("m", "M TERMINATE", parent="g"),
            agent("x", "X"),
        ],
        [converse("u", "g"), converse("u", "x", message="next", max_turns=1)],
    )
    out = await run(graph)
    assert out.io.said() == [("m", "M TERMINATE"), ("u", "U-auto"), ("u", "next\nContext: \nU-auto"), ("x", "X")]


async def test_recipient_without_auto_replies_and_max_turns_ends_the_chat_before_it_starts() -> None:
    # AutoGen checks the recipient's max_consecutive_auto_reply before making (or asking for) the message.
    graph = flow(
        "u",
        [agent("u"), agent("a", "A"), agent("z", "Z", max_consecutive_auto_reply=0), agent("b", "B")],
        [
            converse("u", "a", max_turns=1),
            converse("u", "z", max_turns=1),
            converse("u", "b", message="m", max_turns=1),
        ],
    )
    out = await run(graph)
    assert out.io.prompts == []
    assert out.io.said() == [("a", "A"), ("u", "m\nContext: \nA\n"), ("b", "B")]
    assert "chat 2 with 'z': maximum consecutive auto-replies of 'z' reached" in out.reason


async def test_first_chat_opens_with_the_runs_message_whatever_its_edge_says() -> None:
    graph = flow(
        "u",
        [agent("u"), agent("a", "A"), agent("b", "B")],
        [converse("u", "a", message="edge text", max_turns=1), converse("u", "b", max_turns=1)],
    )
    out = await run(graph, first="typed at start", answers=["typed later"])
    assert out.io.said() == [("a", "A"), ("u", "typed later\nContext: \nA"), ("b", "B")]
