"""Sequential chats: the first agent's chats, one after another (AutoGen's
`initiate_chats`, docs/autogen-semantics.md §2).

The first chat opens with the run's first message (as Agentok's codegen passes the message the run is
started with). Each later chat opens with its edge's message, or asks the person for one (prompt `>`),
followed by the carryover: the summaries of all the chats before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .chat_runner import ChatOutcome, ChatRunner, with_carryover
from .flow_spec import ConverseSpec
from .run_io import FlowIO


async def run_sequential(runner: ChatRunner, chats: Sequence[ConverseSpec], first_message: str, io: FlowIO) -> str:
    """Runs the chats in order; returns why they ended."""
    summaries: list[str] = []
    reasons: list[str] = []
    for k, chat in enumerate(chats):
        # A chat that ends before its first message does no IO, so nothing else would let the event loop
        # serve other calls between them: a flow of thousands of such chats would hold it for the whole lot.
        await asyncio.sleep(0)
        # A summary is made only when a later chat carries it over: nobody reads the last one.
        summarize = k < len(chats) - 1
        ended = runner.ends_before_first_message(chat) if k > 0 else None
        if k == 0:
            outcome = await runner.run(chat, first_message, io, stored=True, summarize=summarize)
        elif ended is not None:
            outcome = ChatOutcome(ended, "")
        else:
            message, by_human = chat.message, False
            if message is None:
                message, by_human = await io.ask_human(runner.spec.agent(chat.initiator), ">"), True
            message = with_carryover(message, summaries)
            outcome = await runner.run(chat, message, io, stored=False, by_human=by_human, summarize=summarize)
        summaries.append(outcome.summary)
        reasons.append(outcome.reason)
    if len(chats) == 1:
        return reasons[0]
    return "; ".join(
        f"chat {k} with {runner.spec.agent(chat.recipient).name!r}: {reason}"
        for k, (chat, reason) in enumerate(zip(chats, reasons, strict=True), 1)
    )
