"""One run of one chat: the IO the engine sees, and the journal that makes it durable.

A run's state lives in storage as a journal: every message it stored, every model reply, every answer a
person gave, in the order the engine met them. The engine is a deterministic function of the flow, the run's
first message and those results, so after a restart the run is rebuilt by executing it again with the
journal as its inputs (no model is called, nothing is stored twice) until the journal runs out; from there
it goes on live. A model call that was in flight when the server died is simply made again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..engine.code_execution import CodeBlock
from ..engine.flow_run import run_flow
from ..engine.flow_spec import AgentSpec, FlowSpec
from ..engine.llm import Endpoint, LlmError, resolve_endpoint
from ..settings import Settings
from .events import EventHub
from .model import (
    Chat,
    ChatStatus,
    JournalEntry,
    MessageType,
    NewMessage,
    StatusChange,
    TimeoutAction,
)
from .ports import CodeRunner, ModelClient, RunStore, StepItem
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
}
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
    settings: Settings

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

    def __init__(self, ctx: RunContext, chat: Chat, spec: FlowSpec, journal: list[JournalEntry]) -> None:
        self._ctx = ctx
        self.chat_id = chat.id
        self.run_no = chat.run.run_no
        self.first_message = chat.run.run_input
        self._budget = chat.budget
        # A chat stored before the server's turn limit (or under a higher one) gets no more than the limit: no
        # run is unlimited. New chats are held to it when created (ChatService.create).
        limit = ctx.settings.max_agent_turns_limit
        self._max_agent_turns = min(chat.budget.max_agent_turns or limit, limit)
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
        self._answer: asyncio.Future[str] | None = None
        self._endpoint: Endpoint | None = None

    # -- the person's answer ------------------------------------------------------------------------------

    @property
    def is_waiting(self) -> bool:
        return self._answer is not None and not self._answer.done()

    def deliver(self, answer: str) -> None:
        future, self._answer = self._answer, None
        if future is not None and not future.done():
            future.set_result(answer)

    async def pull_input(self) -> None:
        """An answer stored by another replica (or before this run was rebuilt): take it from the journal."""
        if not self.is_waiting:
            return
        entries = await self._ctx.store.journal(self.chat_id, self.run_no, after_step=self.steps)
        if entries and entries[0].kind == "human":
            self.deliver(entries[0].value or "")

    # -- the task -----------------------------------------------------------------------------------------

    async def execute(self) -> None:
        """The run from its first message to its end; every way it can end is stored on the chat."""
        ctx, chat_id = self._ctx, self.chat_id
        try:
            reason = await run_flow(self._spec, self.first_message, self, self.complete)
            if self.replay:
                raise ReplayMismatch(f"the run now ends before the point it had reached: {REPLAY_HINT}")
            log.info("chat %s completed: %s", chat_id, reason)
            self.finishing = True
            await self._step([StatusChange(ChatStatus.COMPLETED)])
        except RunGone:
            return
        except RunEnded as ended:
            self.finishing = True
            await ctx.finish(chat_id, [system_message(str(ended)), StatusChange(ChatStatus.COMPLETED)], self.run_no)
        except LlmError as exc:
            self.finishing = True
            await ctx.end_with_error(chat_id, str(exc), self.run_no)
        except ReplayMismatch as exc:
            self.finishing = True
            await ctx.end_with_error(chat_id, f"the run could not be resumed after a restart: {exc}", self.run_no)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("chat %s failed", chat_id)
            self.finishing = True
            await ctx.end_with_error(
                chat_id, f"internal error while running the chat ({type(exc).__name__})", self.run_no
            )
        finally:
            self.live.set()
            self._answer = None

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
        if await self._replayed("say") is not None:
            return
        await self._step([message], journal=[JournalEntry("say")])

    async def complete(self, agent: AgentSpec, messages: list[dict[str, Any]]) -> str:
        entry = await self._replayed("llm")
        if entry is not None:
            return entry.value or ""
        if self._endpoint is None:
            s = self._ctx.settings
            self._endpoint = resolve_endpoint(
                self._spec.llm, base_url=s.llm_base_url, model=s.llm_model, api_key=s.llm_api_key
            )
        # Replaced before it is journaled, so a replay feeds the engine exactly what the live run saw.
        text = storable(await self._ctx.llm.complete(self._endpoint, messages))
        await self._step([], journal=[JournalEntry("llm", text)])
        return text

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
        self.live.set()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answer = future
        if self._pending is not None and self._pending[0] == prompt:
            deadline = self._pending[1]
            self._pending = None
            # Rebuilt while waiting: the answer may have been stored (by any replica) before this run existed.
            await self.pull_input()
        else:
            timeout = self._budget.input_timeout_seconds
            deadline = datetime.now(UTC) + timedelta(seconds=timeout) if timeout else None
            await self._step([StatusChange(ChatStatus.WAITING, input_prompt=prompt, input_deadline=deadline)])
        if deadline is None:
            answer = await future
        else:
            try:
                remaining = max(0.0, (deadline - datetime.now(UTC)).total_seconds())
                answer = await asyncio.wait_for(asyncio.shield(future), remaining)
            except TimeoutError:
                answer = await self._timed_out(future)
        self.steps += 1  # the answer's journal entry, written by SendInput or by the timeout
        return answer

    async def _timed_out(self, future: asyncio.Future[str]) -> str:
        seconds = self._budget.input_timeout_seconds
        ending = self._budget.input_timeout_action is TimeoutAction.END
        if ending:
            note = f"The run ended: nobody answered within {seconds:g} seconds."
            items: list[StepItem] = [system_message(note), StatusChange(ChatStatus.COMPLETED)]
            journal: list[JournalEntry] = []
            self.finishing = True
        else:
            note = f"Nobody answered within {seconds:g} seconds: the empty reply was used."
            items, journal = [system_message(note), StatusChange(ChatStatus.RUNNING)], [JournalEntry("human", "")]
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
            raise RunGone(self.chat_id)
        return ""
