"""A run of a flow: the entry point the domain calls, whatever the flow's pattern.

- The first agent's chats (one two-agent chat, a chat with a group, or several of either one after another:
  engine.sequential), with the nested chats of any agent that takes part making that agent's replies.
- A first agent with no chats but nested chats (real flow 06): Agentok's codegen has it reply to the run's
  first message (`generate_reply` with no sender); its nested chats make that reply, and the run ends. The
  first message is stored as the first nested chat's opening message (FlowSpec.chat), and the host's
  reply, which has nobody to go to, is not stored again.

A run is a deterministic function of the flow, the first message and the results of `io` and `complete`.
"""

from __future__ import annotations

from .chat_runner import ChatRunner
from .flow_spec import AgentSpec, FlowSpec
from .nested import NestedChats
from .replies import Replier, Said
from .run_io import Complete, FlowIO, RunIO
from .sequential import run_sequential
from .tool_calls import NO_TOOLS, ToolSet


async def run_flow(
    spec: FlowSpec, first_message: str, io: FlowIO, complete: Complete, tools: ToolSet = NO_TOOLS
) -> str:
    """Runs the flow after its first message (already stored); returns why the run ended. `tools`: the
    definitions of the tools the flow binds."""
    return await FlowRun(spec, complete, tools).run(first_message, io)


class FlowRun:
    def __init__(self, spec: FlowSpec, complete: Complete, tools: ToolSet = NO_TOOLS) -> None:
        self.spec = spec
        self._tools = tools
        self._replier = Replier(complete, tools=tools)
        self._runner = ChatRunner(spec, complete, self._replier)
        self._nested = NestedChats(self._runner)
        if spec.nested:
            self._replier.nested = self._nested
        self._complete = complete

    async def run(self, first_message: str, io: FlowIO) -> str:
        if self.spec.chats:
            return await run_sequential(self._runner, self.spec.chats, first_message, io)
        return await self._host_reply(first_message, io)

    async def _host_reply(self, first_message: str, io: RunIO) -> str:
        host = self.spec.agent(self.spec.initiator)
        replier = Replier(self._complete, _FirstMessageStored(self._nested), self._tools)
        reply, why = await replier.reply(host, None, [Said("", "", first_message)], {}, io)
        if reply is None:
            return why
        if reply.by_human:
            return f"the person answering for {host.name!r} replied"
        return f"the nested chats of {host.name!r} replied"


class _FirstMessageStored:
    """The first agent's nested chats, replying to the run's first message."""

    def __init__(self, nested: NestedChats) -> None:
        self._nested = nested

    def triggers(self, host: AgentSpec, sender: AgentSpec | None) -> bool:
        return self._nested.triggers(host, sender)

    async def reply(self, host: AgentSpec, last_message: str, io: RunIO) -> str | None:
        return await self._nested.run(host, last_message, io, first_stored=True)
