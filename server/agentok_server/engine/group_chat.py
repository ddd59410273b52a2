"""A group chat: AutoGen's GroupChatManager.run_chat, as observed on autogen 0.14.1 (docs/autogen-semantics.md §3).

A round is one message added to the group: the initiator's message is round 1. Each round the manager
relays the message to every member but its speaker, ends the chat on its own termination check (content
exactly "TERMINATE") or at `max_round`, else selects a speaker and asks it to reply to the manager; a
speaker that gives no reply ends the chat. Each member holds its own copy of the messages (what its model
sees); the group's rounds are what speaker selection and a `reflection_with_llm` summary see.

Stored messages: a member's message goes to "chat_manager" (AutoGen: the speaker sends it to the manager,
which relays it); the relays are not stored again. The introductions go from "chat_manager" to every
member at once, stored once with no receiver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..domain.model import MessageType, NewMessage
from .flow_spec import MANAGER_NAME, AgentSpec, GroupSpec
from .replies import Replier, Said, new_message, wire_name
from .run_io import Complete, FlowIO
from .speaker_selection import select_speaker

INTRODUCTION = (
    "Hello everyone. We have assembled a great team today to answer questions and solve tasks. In attendance are:"
)


def introductions(members: list[AgentSpec]) -> str:
    roles = "\n".join(f"{m.name}: {m.description}".strip() for m in members)
    return f"{INTRODUCTION}\n\n{roles}"


class GroupChat:
    """The initiator's chat with a group's manager: `initiator.initiate_chat(manager, message)`. The whole
    group runs as the manager's one reply, so the chat is one turn."""

    def __init__(
        self,
        group: GroupSpec,
        initiator: AgentSpec,
        agents: Mapping[str, AgentSpec],
        replier: Replier,
        complete: Complete,
    ) -> None:
        self.group = group
        self.initiator = initiator
        self.manager = agents[group.node_id]
        self.members = [agents[m] for m in group.members]
        self._replier = replier
        self._complete = complete
        self.rounds: list[Said] = []  # AutoGen's groupchat.messages
        # Each member's copy of the chat with the manager; the initiator's own copy even if it is not a member.
        self.held: dict[str, list[Said]] = {m.node_id: [] for m in [*self.members, initiator]}
        self.auto_replies: dict[str, int] = {}

    async def run(self, first_message: str, io: FlowIO, *, stored: bool = True, by_human: bool = False) -> str:
        """Runs the group after the initiator's message (already stored unless `stored` is false)."""
        manager, group = self.manager, self.group
        message = Said(self.initiator.node_id, self.initiator.name, first_message)
        if not stored:
            await io.say(
                new_message(self.initiator, MANAGER_NAME, first_message, by_human=by_human), agent_turn=not by_human
            )
        self.held[self.initiator.node_id].append(message)
        if manager.is_termination_msg(first_message):
            return f"termination message received by {MANAGER_NAME!r}"
        if group.send_introductions:
            # Sent before the first message is relayed: the members but the initiator hold it first.
            intro = Said(manager.node_id, manager.name, introductions(self.members))
            for member in self.members:
                self.held[member.node_id].append(intro)
            # The manager's formality, not a round of the conversation: no agent turn.
            await io.say(
                NewMessage(type=MessageType.ASSISTANT, sender=MANAGER_NAME, receiver="", content=intro.content),
                agent_turn=False,
            )
        speaker = self.initiator
        for round_no in range(1, group.max_round + 1):
            self.rounds.append(message)
            for member in self.members:
                if member.node_id != speaker.node_id:
                    self.held[member.node_id].append(message)
            if manager.is_termination_msg(message.content):
                return f"termination message received by {MANAGER_NAME!r}"
            if round_no == group.max_round:
                return f"maximum rounds ({group.max_round}) reached"
            eligible = self._can_run(message) if message.tool_calls else None
            if eligible == []:
                names = ", ".join(dict.fromkeys(c.name for c in message.tool_calls))
                return f"no agent can execute the function {names}"
            speaker = await select_speaker(
                group.speaker_selection,
                self.members,
                speaker,
                io=io,
                complete=self._complete,
                manager=manager,
                messages=self.rounds,
                eligible=eligible,
            )
            held = self.held[speaker.node_id]
            reply, why = await self._replier.reply(speaker, manager, held, self.auto_replies, io)
            if reply is None:
                return f"no reply from {speaker.name!r}: {why}"
            message = reply.said_by(speaker)
            held.append(message)
            await io.say(reply.message(speaker, MANAGER_NAME), agent_turn=not reply.by_human)
        return f"maximum rounds ({group.max_round}) reached"

    def _can_run(self, message: Said) -> list[AgentSpec]:
        """AutoGen's func_call_filter: the members that run every function the message calls, else those that
        run any function at all (docs/autogen-semantics.md §8)."""
        tools = self._replier.tools
        names = {c.name for c in message.tool_calls}
        able = [m for m in self.members if all(tools.runs(m.node_id, n) for n in names)]
        return able or [m for m in self.members if tools.functions.get(m.node_id)]

    def last_message(self) -> str:
        """The last message the initiator holds (AutoGen's `last_msg` summary of the chat)."""
        held = self.held[self.initiator.node_id]
        return held[-1].content if held else ""

    def summary_view(self) -> tuple[AgentSpec, list[dict[str, Any]]]:
        """For a `reflection_with_llm` summary: the manager's model, over the group's rounds."""
        return self.manager, [{"role": "user", "content": s.content, "name": wire_name(s.name)} for s in self.rounds]
