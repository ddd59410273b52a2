"""The two-agent conversation, with AutoGen's observed semantics (shared/notes/autogen-semantics.md §1).

Written as an explicit loop over explicit state rather than AutoGen's recursive send/receive, so that a
run can be awaited, cancelled mid model call, and (later) checkpointed step by step.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..domain.model import MessageType, NewMessage
from .flow_spec import AgentSpec, FlowSpec, HumanInputMode

EXIT = "exit"

Complete = Callable[[AgentSpec, list[dict[str, Any]]], Awaitable[str]]


class RunIO(Protocol):
    """What a run needs from its host: store a message, and ask a person."""

    async def say(self, message: NewMessage) -> None: ...

    async def ask_human(self, agent: AgentSpec, prompt: str) -> str: ...


@dataclass
class _Said:
    sender: str
    content: str


@dataclass
class ConversationState:
    history: list[_Said] = field(default_factory=list)
    # Consecutive auto-replies each agent made to its peer; a human answer resets it.
    auto_replies: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Reply:
    content: str
    by_human: bool


class TwoAgentConversation:
    def __init__(self, spec: FlowSpec, complete: Complete) -> None:
        self._spec = spec
        self._complete = complete
        self._initiator = spec.agent(spec.chat.initiator)
        self._recipient = spec.agent(spec.chat.recipient)
        self.state = ConversationState()

    async def run(self, first_message: str, io: RunIO) -> str:
        """Runs the chat after the initiator's first message (already stored); returns why it ended."""
        a, b = self._initiator, self._recipient
        self.state.history.append(_Said(a.node_id, first_message))
        max_turns = self._spec.chat.max_turns
        if max_turns is None:
            # AutoGen's ping-pong: each receiver replies until a reply is None.
            sender, receiver = a, b
            while True:
                reply, why = await self._generate_reply(receiver, sender, io)
                if reply is None:
                    return why
                await self._say(receiver, sender, reply, io)
                sender, receiver = receiver, sender
        for turn in range(max_turns):
            # AutoGen starts each round by comparing the initiator's count of auto-replies to the recipient
            # with the recipient's limit; a recipient that asks a person ALWAYS is stopped only by this.
            if self.state.auto_replies.get(a.node_id, 0) >= b.max_consecutive_auto_reply:
                return f"maximum consecutive auto-replies of {b.name!r} reached"
            if turn > 0:
                message, why = await self._generate_reply(a, b, io)
                if message is None:
                    return why
                await self._say(a, b, message, io)
            reply, why = await self._generate_reply(b, a, io)
            if reply is None:
                return why
            await self._say(b, a, reply, io)
            if b.is_termination_msg(reply.content):
                return f"termination message from {b.name!r}"
        return f"maximum turns ({max_turns}) reached"

    async def _say(self, sender: AgentSpec, receiver: AgentSpec, reply: _Reply, io: RunIO) -> None:
        self.state.history.append(_Said(sender.node_id, reply.content))
        kind = MessageType.USER if reply.by_human or sender.kind == "user" else MessageType.ASSISTANT
        await io.say(NewMessage(type=kind, sender=sender.name, receiver=receiver.name, content=reply.content))

    async def _generate_reply(self, agent: AgentSpec, sender: AgentSpec, io: RunIO) -> tuple[_Reply | None, str]:
        """AutoGen's reply pipeline: human/termination check, then the model, then the default reply."""
        last = self.state.history[-1].content
        counter = self.state.auto_replies.get(agent.node_id, 0)
        mode = agent.human_input_mode
        answer = ""
        ended_by = ""
        if mode is HumanInputMode.ALWAYS:
            answer = await io.ask_human(
                agent,
                f"Replying as {agent.name}. Provide feedback to {sender.name}. Press enter to skip and use "
                "auto-reply, or type 'exit' to end the conversation: ",
            )
            if not answer and agent.is_termination_msg(last):
                answer, ended_by = EXIT, f"termination message received by {agent.name!r}"
        elif counter >= agent.max_consecutive_auto_reply:
            ended_by = f"maximum consecutive auto-replies of {agent.name!r} reached"
            if mode is HumanInputMode.NEVER:
                answer = EXIT
            else:
                terminate = agent.is_termination_msg(last)
                prompt = (
                    f"Please give feedback to {sender.name}. Press enter or type 'exit' to stop the conversation: "
                    if terminate
                    else f"Please give feedback to {sender.name}. Press enter to skip and use auto-reply, "
                    "or type 'exit' to stop the conversation: "
                )
                answer = await io.ask_human(agent, prompt)
                if not answer and terminate:
                    answer = EXIT
        elif agent.is_termination_msg(last):
            ended_by = f"termination message received by {agent.name!r}"
            if mode is HumanInputMode.NEVER:
                answer = EXIT
            else:
                answer = await io.ask_human(
                    agent,
                    f"Please give feedback to {sender.name}. Press enter or type 'exit' to stop the conversation: ",
                )
                answer = answer or EXIT
        if answer == EXIT:
            self.state.auto_replies[agent.node_id] = 0
            return None, ended_by or f"the person answering for {agent.name!r} typed 'exit'"
        if answer or (mode is not HumanInputMode.NEVER and agent.max_consecutive_auto_reply == 0):
            self.state.auto_replies[agent.node_id] = 0
            return _Reply(answer, by_human=True), ""
        self.state.auto_replies[agent.node_id] = counter + 1
        if agent.uses_llm:
            return _Reply(await self._complete(agent, self._view(agent)), by_human=False), ""
        return _Reply(agent.default_auto_reply, by_human=False), ""

    def _view(self, agent: AgentSpec) -> list[dict[str, Any]]:
        """The history as `agent` sees it: its own messages are the assistant's, the peer's the user's."""
        names = {a.node_id: _wire_name(a.name) for a in (self._initiator, self._recipient)}
        messages: list[dict[str, Any]] = []
        if agent.system_message:
            messages.append({"role": "system", "content": agent.system_message})
        for said in self.state.history:
            role = "assistant" if said.sender == agent.node_id else "user"
            messages.append({"role": role, "content": said.content, "name": names[said.sender]})
        return messages


def _wire_name(name: str) -> str:
    """OpenAI-compatible endpoints refuse a message `name` with spaces or <|\\/>; agents may have them."""
    return re.sub(r"[\s<|\\/>]+", "_", name)[:64]
