"""AutoGen's reply pipeline for one agent, shared by every kind of chat (docs/autogen-semantics.md §1, §3, §4).

An agent that must reply to a peer first runs the human/termination check (its `human_input_mode`,
`max_consecutive_auto_reply` and `is_termination_msg`); when that gives no final answer it auto-replies:
with its nested chats if it hosts some that this peer triggers, else with its model, else with its
default auto-reply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..domain.model import MessageType, NewMessage, ToolCall, ToolResult
from .code_execution import CodeBlock, extract_code_blocks
from .flow_spec import AgentSpec, HumanInputMode
from .run_io import Complete, RunIO
from .tool_calls import NO_TOOLS, ToolSet, joined_content, not_found

EXIT = "exit"
# The result of a tool call a person's typed reply skipped.
INTERRUPTED = "USER INTERRUPTED"
# AutoGen names a missing peer (a reply asked for with no sender) this way in its prompts.
NO_SENDER = "the sender"


@dataclass(frozen=True)
class Said:
    """One message as an agent holds it: who wrote it (node id and name) and what it says: text, the tool
    calls its model proposed, or the results of the calls it ran."""

    sender: str
    name: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_responses: tuple[ToolResult, ...] = ()
    # A person's text (with tool_responses: text that interrupted tool calls, so both reach the model).
    by_human: bool = False


@dataclass(frozen=True)
class Reply:
    content: str
    by_human: bool
    tool_calls: tuple[ToolCall, ...] = ()
    tool_responses: tuple[ToolResult, ...] = ()

    def said_by(self, agent: AgentSpec) -> Said:
        return Said(agent.node_id, agent.name, self.content, self.tool_calls, self.tool_responses, self.by_human)

    def message(self, sender: AgentSpec, receiver: str) -> NewMessage:
        return new_message(
            sender,
            receiver,
            self.content,
            by_human=self.by_human,
            tool_calls=self.tool_calls,
            tool_responses=self.tool_responses,
        )


class NestedReplies(Protocol):
    """The nested chats agents host (engine.nested)."""

    def triggers(self, host: AgentSpec, sender: AgentSpec | None) -> bool: ...

    async def reply(self, host: AgentSpec, last_message: str, io: RunIO) -> str | None: ...


def message_type(sender: AgentSpec, by_human: bool) -> MessageType:
    return MessageType.USER if by_human or sender.kind == "user" else MessageType.ASSISTANT


def new_message(
    sender: AgentSpec,
    receiver: str,
    content: str,
    *,
    by_human: bool = False,
    tool_calls: tuple[ToolCall, ...] = (),
    tool_responses: tuple[ToolResult, ...] = (),
) -> NewMessage:
    kind = MessageType.TOOL if tool_responses and not by_human else message_type(sender, by_human)
    return NewMessage(
        type=kind,
        sender=sender.name,
        receiver=receiver,
        content=content,
        tool_calls=tool_calls,
        tool_responses=tool_responses,
    )


def wire_name(name: str) -> str:
    """OpenAI-compatible endpoints refuse a message `name` with spaces or <|\\/>; agents may have them."""
    return re.sub(r"[\s<|\\/>]+", "_", name)[:64]


def model_view(agent: AgentSpec, history: Sequence[Said], *, system: bool = True) -> list[dict[str, Any]]:
    """The messages as `agent` holds them: its own are the assistant's, everyone else's the user's."""
    messages: list[dict[str, Any]] = []
    if system and agent.system_message:
        messages.append({"role": "system", "content": agent.system_message})
    for said in history:
        # A message's tool results go first, one `tool` message per call; a tool message itself is dropped,
        # a person's text that interrupted the calls follows them (docs/autogen-semantics.md §8).
        messages += [{"role": "tool", "tool_call_id": r.call_id, "content": r.content} for r in said.tool_responses]
        if said.tool_responses and not said.by_human:
            continue
        if said.tool_calls:
            # As both sides hold it: an assistant message, whoever's model proposed it, with no name.
            calls = _wire(said.tool_calls)
            messages.append({"role": "assistant", "content": said.content or None, "tool_calls": calls})
            continue
        message = {"role": "assistant" if said.sender == agent.node_id else "user", "content": said.content}
        if said.name:
            message["name"] = wire_name(said.name)
        messages.append(message)
    return messages


def _wire(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [
        {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
    ]


class Replier:
    def __init__(self, complete: Complete, nested: NestedReplies | None = None, tools: ToolSet = NO_TOOLS) -> None:
        self.complete = complete
        self.nested = nested
        self.tools = tools

    async def reply(
        self,
        agent: AgentSpec,
        sender: AgentSpec | None,
        history: Sequence[Said],
        auto_replies: dict[str, int],
        io: RunIO,
    ) -> tuple[Reply | None, str]:
        """`agent`'s reply to `sender` (None: a reply asked for with no sender), given the messages as `agent`
        holds them; `auto_replies` counts each agent's consecutive auto-replies in this chat. Returns the
        reply, or None and why the chat ends."""
        last = history[-1].content
        peer = sender.name if sender is not None else NO_SENDER
        counter = auto_replies.get(agent.node_id, 0)
        mode = agent.human_input_mode
        answer = ""
        ended_by = ""
        if mode is HumanInputMode.ALWAYS:
            answer = await io.ask_human(
                agent,
                f"Replying as {agent.name}. Provide feedback to {peer}. Press enter to skip and use "
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
                    f"Please give feedback to {peer}. Press enter or type 'exit' to stop the conversation: "
                    if terminate
                    else f"Please give feedback to {peer}. Press enter to skip and use auto-reply, "
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
                    f"Please give feedback to {peer}. Press enter or type 'exit' to stop the conversation: ",
                )
                answer = answer or EXIT
        if answer == EXIT:
            auto_replies[agent.node_id] = 0
            return None, ended_by or f"the person answering for {agent.name!r} typed 'exit'"
        if answer or (mode is not HumanInputMode.NEVER and agent.max_consecutive_auto_reply == 0):
            auto_replies[agent.node_id] = 0
            # A person's text skips the calls the message made: each gets AutoGen's interruption result.
            skipped = tuple(ToolResult(c.call_id, INTERRUPTED) for c in history[-1].tool_calls)
            return Reply(answer, by_human=True, tool_responses=skipped), ""
        auto_replies[agent.node_id] = counter + 1
        if self.nested is not None and self.nested.triggers(agent, sender):
            summary = await self.nested.reply(agent, last, io)
            if summary is None:
                return None, f"the nested chats of {agent.name!r} had no message to start with"
            return Reply(summary, by_human=False), ""
        if history[-1].tool_calls:
            # AutoGen's tool-calls reply: any agent runs the calls of the message it replies to, with the
            # functions it executes; a call of any other name is an error result.
            results = await self._run_tools(agent, history[-1].tool_calls, io)
            return Reply(joined_content(results), by_human=False, tool_responses=tuple(results)), ""
        if agent.executes_code:
            blocks = _code_since_last_spoke(agent, history)
            if blocks:
                return Reply(await io.run_code(agent, blocks), by_human=False), ""
        if agent.uses_llm:
            offered = self.tools.for_model(agent.node_id)
            if offered:
                proposed = await io.propose(agent, model_view(agent, history), offered)
                return Reply(proposed.content, by_human=False, tool_calls=proposed.tool_calls), ""
            return Reply(await self.complete(agent, model_view(agent, history)), by_human=False), ""
        return Reply(agent.default_auto_reply, by_human=False), ""

    async def _run_tools(self, agent: AgentSpec, calls: Sequence[ToolCall], io: RunIO) -> list[ToolResult]:
        found = [(call, self.tools.runs(agent.node_id, call.name)) for call in calls]
        known = [(call, tool) for call, tool in found if tool is not None]
        ran = iter(await io.run_tools(agent, known) if known else [])
        return [next(ran) if tool is not None else not_found(call) for call, tool in found]


def _code_since_last_spoke(agent: AgentSpec, history: Sequence[Said]) -> list[CodeBlock]:
    """AutoGen's `last_n_messages="auto"`: the messages since the agent last spoke, newest first; the first
    one holding code blocks is run."""
    for said in reversed(history):
        if said.sender == agent.node_id:
            break
        blocks = extract_code_blocks(said.content)
        if blocks:
            return blocks
    return []
