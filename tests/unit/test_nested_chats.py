"""Unit tests for nested chats: a `nestedchat` node's chats make its upstream agent's replies.

Expected messages are those observed on autogen 0.14.1 (docs/autogen-semantics.md §4), with
Agentok's trigger: the chats run when the host must reply to anyone but their own recipients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentok_server.domain.model import MessageType

from .scripted import agent, converse, flow, group, nested, run

FLOWS_DIR = Path(__file__).resolve().parents[1] / "data" / "agentok-flows"


def critic_reviewer(u: dict[str, Any] | None = None, host: dict[str, Any] | None = None) -> dict[str, Any]:
    """u -> host; host's nested chats: critic (max_turns 1), reviewer ("review this", max_turns 2), reviewer."""
    return flow(
        "u",
        [
            u or agent("u", "U-auto", max_consecutive_auto_reply=2),
            host or agent("host", "HOST-auto"),
            nested(),
            agent("critic", "CRITIC TERMINATE"),
            agent("reviewer", "REVIEWER: ok"),
        ],
        [
            converse("u", "host"),
            converse("host", "n"),
            converse("n", "critic", max_turns=1),
            converse("n", "reviewer", message="review this", max_turns=2),
            {**converse("n", "reviewer"), "id": "n-reviewer-again"},
        ],
    )


NESTED_RUN = [
    ("host", "critic", "Q"),  # the first chat opens with the message the host answers
    ("critic", "host", "CRITIC TERMINATE"),
    ("host", "reviewer", "review this\nContext: \nCRITIC "),
    ("reviewer", "host", "REVIEWER: ok"),
    ("host", "reviewer", "HOST-auto"),  # inside its nested chat the host replies as usual: no nesting
    ("reviewer", "host", "REVIEWER: ok"),
    # the third chat has no message: skipped
]


async def test_observed_nested_chats_on_every_outer_turn() -> None:
    out = await run(critic_reviewer(), first="Q")
    answer_u = [("host", "critic", "U-auto"), *NESTED_RUN[1:]]
    assert out.io.routed() == [
        *NESTED_RUN,
        ("host", "u", "REVIEWER: ok"),  # the host's reply: the last nested chat's summary
        ("u", "host", "U-auto"),
        *answer_u,
        ("host", "u", "REVIEWER: ok"),
        ("u", "host", "U-auto"),
        *answer_u,
        ("host", "u", "REVIEWER: ok"),
    ]
    assert out.reason == "maximum consecutive auto-replies of 'u' reached"
    assert any("'n-reviewer-again'" in w and "skipped" in w for w in out.spec.warnings)


async def test_host_asking_always_typed_text_replaces_the_nested_chats() -> None:
    graph = critic_reviewer(u=agent("u", "U-auto", max_consecutive_auto_reply=1), host=agent("host", mode="ALWAYS"))
    out = await run(graph, first="Q", answers=["typed", "", ""])
    assert out.io.routed() == [
        ("host", "u", "typed"),
        ("u", "host", "U-auto"),
        ("host", "critic", "U-auto"),  # an empty answer lets the nested chats run
        ("critic", "host", "CRITIC TERMINATE"),
        ("host", "reviewer", "review this\nContext: \nCRITIC "),
        ("reviewer", "host", "REVIEWER: ok"),
        ("host", "reviewer", ""),  # asked inside its nested chat too; its auto-reply is ""
        ("reviewer", "host", "REVIEWER: ok"),
        ("host", "u", "REVIEWER: ok"),
    ]
    assert out.io.messages[0].type is MessageType.USER
    assert [prompt.split(".")[1] for _, prompt in out.io.prompts] == [
        " Provide feedback to u",
        " Provide feedback to u",
        " Provide feedback to reviewer",
    ]


async def test_no_nested_chat_to_run_ends_the_outer_chat() -> None:
    # u's auto-reply is "": the first nested chat would open with "", so it is skipped, and so is the second.
    graph = flow(
        "u",
        [agent("u", ""), agent("host"), nested(), agent("c", "C"), agent("d", "D")],
        [converse("u", "host"), converse("host", "n"), converse("n", "c", max_turns=1), converse("n", "d")],
    )
    out = await run(graph)
    assert out.io.routed() == [("host", "c", "task"), ("c", "host", "C"), ("host", "u", "C"), ("u", "host", "")]
    assert out.reason == "the nested chats of 'host' had no message to start with"


async def test_reflection_summary_is_the_hosts_reply() -> None:
    graph = flow(
        "u",
        [agent("u", "U", max_consecutive_auto_reply=0), agent("host"), nested(), agent("c", "C", llm=True)],
        [
            converse("u", "host"),
            converse("host", "n"),
            converse("n", "c", max_turns=1, summary_method="reflection_with_llm"),
        ],
    )
    out = await run(graph, replies=["C-llm", "the gist"])
    assert out.io.routed() == [("host", "c", "task"), ("c", "host", "C-llm"), ("host", "u", "the gist")]
    assert out.model.calls[1][1][-1]["content"].startswith("Summarize the takeaway")


async def test_group_member_replies_with_its_nested_chats() -> None:
    graph = flow(
        "u",
        [
            agent("u", "U"),
            group(max_round=3, speaker_selection_method="round_robin"),
            agent("m", parent="g"),
            agent("x", "X", parent="g"),
            nested(),
            agent("c", "C"),
        ],
        [converse("u", "g"), converse("m", "n"), converse("n", "c", max_turns=1)],
    )
    out = await run(graph)
    assert out.io.routed() == [
        ("m", "c", "task"),  # the manager relayed the initiator's message to m: m answers it
        ("c", "m", "C"),
        ("m", "chat_manager", "C"),
        ("x", "chat_manager", "X"),
    ]


# --------------------------------------------------------------------------------------------------
# a first agent with only nested chats (real flow 06)


def host_first(**host: Any) -> dict[str, Any]:
    return flow(
        "h",
        [agent("h", "H-auto", **host), nested(), agent("a1", "A1 TERMINATE"), agent("a2", "A2")],
        [converse("h", "n"), converse("n", "a1"), converse("n", "a2", message="check", max_turns=1)],
    )


async def test_first_agents_nested_chats_answer_the_first_message() -> None:
    out = await run(host_first(termination_msg="terminate"), first="poem")
    # The first message is already stored as h -> a1 (FlowSpec.chat): it is not said again.
    assert out.spec.chat.recipient == "a1"
    assert out.io.routed() == [
        ("a1", "h", "A1 TERMINATE"),
        ("h", "a2", "check\nContext: \nA1 "),
        ("a2", "h", "A2"),
    ]
    assert out.reason == "the nested chats of 'h' replied"  # h's reply has nobody to go to: not stored


async def test_first_agents_termination_check_comes_before_its_nested_chats() -> None:
    out = await run(host_first(termination_msg="terminate"), first="poem, then terminate")
    assert out.io.messages == []
    assert out.reason == "termination message received by 'h'"


async def test_first_agent_asking_always_is_asked_for_the_sender() -> None:
    out = await run(host_first(mode="ALWAYS"), first="poem", answers=["my own answer"])
    assert out.io.prompts == [
        (
            "h",
            "Replying as h. Provide feedback to the sender. Press enter to skip and use auto-reply, "
            "or type 'exit' to end the conversation: ",
        )
    ]
    assert out.io.messages == []
    assert out.reason == "the person answering for 'h' replied"


async def test_real_flow_06() -> None:
    (path,) = FLOWS_DIR.glob("06-*.json")
    graph = json.loads(path.read_text())
    first = "Write a poem based on recent headlines about Vancouver."
    out = await run(graph, first=first, replies=["Rain on the harbour. TERMINATE"])
    # User (NEVER, termination_msg TERMINATE) ends the chat with the first Assistant; the second chat has
    # no message and is skipped.
    assert out.io.routed() == [("Assistant", "User", "Rain on the harbour. TERMINATE")]
    ((who, messages),) = out.model.calls
    assert who == "Assistant"
    assert messages[1:] == [{"role": "user", "content": first, "name": "User"}]
    assert messages[0]["role"] == "system"
