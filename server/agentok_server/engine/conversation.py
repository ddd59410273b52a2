"""The two-agent chat, with AutoGen's observed semantics (docs/autogen-semantics.md §1).

Written as an explicit loop over explicit state rather than AutoGen's recursive send/receive, so that a
run can be awaited, cancelled mid model call, and rebuilt step by step by replaying its journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .flow_spec import AgentSpec
from .replies import Replier, Reply, Said, model_view, new_message
from .run_io import RunIO

__all__ = ["ConversationState", "TwoAgentChat"]


@dataclass
class ConversationState:
    history: list[Said] = field(default_factory=list)
    # Consecutive auto-replies each agent made to its peer; a human answer resets it.
    auto_replies: dict[str, int] = field(default_factory=dict)


class TwoAgentChat:
    """One chat between two agents: AutoGen's `initiator.initiate_chat(recipient, message, max_turns)`."""

    def __init__(self, initiator: AgentSpec, recipient: AgentSpec, max_turns: int | None, replier: Replier) -> None:
        self.initiator = initiator
        self.recipient = recipient
        self.max_turns = max_turns
        self._replier = replier
        self.state = ConversationState()

    async def run(self, first_message: str, io: RunIO, *, stored: bool = True, by_human: bool = False) -> str:
        """Runs the chat after the initiator's first message (already stored unless `stored` is false, in
        which case it is said first; `by_human`: a person typed it); returns why the chat ended."""
        a, b = self.initiator, self.recipient
        self.state.history.append(Said(a.node_id, a.name, first_message))
        if not stored:
            await io.say(new_message(a, b.name, first_message, by_human=by_human), agent_turn=not by_human)
        if self.max_turns is None:
            # AutoGen's ping-pong: each receiver replies until a reply is None.
            sender, receiver = a, b
            while True:
                reply, why = await self._reply(receiver, sender, io)
                if reply is None:
                    return why
                await self._say(receiver, sender, reply, io)
                sender, receiver = receiver, sender
        # AutoGen's `initiate_chat(max_turns=N)`: each turn the initiator sends and requests a reply, and the
        # recipient's reply comes back without one. Only the initiator's side ends the loop early: the
        # checks below and its own None. The recipient's None (its limit, a person's 'exit', a termination
        # message it received) just means no reply this turn; its reply check reset its counter, and the
        # initiator is asked again next turn (docs/autogen-semantics.md §1, "With `max_turns=N`").
        for turn in range(self.max_turns):
            # The initiator's count of auto-replies to the recipient against the recipient's limit: a
            # recipient that asks a person ALWAYS is stopped only by this.
            if self.state.auto_replies.get(a.node_id, 0) >= b.max_consecutive_auto_reply:
                return f"maximum consecutive auto-replies of {b.name!r} reached"
            if turn > 0:
                # The recipient's own termination test on the last message the initiator holds: its reply,
                # or the initiator's own message when the recipient gave none.
                if b.is_termination_msg(self.state.history[-1].content):
                    return f"termination message from {b.name!r}"
                message, why = await self._reply(a, b, io)
                if message is None:
                    return why
                await self._say(a, b, message, io)
            reply, _ = await self._reply(b, a, io)
            if reply is not None:
                await self._say(b, a, reply, io)
        return f"maximum turns ({self.max_turns}) reached"

    def last_message(self) -> str:
        """The last message of the pair, whoever sent it (AutoGen's `last_msg` summary reads it)."""
        return self.state.history[-1].content if self.state.history else ""

    def summary_view(self) -> tuple[AgentSpec, list[dict[str, Any]]]:
        """For a `reflection_with_llm` summary: the agent whose model writes it (the recipient's first) and
        the history as the recipient holds it, without its system message."""
        agent = self.recipient if self.recipient.uses_llm else self.initiator
        return agent, model_view(self.recipient, self.state.history, system=False)

    async def _reply(self, agent: AgentSpec, sender: AgentSpec, io: RunIO) -> tuple[Reply | None, str]:
        return await self._replier.reply(agent, sender, self.state.history, self.state.auto_replies, io)

    async def _say(self, sender: AgentSpec, receiver: AgentSpec, reply: Reply, io: RunIO) -> None:
        self.state.history.append(reply.said_by(sender))
        await io.say(reply.message(sender, receiver.name), agent_turn=not reply.by_human)
