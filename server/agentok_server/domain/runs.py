"""This replica's runs: which chat's run is executing here, and the ways to reach it (an answer, a stop, a
peer's change). The run itself is domain/run_task.py; who holds which run, domain/run_leases.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..engine.flow_spec import FlowSpec
from ..settings import Settings
from .events import EventHub
from .metrics import NO_OBSERVER, Observer
from .model import Chat, ChatStatus, JournalEntry, Tool
from .ports import CodeRunner, ModelClient, RunStore, ToolRunner
from .run_leases import JOURNAL_PAGE, LeaseKeeper
from .run_task import IN_RUN, SYSTEM, Run, RunContext

__all__ = ["IN_RUN", "JOURNAL_PAGE", "SYSTEM", "Run", "RunManager"]

log = logging.getLogger(__name__)


class RunManager:
    def __init__(
        self,
        repo: RunStore,
        hub: EventHub,
        llm: ModelClient,
        settings: Settings,
        *,
        executor: CodeRunner,
        tools: ToolRunner,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._ctx = RunContext(
            store=repo, hub=hub, llm=llm, executor=executor, tools=tools, settings=settings, observer=observer
        )
        self.replica_id = repo.replica_id
        self.code_execution = settings.code_execution_enabled
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._runs: dict[str, Run] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._leases = LeaseKeeper(self._ctx, self)

    # -- the registry -------------------------------------------------------------------------------------

    def start(
        self,
        chat: Chat,
        spec: FlowSpec,
        journal: list[JournalEntry] | None = None,
        tools: Mapping[str, Tool] | None = None,
    ) -> Run:
        """`tools`: the definitions of the tools the flow binds (flow_rules.resolve_tools)."""
        run = Run(self._ctx, chat, spec, journal or [], tools)
        self._ctx.observer.run_started(resumed=journal is not None)
        task = asyncio.create_task(run.execute(), name=f"run-{chat.id}")
        self._tasks[chat.id] = task
        self._runs[chat.id] = run

        def _forget(t: asyncio.Task[None]) -> None:
            if self._tasks.get(chat.id) is t:
                del self._tasks[chat.id]
                self._runs.pop(chat.id, None)

        task.add_done_callback(_forget)
        return run

    def get(self, chat_id: str) -> Run | None:
        return self._runs.get(chat_id)

    def runs(self) -> list[Run]:
        return list(self._runs.values())

    def waiting_count(self) -> int:
        """Runs here waiting for an answer (a person's, or a client's tool results). Safe from another thread
        (the metrics endpoint's): it reads a copy."""
        return sum(run.is_waiting for run in self.runs())

    def task(self, run: Run) -> asyncio.Task[None] | None:
        """The task executing `run`, while it is this chat's run here."""
        return self._tasks.get(run.chat_id) if self._runs.get(run.chat_id) is run else None

    # -- reaching a run -----------------------------------------------------------------------------------

    def is_waiting(self, chat_id: str) -> bool:
        run = self._runs.get(chat_id)
        return run is not None and run.is_waiting

    def deliver_input(self, chat_id: str, answer: JournalEntry) -> None:
        run = self._runs.get(chat_id)
        if run is not None:
            run.deliver(answer)

    async def pull_input(self, chat_id: str) -> None:
        """An answer stored by another replica: hand it to the waiting run."""
        run = self._runs.get(chat_id)
        if run is not None:
            await run.pull_input()

    def on_peer_change(self, chat_id: str, status: ChatStatus | None) -> None:
        """Another replica changed a chat this one may be running (None: deleted it)."""
        run = self._runs.get(chat_id)
        if run is None:
            return
        if status is None or not status.in_run:  # cancelled, deleted, or ended by a takeover
            change = "deleted" if status is None else f"set {status.value}"
            log.info("chat %s: %s on another replica; stopping its run here", chat_id, change)
            task = self._tasks.get(chat_id)
            if task is not None:
                self._spawn(self._stop(chat_id, task))
        elif status is ChatStatus.RUNNING and run.is_waiting:  # answered there
            self._spawn(run.pull_input())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self, chat_id: str) -> None:
        """Stops the chat's run here (mid model call too); what it stored stays."""
        run = self._runs.get(chat_id)
        if run is not None:
            await self.stop_run(run)

    async def stop_run(self, run: Run) -> None:
        task = self.task(run)
        if task is not None:
            await self._stop(run.chat_id, task)

    async def _stop(self, chat_id: str, task: asyncio.Task[None]) -> None:
        # Only that task: the chat may have started a new run here meanwhile.
        if self._tasks.get(chat_id) is task:
            del self._tasks[chat_id]
            self._runs.pop(chat_id, None)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def shutdown(self) -> None:
        """Stops every run where it is: their journals keep them. The leases are released, so another
        replica (or this one, restarted) picks them up at once."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(self.stop_run(run) for run in self.runs()))
        await self._ctx.store.release_leases(self.replica_id)

    # -- leases (domain/run_leases.py) --------------------------------------------------------------------

    def lease_until(self) -> datetime:
        return self._leases.lease_until()

    async def keep_leases(self, on_round: Callable[[bool], Awaitable[None]] | None = None) -> None:
        await self._leases.keep(on_round)

    async def tend_leases(self) -> None:
        await self._leases.tend()

    async def take_over(self, chat_ids: Sequence[str]) -> list[Run]:
        return await self._leases.take_over(chat_ids)

    async def resume_all(self, *, replay_seconds: float = 30.0) -> None:
        await self._leases.resume_all(replay_seconds=replay_seconds)
