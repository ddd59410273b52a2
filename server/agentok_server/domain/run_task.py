"""One run of one chat: the IO the engine sees, and the journal that makes it durable.

A run's state lives in storage as a journal: every message it stored, every model reply, every answer a
person gave, in the order the engine met them. The engine is a deterministic function of the flow, the run's
first message and those results, so after a restart the run is rebuilt by executing it again with the
journal as its inputs (no model is called, nothing is stored twice) until the journal runs out; from there
it goes on live. A model call that was in flight when the server died is simply made again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..engine.code_execution import CodeBlock
from ..engine.flow_run import run_flow
from ..engine.flow_spec import AgentSpec, FlowSpec
from ..engine.flow_spec.graph import GROUP_TYPE
from ..engine.llm import Endpoint, LlmError, OnDelta, resolve_endpoint
from ..engine.tool_calls import ModelReply, ToolDef, ToolSet
from ..settings import Settings
from . import tool_steps
from .deltas import reply_deltas
from .events import EventHub
from .metrics import NO_OBSERVER, Observer, RunOutcome
from .model import (
    Chat,
    ChatStatus,
    JournalEntry,
    MessageType,
    NewMessage,
    StatusChange,
    TimeoutAction,
    Tool,
    ToolCall,
    ToolKind,
    ToolResult,
)
from .ports import CodeRunner, ModelClient, RunStore, StepItem, ToolRunner
from .run_usage import TokenMeter
from .text import storable

log = logging.getLogger(__name__)

IN_RUN = [ChatStatus.RUNNING, ChatStatus.WAITING]
SYSTEM = "agentok"


class RunGone(Exception):
    """The chat was deleted, or its run cancelled or replaced, while the run was in progress."""


class RunEnded(Exception):
    """A budget or a timeout ended the run; the message says which."""


class ReplayMismatch(Exception):
    """The journal does not match what the engine does now (the engine or a setting that changes what a flow
    does, such as code execution, changed): the run can't resume."""


# What each journal entry records, for an error a chat's owner can read.
_STEP = {
    "say": "stored a message",
    "llm": "called the model",
    "exec": "ran code",
    "human": "asked a person",
    "choice": "chose a speaker at random",
    tool_steps.PROPOSE: "called the model with tools",
    tool_steps.SERVER_RESULTS: "ran tools",
    tool_steps.CLIENT_RESULTS: "got a client's tool results",
}
# The journal entries an answer to a chat's question can be (SendInput writes them).
ANSWERS = ("human", tool_steps.CLIENT_RESULTS)
REPLAY_HINT = (
    "the server's settings (e.g. AGENTOK_CODE_EXECUTION_ENABLED) or version changed since the run started; "
    "send a new message to start a new run"
)


@dataclass(frozen=True)
class RunContext:
    """What every run on this replica shares: where steps go, who hears of them, what a run calls."""

    store: RunStore
    hub: EventHub
    llm: ModelClient
    executor: CodeRunner
    tools: ToolRunner
    settings: Settings
    observer: Observer = NO_OBSERVER

    @property
    def replica_id(self) -> str:
        return self.store.replica_id

    async def finish(self, chat_id: str, items: list[StepItem], run_no: int | None) -> None:
        """Ends a run (whichever step it is at) with these items, if this replica still holds it."""
        result = await self.store.apply_step(chat_id, items, require=IN_RUN, run_no=run_no, holder=self.replica_id)
        if result is not None:
            self.hub.publish(result.events)

    async def end_with_error(self, chat_id: str, error: str, run_no: int | None = None) -> None:
        await self.finish(chat_id, [StatusChange(ChatStatus.ERROR, error=error)], run_no)


def system_message(text: str) -> NewMessage:
    return NewMessage(type=MessageType.SYSTEM, sender=SYSTEM, receiver="", content=text)


class Run:
    """Live, it journals every nondeterministic result; resuming, it serves them from the journal until the
    journal runs out."""

    def __init__(
        self,
        ctx: RunContext,
        chat: Chat,
        spec: FlowSpec,
        journal: list[JournalEntry],
        tools: Mapping[str, Tool] | None = None,
    ) -> None:
        """`tools`: the definitions of every tool id the flow binds (flow_rules.resolve_tools)."""
        self._ctx = ctx
        self.chat_id = chat.id
        self.run_no = chat.run.run_no
        self.first_message = chat.run.run_input
        self._budget = chat.budget
        # A chat stored before the server's turn limit (or under a higher one) gets no more than the limit: no
        # run is unlimited. New chats are held to it when created (ChatService.create).
        limit = ctx.settings.max_agent_turns_limit
        self._max_agent_turns = min(chat.budget.max_agent_turns or limit, limit)
        self._tokens = TokenMeter(chat.budget.max_tokens_per_run)
        self._spec = spec
        self.replay = deque(journal)
        # Journal entries consumed or written so far: where an answer given on another replica will be.
        self.steps = 0
        # Set while the run writes its last step: that step releases the lease, which is no reason to stop it.
        self.finishing = False
        self._agent_turns = 0
        # Set once the journal has been replayed (or the run ended): a resumed run is caught up.
        self.live = asyncio.Event()
        if not self.replay:
            self.live.set()
        # A question pending when the server stopped is already on the chat: don't ask it twice.
        self._pending = (chat.input_prompt, chat.run.input_deadline) if chat.status is ChatStatus.WAITING else None
        self._answer: asyncio.Future[JournalEntry] | None = None
        self._deadline: datetime | None = None  # the pending question's
        self._endpoint: Endpoint | None = None
        self._tools = dict(tools or {})
        defs = {i: ToolDef(t.id, t.name, t.description, t.parameters) for i, t in self._tools.items()}
        self._toolset = ToolSet.build(spec.tools, defs)
        # Journal entries to write with the run's next step: tool results go with the message that carries
        # them, so a stored result is never run again and a result is never stored without its message.
        self._carry: list[JournalEntry] = []
        # How the run ended, where only the step that ended it knows (an unanswered question ending it).
        self._outcome: RunOutcome | None = None

    # -- the person's answer ------------------------------------------------------------------------------

    @property
    def is_waiting(self) -> bool:
        return self._answer is not None and not self._answer.done()

    def deliver(self, answer: JournalEntry) -> None:
        """The answer's journal entry (a person's text, or a client's tool results), as SendInput stored it."""
        future, self._answer = self._answer, None
        if future is not None and not future.done():
            future.set_result(answer)

    async def pull_input(self) -> None:
        """An answer stored by another replica (or before this run was rebuilt): take it from the journal."""
        if not self.is_waiting:
            return
        entries = await self._ctx.store.journal(self.chat_id, self.run_no, after_step=self.steps, limit=1)
        if entries and entries[0].kind in ANSWERS:
            self.deliver(entries[0])

    # -- the task -----------------------------------------------------------------------------------------

    async def execute(self) -> None:
        """The run from its first message to its end; every way it can end is stored on the chat."""
        ctx, chat_id = self._ctx, self.chat_id
        outcome = RunOutcome.STOPPED  # unless it ends in one of the ways below
        try:
            reason = await run_flow(self._spec, self.first_message, self, self.complete, self._toolset)
            if self.replay:
                raise ReplayMismatch(f"the run now ends before the point it had reached: {REPLAY_HINT}")
            log.info("chat %s completed: %s", chat_id, reason)
            self.finishing = True
            await self._step([StatusChange(ChatStatus.COMPLETED)])
            outcome = RunOutcome.COMPLETED
        except RunGone:
            outcome = self._outcome or RunOutcome.STOPPED
            return
        except RunEnded as ended:
            self.finishing = True
            outcome = RunOutcome.LIMIT
            await ctx.finish(chat_id, [system_message(str(ended)), StatusChange(ChatStatus.COMPLETED)], self.run_no)
        except LlmError as exc:
            self.finishing = True
            outcome = RunOutcome.ERROR
            await ctx.end_with_error(chat_id, str(exc), self.run_no)
        except ReplayMismatch as exc:
            self.finishing = True
            outcome = RunOutcome.ERROR
            await ctx.end_with_error(chat_id, f"the run could not be resumed after a restart: {exc}", self.run_no)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("chat %s failed", chat_id)
            self.finishing = True
            outcome = RunOutcome.ERROR
            await ctx.end_with_error(
                chat_id, f"internal error while running the chat ({type(exc).__name__})", self.run_no
            )
        finally:
            self.live.set()
            self._answer = None
            ctx.observer.run_ended(outcome)

    # -- the engine's IO (engine/run_io.py FlowIO) --------------------------------------------------------

    async def _replayed(self, kind: str) -> JournalEntry | None:
        # Every step a run takes, live or replayed, starts here, so here it lets the event loop serve everyone
        # else: on SQLite a step's transaction runs inline and a replayed step does no IO at all, so a run of
        # fixed replies (or the replay of a long journal) would otherwise hold the loop until it ended.
        await asyncio.sleep(0)
        if not self.replay:
            return None
        entry = self.replay.popleft()
        self.steps += 1
        if entry.kind != kind:
            before, now = _STEP.get(entry.kind, entry.kind), _STEP.get(kind, kind)
            raise ReplayMismatch(f"where the run {before} before the restart, it now {now}: {REPLAY_HINT}")
        if not self.replay:
            self.live.set()
        return entry

    async def _step(
        self,
        items: list[StepItem],
        *,
        journal: Sequence[JournalEntry] = (),
        require: list[ChatStatus] | None = None,
    ) -> None:
        journal, self._carry = [*self._carry, *journal], []
        result = await self._ctx.store.apply_step(
            self.chat_id,
            items,
            journal=journal,
            require=require or [ChatStatus.RUNNING],
            run_no=self.run_no,
            holder=self._ctx.replica_id,
        )
        if result is None:
            raise RunGone(self.chat_id)
        self.steps += len(journal)
        self._ctx.hub.publish(result.events)

    async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
        # The budget bounds what agents produce (a runaway pair of agents); a person's answers and a group's
        # introductions are no turns. Counted again while replaying, so it carries across a restart.
        limit = self._max_agent_turns
        if agent_turn:
            if self._agent_turns >= limit:
                raise RunEnded(f"The run ended: its budget of {limit} agent turns was reached.")
            self._agent_turns += 1
            # The usage of the agent's model calls since its last message goes on this one (popped while
            # replaying too, so the next message gets the same as it did live).
            if (used := self._tokens.take(message.sender)) is not None:
                message = dataclasses.replace(message, usage=used)
        if await self._replayed("say") is not None:
            return
        await self._step([message], journal=[JournalEntry("say")])

    def _within_tokens(self) -> None:
        if (reason := self._tokens.exhausted()) is not None:
            raise RunEnded(reason)

    @asynccontextmanager
    async def _streamed(self, agent: AgentSpec) -> AsyncIterator[OnDelta | None]:
        """The model client's delta callback for `agent`'s reply. A group manager's calls (speaker selection)
        stream nothing: they never become a message."""
        if agent.kind == GROUP_TYPE:
            yield None
            return
        # Stable on every replica and across restarts: the journal step the reply will be stored at.
        draft = f"{self.run_no}.{self.steps + len(self._carry) + 1}"
        async with reply_deltas(self._ctx.hub, self.chat_id, draft, agent.name) as on_delta:
            yield on_delta

    def _model(self) -> Endpoint:
        if self._endpoint is None:
            s = self._ctx.settings
            self._endpoint = resolve_endpoint(
                self._spec.llm, base_url=s.llm_base_url, model=s.llm_model, api_key=s.llm_api_key
            )
        return self._endpoint

    async def complete(self, agent: AgentSpec, messages: list[dict[str, Any]]) -> str:
        self._within_tokens()
        entry = await self._replayed("llm")
        if entry is not None:
            self._tokens.spent(agent.name, entry.usage)
            return entry.value or ""
        async with self._streamed(agent) as on_delta:
            reply = await self._ctx.llm.complete(self._model(), messages, on_delta=on_delta)
        # Replaced before it is journaled, so a replay feeds the engine exactly what the live run saw.
        text = storable(reply.content)
        await self._step([], journal=[JournalEntry("llm", text, reply.usage)])
        self._tokens.spent(agent.name, reply.usage)
        return text

    async def propose(
        self, agent: AgentSpec, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        self._within_tokens()
        entry = await self._replayed(tool_steps.PROPOSE)
        if entry is not None:
            self._tokens.spent(agent.name, entry.usage)
            return tool_steps.decode_reply(entry.value)
        async with self._streamed(agent) as on_delta:
            proposed = await self._ctx.llm.propose(self._model(), messages, tools, on_delta=on_delta)
        reply = tool_steps.storable_reply(proposed)
        # Journaled before any call runs: a call made again after a restart keeps its call_id.
        encoded = tool_steps.encode_reply(reply)
        await self._step([], journal=[JournalEntry(tool_steps.PROPOSE, encoded, proposed.usage)])
        self._tokens.spent(agent.name, proposed.usage)
        return reply

    async def run_tools(self, agent: AgentSpec, calls: list[tuple[ToolCall, ToolDef]]) -> list[ToolResult]:
        # A bound on what one message's calls may consume; which calls pass it follows from the journaled
        # proposal alone, so a replay cuts the same ones.
        cap = self._ctx.settings.max_tool_calls_per_message
        if len(calls) > cap:
            refused = (
                f"Error: only the first {cap} tool calls of a message are run (AGENTOK_MAX_TOOL_CALLS_PER_MESSAGE)"
            )
            return [
                *await self.run_tools(agent, calls[:cap]),
                *(ToolResult(c.call_id, refused, True) for c, _ in calls[cap:]),
            ]
        by_client = [c for c, t in calls if self._tools[t.id].kind is ToolKind.CLIENT]
        by_server = [(c, self._tools[t.id]) for c, t in calls if self._tools[t.id].kind is not ToolKind.CLIENT]
        results: dict[str, ToolResult] = {}
        if by_server:
            entry = await self._replayed(tool_steps.SERVER_RESULTS)
            if entry is not None:
                ran = tool_steps.decode_results(entry.value)
            else:
                # At least once: a call in flight when the process dies is made again, with the same call_id
                # (and Idempotency-Key); a call whose result is stored never is.
                outcomes = await asyncio.gather(*(self._ctx.tools.run(t, c, self.chat_id) for c, t in by_server))
                ran = tool_steps.storable_results(outcomes)
                self._carry.append(JournalEntry(tool_steps.SERVER_RESULTS, tool_steps.encode_results(ran)))
            results.update((r.call_id, r) for r in ran)
        if by_client:
            results.update(await self._client_results(by_client))
        if any(c.call_id not in results for c, _ in calls):  # e.g. a tool changed kind, or the cap changed
            raise ReplayMismatch(f"the journaled tool results are not those of the calls made now: {REPLAY_HINT}")
        return [results[c.call_id] for c, _ in calls]

    async def _client_results(self, calls: list[ToolCall]) -> dict[str, ToolResult]:
        """The results of client tools, as the caller's backend sends them (SendInput, any subset at a time):
        from the journal while replaying, then by waiting with the calls still open on the chat."""
        got: dict[str, ToolResult] = {}
        while len(got) < len(calls):
            entry = await self._replayed(tool_steps.CLIENT_RESULTS)
            if entry is None:
                break
            got.update((r.call_id, r) for r in tool_steps.decode_results(entry.value))
        while open_calls := [c for c in calls if c.call_id not in got]:
            prompt = tool_steps.waiting_prompt(open_calls)
            timeout = self._budget.input_timeout_seconds
            skipped = [ToolResult(c.call_id, f"Error: no result within {timeout:g} seconds", True) for c in open_calls]
            entry = await self._wait(
                prompt,
                StatusChange(ChatStatus.WAITING, input_prompt=prompt, pending_tool_calls=tuple(open_calls)),
                JournalEntry(tool_steps.CLIENT_RESULTS, tool_steps.encode_results(skipped)),
            )
            got.update((r.call_id, r) for r in tool_steps.decode_results(entry.value))
            if still_open := [c for c in calls if c.call_id not in got]:
                # A partial answer: SendInput left the chat waiting for the rest, under the same deadline.
                self._pending = (tool_steps.waiting_prompt(still_open), self._deadline)
        return got

    async def run_code(self, agent: AgentSpec, blocks: list[CodeBlock]) -> str:
        entry = await self._replayed("exec")
        if entry is not None:
            return entry.value or ""
        output = storable(await self._ctx.executor.run(blocks))
        await self._step([], journal=[JournalEntry("exec", output)])
        return output

    async def choose(self, options: list[str]) -> str:
        entry = await self._replayed("choice")
        if entry is not None:
            return entry.value or ""
        choice = random.choice(options)  # not for security: a group's `random` speaker selection
        await self._step([], journal=[JournalEntry("choice", choice)])
        return choice

    async def ask_human(self, agent: AgentSpec | None, prompt: str) -> str:
        entry = await self._replayed("human")
        if entry is not None:
            return entry.value or ""
        question = StatusChange(ChatStatus.WAITING, input_prompt=prompt)
        answer = await self._wait(prompt, question, JournalEntry("human", ""))
        return answer.value or ""

    async def _wait(self, prompt: str, question: StatusChange, skip: JournalEntry) -> JournalEntry:
        """Asks `question` (unless it is the one pending on the chat since before this run was rebuilt) and
        waits for its answer's journal entry, or the chat's timeout: then `skip` is the answer, or the run
        ends, as the chat's timeout action says."""
        self.live.set()
        future: asyncio.Future[JournalEntry] = asyncio.get_running_loop().create_future()
        self._answer = future
        if self._pending is not None and self._pending[0] == prompt:
            deadline = self._pending[1]
            self._pending = None
            # Rebuilt while waiting: the answer may have been stored (by any replica) before this run existed.
            await self.pull_input()
        else:
            timeout = self._budget.input_timeout_seconds
            deadline = datetime.now(UTC) + timedelta(seconds=timeout) if timeout else None
            await self._step([dataclasses.replace(question, input_deadline=deadline)])
        self._deadline = deadline
        if deadline is None:
            answer = await future
        else:
            try:
                remaining = max(0.0, (deadline - datetime.now(UTC)).total_seconds())
                answer = await asyncio.wait_for(asyncio.shield(future), remaining)
            except TimeoutError:
                answer = await self._timed_out(future, skip)
        self.steps += 1  # the answer's journal entry, written by SendInput or by the timeout
        if answer.kind != skip.kind:
            raise ReplayMismatch(f"the answer is not what the run waits for: {REPLAY_HINT}")
        return answer

    async def _timed_out(self, future: asyncio.Future[JournalEntry], skip: JournalEntry) -> JournalEntry:
        seconds = self._budget.input_timeout_seconds
        ending = self._budget.input_timeout_action is TimeoutAction.END
        if ending:
            note = f"The run ended: nobody answered within {seconds:g} seconds."
            items: list[StepItem] = [system_message(note), StatusChange(ChatStatus.COMPLETED)]
            journal: list[JournalEntry] = []
            self.finishing = True
        else:
            used = "the empty reply was used" if skip.kind == "human" else "the open tool calls failed"
            note = f"Nobody answered within {seconds:g} seconds: {used}."
            items, journal = [system_message(note), StatusChange(ChatStatus.RUNNING)], [skip]
        result = await self._ctx.store.apply_step(
            self.chat_id,
            items,
            journal=journal,
            require=[ChatStatus.WAITING],
            run_no=self.run_no,
            holder=self._ctx.replica_id,
        )
        if result is None:  # an answer won the race: the run goes on
            self.finishing = False
            return await future
        self._answer = None
        self._ctx.hub.publish(result.events)
        if ending:
            self._outcome = RunOutcome.LIMIT
            raise RunGone(self.chat_id)
        return skip
