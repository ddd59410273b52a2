"""Runs a chat's conversation in the background: stores each step, streams it, waits for people.

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
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..engine.code_execution import CodeBlock, CodeExecutor
from ..engine.flow_run import run_flow
from ..engine.flow_spec import AgentSpec, FlowSpec
from ..engine.llm import Endpoint, LlmClient, LlmError, resolve_endpoint
from ..settings import Settings
from .errors import DomainError
from .events import EventHub
from .flow_rules import parse_runnable
from .model import (
    Chat,
    ChatStatus,
    JournalEntry,
    MessageType,
    NewMessage,
    StatusChange,
    TimeoutAction,
)
from .ports import RunStore, StepItem
from .text import storable

log = logging.getLogger(__name__)

IN_RUN = [ChatStatus.RUNNING, ChatStatus.WAITING]
JOURNAL_PAGE = 500  # journal entries read at once when a run is rebuilt (a few milliseconds on SQLite)
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
_REPLAY_HINT = (
    "the server's settings (e.g. AGENTOK_CODE_EXECUTION_ENABLED) or version changed since the run started; "
    "send a new message to start a new run"
)


class _Run:
    """One run of one chat: the IO the engine sees. Live, it journals every nondeterministic result;
    resuming, it serves them from the journal until the journal runs out."""

    def __init__(self, manager: RunManager, chat: Chat, spec: FlowSpec, journal: list[JournalEntry]) -> None:
        self.manager = manager
        self.chat_id = chat.id
        self.run_no = chat.run.run_no
        self.budget = chat.budget
        # A chat stored before the server's turn limit (or under a higher one) gets no more than the limit: no
        # run is unlimited. New chats are held to it when created (ChatService.create).
        limit = manager.settings.max_agent_turns_limit
        self.max_agent_turns = min(chat.budget.max_agent_turns or limit, limit)
        self.spec = spec
        self.replay = deque(journal)
        # Journal entries consumed or written so far: where an answer given on another replica will be.
        self.steps = 0
        # Set while the run writes its last step: that step releases the lease, which is no reason to stop it.
        self.finishing = False
        self.agent_turns = 0
        self.live = asyncio.Event()
        if not self.replay:
            self.live.set()
        # A question pending when the server stopped is already on the chat: don't ask it twice.
        self.pending = (chat.input_prompt, chat.run.input_deadline) if chat.status is ChatStatus.WAITING else None
        self._endpoint: Endpoint | None = None

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
            raise ReplayMismatch(f"where the run {before} before the restart, it now {now}: {_REPLAY_HINT}")
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
        result = await self.manager.repo.apply_step(
            self.chat_id,
            items,
            journal=journal,
            require=require or [ChatStatus.RUNNING],
            run_no=self.run_no,
            holder=self.manager.replica_id,
        )
        if result is None:
            raise RunGone(self.chat_id)
        self.steps += len(journal)
        self.manager.hub.publish(result.events)

    async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
        # The budget bounds what agents produce (a runaway pair of agents); a person's answers and a group's
        # introductions are no turns. Counted again while replaying, so it carries across a restart.
        limit = self.max_agent_turns
        if agent_turn:
            if self.agent_turns >= limit:
                raise RunEnded(f"The run ended: its budget of {limit} agent turns was reached.")
            self.agent_turns += 1
        if await self._replayed("say") is not None:
            return
        await self._step([message], journal=[JournalEntry("say")])

    async def complete(self, agent: AgentSpec, messages: list[dict[str, Any]]) -> str:
        entry = await self._replayed("llm")
        if entry is not None:
            return entry.value or ""
        if self._endpoint is None:
            s = self.manager.settings
            self._endpoint = resolve_endpoint(
                self.spec.llm, base_url=s.llm_base_url, model=s.llm_model, api_key=s.llm_api_key
            )
        # Replaced before it is journaled, so a replay feeds the engine exactly what the live run saw.
        text = storable(await self.manager.llm.complete(self._endpoint, messages))
        await self._step([], journal=[JournalEntry("llm", text)])
        return text

    async def run_code(self, agent: AgentSpec, blocks: list[CodeBlock]) -> str:
        entry = await self._replayed("exec")
        if entry is not None:
            return entry.value or ""
        output = storable(await self.manager.executor.run(blocks))
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
        self.manager.waiting[self.chat_id] = future
        if self.pending is not None and self.pending[0] == prompt:
            deadline = self.pending[1]
            self.pending = None
            # Rebuilt while waiting: the answer may have been stored (by any replica) before this run existed.
            await self.manager.pull_input(self.chat_id)
        else:
            timeout = self.budget.input_timeout_seconds
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
        seconds = self.budget.input_timeout_seconds
        if self.budget.input_timeout_action is TimeoutAction.END:
            note = f"The run ended: nobody answered within {seconds:g} seconds."
            self.finishing = True
            result = await self.manager.repo.apply_step(
                self.chat_id,
                [_system(note), StatusChange(ChatStatus.COMPLETED)],
                require=[ChatStatus.WAITING],
                run_no=self.run_no,
                holder=self.manager.replica_id,
            )
            if result is None:  # an answer won the race: the run goes on
                self.finishing = False
                return await future
            self.manager.waiting.pop(self.chat_id, None)
            self.manager.hub.publish(result.events)
            raise RunGone(self.chat_id)
        note = f"Nobody answered within {seconds:g} seconds: the empty reply was used."
        result = await self.manager.repo.apply_step(
            self.chat_id,
            [_system(note), StatusChange(ChatStatus.RUNNING)],
            journal=[JournalEntry("human", "")],
            require=[ChatStatus.WAITING],
            run_no=self.run_no,
            holder=self.manager.replica_id,
        )
        if result is None:
            return await future
        self.manager.waiting.pop(self.chat_id, None)
        self.manager.hub.publish(result.events)
        return ""


def _system(text: str) -> NewMessage:
    return NewMessage(type=MessageType.SYSTEM, sender=SYSTEM, receiver="", content=text)


class RunManager:
    """This replica's runs. Each is executed under a lease on its chat (see RunStore.apply_step): the
    manager renews the leases it holds, stops runs whose lease it lost (cancelled, deleted, taken over
    elsewhere), and takes over runs whose holder stopped renewing (a replica that died)."""

    def __init__(self, repo: RunStore, hub: EventHub, llm: LlmClient, settings: Settings) -> None:
        self.repo = repo
        self.hub = hub
        self.llm = llm
        self.settings = settings
        self.replica_id = repo.replica_id
        self.code_execution = settings.code_execution_enabled
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._runs: dict[str, _Run] = {}
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self._background: set[asyncio.Task[None]] = set()
        # The start-up resume and the keeper's rounds must not rebuild the same run twice.
        self._takeover_lock = asyncio.Lock()
        self.executor = CodeExecutor(
            timeout_seconds=settings.code_execution_timeout_seconds, output_limit=settings.code_execution_output_limit
        )

    def lease_until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.settings.lease_seconds)

    def start(self, chat: Chat, spec: FlowSpec, journal: list[JournalEntry] | None = None) -> _Run:
        run = _Run(self, chat, spec, journal or [])
        task = asyncio.create_task(self._run(run, chat.run.run_input), name=f"run-{chat.id}")
        self._tasks[chat.id] = task
        self._runs[chat.id] = run

        def _forget(t: asyncio.Task[None]) -> None:
            if self._tasks.get(chat.id) is t:
                del self._tasks[chat.id]
                self._runs.pop(chat.id, None)

        task.add_done_callback(_forget)
        return run

    def is_running(self, chat_id: str) -> bool:
        return chat_id in self._tasks

    def is_waiting(self, chat_id: str) -> bool:
        future = self.waiting.get(chat_id)
        return future is not None and not future.done()

    def deliver_input(self, chat_id: str, answer: str) -> None:
        future = self.waiting.pop(chat_id, None)
        if future is not None and not future.done():
            future.set_result(answer)

    async def pull_input(self, chat_id: str) -> None:
        """An answer stored by another replica (or before this run was rebuilt): hand it to the waiting run."""
        run = self._runs.get(chat_id)
        if run is None or not self.is_waiting(chat_id):
            return
        entries = await self.repo.journal(chat_id, run.run_no, after_step=run.steps)
        if entries and entries[0].kind == "human":
            self.deliver_input(chat_id, entries[0].value or "")

    def on_peer_change(self, chat_id: str, status: ChatStatus | None) -> None:
        """Another replica changed a chat this one may be running (None: deleted it)."""
        task = self._tasks.get(chat_id)
        if task is None:
            return
        if status is None or not status.in_run:  # cancelled, deleted, or ended by a takeover
            change = "deleted" if status is None else f"set {status.value}"
            log.info("chat %s: %s on another replica; stopping its run here", chat_id, change)
            self._spawn(self._stop_task(chat_id, task))
        elif status is ChatStatus.RUNNING and self.is_waiting(chat_id):  # answered there
            self._spawn(self.pull_input(chat_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self, chat_id: str) -> None:
        """Stops the run's task (mid model call too); what it stored stays."""
        task = self._tasks.get(chat_id)
        if task is not None:
            await self._stop_task(chat_id, task)
        self.waiting.pop(chat_id, None)

    async def _stop_task(self, chat_id: str, task: asyncio.Task[None]) -> None:
        # Only that task: the chat may have started a new run here meanwhile.
        if self._tasks.get(chat_id) is task:
            del self._tasks[chat_id]
            self._runs.pop(chat_id, None)
            self.waiting.pop(chat_id, None)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def shutdown(self) -> None:
        """Stops every run where it is: their journals keep them. The leases are released, so another
        replica (or this one, restarted) picks them up at once."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(self.stop(chat_id) for chat_id in list(self._tasks)))
        await self.repo.release_leases(self.replica_id)

    async def keep_leases(self, on_round: Callable[[bool], Awaitable[None]] | None = None) -> None:
        """Runs for the life of the server: renew, let go of what was lost, take over what was orphaned.
        `on_round` hears whether each round reached the database (the health service reports it)."""
        while True:
            await asyncio.sleep(self.settings.lease_renew_seconds)
            try:
                await self.tend_leases()
                ok = True
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly unreachable: try again next round
                log.exception("lease upkeep failed")
                ok = False
            if on_round is not None:
                await on_round(ok)

    async def tend_leases(self) -> None:
        held = {c: t for c, t in self._tasks.items() if not self._runs[c].finishing}
        alive = await self.repo.renew_leases(self.replica_id, list(held), self.lease_until())
        for chat_id, task in held.items():
            status = alive.get(chat_id)
            if status is None:
                if not task.done():
                    log.info("chat %s: lease lost (cancelled, deleted or taken over); stopping its run", chat_id)
                await self._stop_task(chat_id, task)
            elif status is ChatStatus.RUNNING and self.is_waiting(chat_id):
                await self.pull_input(chat_id)  # answered elsewhere and the notification was missed
        await self.take_over(await self.repo.unheld_runs())

    async def take_over(self, chat_ids: Sequence[str]) -> list[_Run]:
        """Rebuilds, from their journals, the runs among these chats whose lease this replica obtains."""
        async with self._takeover_lock:
            return await self._take_over(chat_ids)

    async def _take_over(self, chat_ids: Sequence[str]) -> list[_Run]:
        started: list[_Run] = []
        for chat_id in chat_ids:
            # Thousands of runs may be orphaned at once (a replica died): rebuild them one at a time between
            # other calls, since on SQLite each of these reads and writes runs inline.
            await asyncio.sleep(0)
            if chat_id in self._tasks or not await self.repo.acquire_lease(
                chat_id, self.replica_id, self.lease_until()
            ):
                continue
            chat = await self.repo.get_chat_any_owner(chat_id)
            if chat is None or not chat.status.in_run:
                continue
            try:
                spec = parse_runnable(await self.repo.get_chat_graph(chat.id), code_execution=self.code_execution)
            except DomainError as err:
                await self._end_with_error(chat.id, f"the run could not be resumed: {err.message}")
                continue
            log.info("chat %s: resuming its run (run %d) from its journal", chat.id, chat.run.run_no)
            started.append(self.start(chat, spec, await self._journal(chat.id, chat.run.run_no)))
        return started

    async def _journal(self, chat_id: str, run_no: int) -> list[JournalEntry]:
        """The run's whole journal, read a page at a time with the loop served in between: on SQLite a read
        runs inline, and a long run's journal (tens of thousands of steps) in one read would hold it."""
        entries: list[JournalEntry] = []
        while True:
            page = await self.repo.journal(chat_id, run_no, after_step=len(entries), limit=JOURNAL_PAGE)
            entries += page
            if len(page) < JOURNAL_PAGE:
                return entries
            await asyncio.sleep(0)

    async def resume_all(self, *, replay_seconds: float = 30.0) -> None:
        """At start: rebuilds this replica's runs from before a restart and any run nobody holds, and returns
        once each has replayed its journal (so a SendInput finds the question it answers) or ended."""
        chat_ids = await self.repo.held_runs(self.replica_id) + await self.repo.unheld_runs(limit=10_000)
        runs = await self.take_over(list(dict.fromkeys(chat_ids)))
        for run in runs:
            task = self._tasks.get(run.chat_id)
            if task is None:
                continue
            live = asyncio.ensure_future(run.live.wait())
            await asyncio.wait({live, task}, timeout=replay_seconds, return_when=asyncio.FIRST_COMPLETED)
            live.cancel()
        if runs:
            log.info("resumed %d run(s)", len(runs))

    async def _run(self, run: _Run, first_message: str) -> None:
        chat_id = run.chat_id
        try:
            reason = await run_flow(run.spec, first_message, run, run.complete)
            if run.replay:
                raise ReplayMismatch(f"the run now ends before the point it had reached: {_REPLAY_HINT}")
            log.info("chat %s completed: %s", chat_id, reason)
            run.finishing = True
            await run._step([StatusChange(ChatStatus.COMPLETED)])
        except RunGone:
            return
        except RunEnded as ended:
            run.finishing = True
            await self._finish(chat_id, [_system(str(ended)), StatusChange(ChatStatus.COMPLETED)], run.run_no)
        except LlmError as exc:
            run.finishing = True
            await self._end_with_error(chat_id, str(exc), run.run_no)
        except ReplayMismatch as exc:
            run.finishing = True
            await self._end_with_error(chat_id, f"the run could not be resumed after a restart: {exc}", run.run_no)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("chat %s failed", chat_id)
            run.finishing = True
            error = f"internal error while running the chat ({type(exc).__name__})"
            await self._end_with_error(chat_id, error, run.run_no)
        finally:
            run.live.set()
            if self.waiting.get(chat_id) is not None and self._tasks.get(chat_id) is asyncio.current_task():
                self.waiting.pop(chat_id, None)

    async def _finish(self, chat_id: str, items: list[StepItem], run_no: int | None) -> None:
        result = await self.repo.apply_step(chat_id, items, require=IN_RUN, run_no=run_no, holder=self.replica_id)
        if result is not None:
            self.hub.publish(result.events)

    async def _end_with_error(self, chat_id: str, error: str, run_no: int | None = None) -> None:
        await self._finish(chat_id, [StatusChange(ChatStatus.ERROR, error=error)], run_no)
