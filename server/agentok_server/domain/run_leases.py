"""Which replica executes a run: each run holds a lease on its chat (see RunStore.apply_step). The keeper
renews the leases this replica holds, stops runs whose lease it lost (cancelled, deleted, taken over
elsewhere), and takes over runs whose holder stopped renewing (a replica that died), rebuilding each from its
journal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .errors import DomainError
from .flow_rules import parse_runnable, resolve_tools
from .model import ChatStatus, JournalEntry
from .run_task import Run, RunContext

if TYPE_CHECKING:
    from .runs import RunManager

log = logging.getLogger(__name__)

JOURNAL_PAGE = 500  # journal entries read at once when a run is rebuilt (a few milliseconds on SQLite)


class LeaseKeeper:
    def __init__(self, ctx: RunContext, runs: RunManager) -> None:
        self._ctx = ctx
        self._store = ctx.store
        self._runs = runs
        self._settings = ctx.settings
        # The start-up resume and the keeper's rounds must not rebuild the same run twice.
        self._takeover_lock = asyncio.Lock()

    def lease_until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._settings.lease_seconds)

    async def keep(self, on_round: Callable[[bool], Awaitable[None]] | None = None) -> None:
        """Runs for the life of the server: renew, let go of what was lost, take over what was orphaned.
        `on_round` hears whether each round reached the database (the health service reports it)."""
        while True:
            await asyncio.sleep(self._settings.lease_renew_seconds)
            try:
                await self.tend()
                ok = True
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly unreachable: try again next round
                log.exception("lease upkeep failed")
                ok = False
            if on_round is not None:
                await on_round(ok)

    async def tend(self) -> None:
        held = {run.chat_id: run for run in self._runs.runs() if not run.finishing}
        alive = await self._store.renew_leases(self._ctx.replica_id, list(held), self.lease_until())
        for chat_id, run in held.items():
            status = alive.get(chat_id)
            if status is None:
                task = self._runs.task(run)
                if task is not None and not task.done():
                    log.info("chat %s: lease lost (cancelled, deleted or taken over); stopping its run", chat_id)
                await self._runs.stop_run(run)
            elif status is ChatStatus.RUNNING and run.is_waiting:
                await run.pull_input()  # answered elsewhere and the notification was missed
        await self.take_over(await self._store.unheld_runs())

    async def take_over(self, chat_ids: Sequence[str]) -> list[Run]:
        """Rebuilds, from their journals, the runs among these chats whose lease this replica obtains."""
        async with self._takeover_lock:
            return await self._take_over(chat_ids)

    async def _take_over(self, chat_ids: Sequence[str]) -> list[Run]:
        started: list[Run] = []
        for chat_id in chat_ids:
            # Thousands of runs may be orphaned at once (a replica died): rebuild them one at a time between
            # other calls, since on SQLite each of these reads and writes runs inline.
            await asyncio.sleep(0)
            if self._runs.get(chat_id) is not None or not await self._store.acquire_lease(
                chat_id, self._ctx.replica_id, self.lease_until()
            ):
                continue
            chat = await self._store.get_chat_any_owner(chat_id)
            if chat is None or not chat.status.in_run:
                continue
            try:
                graph = await self._store.get_chat_graph(chat.id)
                spec = parse_runnable(graph, code_execution=self._settings.code_execution_enabled)
                tools = await resolve_tools(spec, chat.owner, self._store)
            except DomainError as err:
                await self._ctx.end_with_error(chat.id, f"the run could not be resumed: {err.message}")
                continue
            log.info("chat %s: resuming its run (run %d) from its journal", chat.id, chat.run.run_no)
            self._ctx.observer.lease_taken_over()
            journal = await self._journal(chat.id, chat.run.run_no)
            started.append(self._runs.start(chat, spec, journal, tools))
        return started

    async def _journal(self, chat_id: str, run_no: int) -> list[JournalEntry]:
        """The run's whole journal, read a page at a time with the loop served in between: on SQLite a read
        runs inline, and a long run's journal (tens of thousands of steps) in one read would hold it."""
        entries: list[JournalEntry] = []
        while True:
            page = await self._store.journal(chat_id, run_no, after_step=len(entries), limit=JOURNAL_PAGE)
            entries += page
            if len(page) < JOURNAL_PAGE:
                return entries
            await asyncio.sleep(0)

    async def resume_all(self, *, replay_seconds: float = 30.0) -> None:
        """At start: rebuilds this replica's runs from before a restart and any run nobody holds, and returns
        once each has replayed its journal (so a SendInput finds the question it answers) or ended."""
        replica = self._ctx.replica_id
        chat_ids = await self._store.held_runs(replica) + await self._store.unheld_runs(limit=10_000)
        runs = await self.take_over(list(dict.fromkeys(chat_ids)))
        for run in runs:
            task = self._runs.task(run)
            if task is None:
                continue
            live = asyncio.ensure_future(run.live.wait())
            await asyncio.wait({live, task}, timeout=replay_seconds, return_when=asyncio.FIRST_COMPLETED)
            live.cancel()
        if runs:
            log.info("resumed %d run(s)", len(runs))
