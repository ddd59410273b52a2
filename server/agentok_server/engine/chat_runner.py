"""Runs one chat an agent starts (with an agent or with a group) and summarises it
(docs/autogen-semantics.md §1, "Summary methods")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .conversation import TwoAgentChat
from .flow_spec import ConverseSpec, FlowSpec, SummaryMethod
from .group_chat import GroupChat
from .replies import Replier
from .run_io import Complete, FlowIO, RunIO

# What AutoGen puts between a chat's message and the summaries of the chats before it.
CONTEXT = "\nContext: \n"


def with_carryover(message: str, summaries: list[str]) -> str:
    """AutoGen's carryover: the earlier chats' summaries, empty ones included, after the message."""
    return message + CONTEXT + "\n".join(summaries) if summaries else message


@dataclass(frozen=True)
class ChatOutcome:
    reason: str
    summary: str  # "" when not asked for


class _Chat(Protocol):
    def last_message(self) -> str: ...

    def summary_view(self) -> tuple[Any, list[dict[str, Any]]]: ...


class ChatRunner:
    def __init__(self, spec: FlowSpec, complete: Complete, replier: Replier) -> None:
        self.spec = spec
        self._complete = complete
        self._replier = replier

    def ends_before_first_message(self, chat: ConverseSpec) -> str | None:
        """Why a chat with max_turns ends before its initiator makes (or asks for) its first message: AutoGen
        checks the recipient's max_consecutive_auto_reply first, and a limit of 0 stops it there."""
        if chat.max_turns is None or chat.recipient in self.spec.groups:
            return None
        recipient = self.spec.agent(chat.recipient)
        if recipient.max_consecutive_auto_reply > 0:
            return None
        return f"maximum consecutive auto-replies of {recipient.name!r} reached"

    async def run(
        self,
        chat: ConverseSpec,
        message: str,
        io: FlowIO,
        *,
        stored: bool,
        by_human: bool = False,
        summarize: bool = True,
    ) -> ChatOutcome:
        """Runs `chat` opening with `message` (already stored, or said now), and its summary if asked."""
        if chat.recipient not in self.spec.groups:
            return await self.run_two_agent(chat, message, io, stored=stored, by_human=by_human, summarize=summarize)
        group = GroupChat(
            self.spec.groups[chat.recipient],
            self.spec.agent(chat.initiator),
            self.spec.agents,
            self._replier,
            self._complete,
        )
        reason = await group.run(message, io, stored=stored, by_human=by_human)
        return ChatOutcome(reason, await self._summary(chat, group) if summarize else "")

    async def run_two_agent(
        self,
        chat: ConverseSpec,
        message: str,
        io: RunIO,
        *,
        stored: bool,
        by_human: bool = False,
        summarize: bool = True,
    ) -> ChatOutcome:
        conversation = TwoAgentChat(
            self.spec.agent(chat.initiator), self.spec.agent(chat.recipient), chat.max_turns, self._replier
        )
        reason = await conversation.run(message, io, stored=stored, by_human=by_human)
        return ChatOutcome(reason, await self._summary(chat, conversation) if summarize else "")

    async def _summary(self, chat: ConverseSpec, conversation: _Chat) -> str:
        if chat.summary_method is SummaryMethod.LAST_MSG:
            return conversation.last_message().replace("TERMINATE", "")
        agent, messages = conversation.summary_view()
        return await self._complete(agent, [*messages, {"role": "system", "content": chat.summary_prompt}])
