"""Nested chats: the chats an agent runs to make its reply (AutoGen's
`register_nested_chats`, docs/autogen-semantics.md §4).

They run whenever the host must reply to a sender that is not one of their recipients (Agentok's trigger),
after the host's human/termination check. The first nested chat opens with its edge's message or else
the message the host is replying to; a later one with no message is skipped; each gets the carryover of
the summaries before it. The host's reply is the summary of the last chat run; none run: no reply.
"""

from __future__ import annotations

import asyncio

from .chat_runner import ChatOutcome, ChatRunner, with_carryover
from .flow_spec import AgentSpec, ConverseSpec
from .run_io import RunIO


class NestedChats:
    def __init__(self, runner: ChatRunner) -> None:
        self._runner = runner
        self._nested = runner.spec.nested

    def triggers(self, host: AgentSpec, sender: AgentSpec | None) -> bool:
        chats = self._nested.get(host.node_id, ())
        return bool(chats) and (sender is None or sender.node_id not in [c.recipient for c in chats])

    async def reply(self, host: AgentSpec, last_message: str, io: RunIO) -> str | None:
        return await self.run(host, last_message, io)

    async def run(self, host: AgentSpec, last_message: str, io: RunIO, *, first_stored: bool = False) -> str | None:
        """The host's reply to `last_message`. `first_stored`: the run's first message, already stored as
        the first nested chat's opening message, opens that chat whatever its edge says."""
        queue: list[tuple[ConverseSpec, str]] = []
        for i, chat in enumerate(self._nested[host.node_id]):
            message = last_message if i == 0 and (chat.message is None or first_stored) else chat.message
            if message:
                queue.append((chat, message))
        if not queue:
            return None
        summaries: list[str] = []
        for k, (chat, message) in enumerate(queue):
            await asyncio.sleep(0)  # as between sequential chats: one that ends at once does no IO
            ended = self._runner.ends_before_first_message(chat)
            if ended is not None:
                outcome = ChatOutcome(ended, "")
            else:
                stored = first_stored and k == 0
                outcome = await self._runner.run_two_agent(chat, with_carryover(message, summaries), io, stored=stored)
            summaries.append(outcome.summary)
        return summaries[-1]
