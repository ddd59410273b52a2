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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..engine.code_execution import CodeBlock, CodeExecutor
from ..engine.flow_run import run_flow
from ..engine.flow_spec import AgentSpec, FlowSpec, parse_flow
from ..engine.llm import Endpoint, LlmClient, LlmError, resolve_endpoint
from ..settings import Settings
from ..storage.repository import Repository, StepItem
from .errors import DomainError
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

log = logging.getLogger(__name__)

IN_RUN = [ChatStatus.RUNNING, ChatStatus.WAITING]
SYSTEM = "agentok"


class RunGone(Exception):
    """The chat was deleted, or its run cancelled or replaced, while the run was in progress."""


class RunEnded(Exception):
    """A budget or a timeout ended the run; the message says which."""


class ReplayMismatch(Exception):
    """The journal does not match what the engine does now (the engine changed): the run can't resume."""


class _Run:
    """One run of one chat: the IO the engine sees. Live, it journals every nondeterministic result;
    resuming, it serves them from the journal until the journal runs out."""

    def __init__(self, manager: RunManager, chat: Chat, spec: FlowSpec, journal: list[JournalEntry]) -> None:
        self.manager = manager
        self.chat_id = chat.id
        self.run_no = chat.run.run_no
        self.budget = chat.budget
        self.spec = spec
        self.replay = deque(journal)
        self.agent_turns = 0
        self.live = asyncio.Event()
        if not self.replay:
            self.live.set()
        # A question pending when the server stopped is already on the chat: don't ask it twice.
        self.pending = (chat.input_prompt, chat.run.input_deadline) if chat.status is ChatStatus.WAITING else None
        self._endpoint: Endpoint | None = None

    def _replayed(self, kind: str) -> JournalEntry | None:
        if not self.replay:
            return None
        entry = self.replay.popleft()
        if entry.kind != kind:
            raise ReplayMismatch(f"the journal has {entry.kind!r} where the engine now asks for {kind!r}")
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
            self.chat_id, items, journal=journal, require=require or [ChatStatus.RUNNING], run_no=self.run_no
        )
        if result is None:
            raise RunGone(self.chat_id)
        self.manager.hub.publish(result.events)

    async def say(self, message: NewMessage) -> None:
        limit = self.budget.max_agent_turns
        if limit and self.agent_turns >= limit:
            raise RunEnded(f"The run ended: its budget of {limit} agent turns was reached.")
        self.agent_turns += 1
        if self._replayed("say") is not None:
            return
        await self._step([message], journal=[JournalEntry("say")])

    async def complete(self, agent: AgentSpec, messages: list[dict[str, Any]]) -> str:
        entry = self._replayed("llm")
        if entry is not None:
            return entry.value or ""
        if self._endpoint is None:
            s = self.manager.settings
            self._endpoint = resolve_endpoint(
                self.spec.llm, base_url=s.llm_base_url, model=s.llm_model, api_key=s.llm_api_key
            )
        text = await self.manager.llm.complete(self._endpoint, messages)
        await self._step([], journal=[JournalEntry("llm", text)])
        return text

    async def run_code(self, agent: AgentSpec, blocks: list[CodeBlock]) -> str:
        entry = self._replayed("exec")
        if entry is not None:
            return entry.value or ""
        output = await self.manager.executor.run(blocks)
        await self._step([], journal=[JournalEntry("exec", output)])
        return output

    async def choose(self, options: list[str]) -> str:
        entry = self._replayed("choice")
        if entry is not None:
            return entry.value or ""
        choice = random.choice(options)  # not for security: a group's `random` speaker selection
        await self._step([], journal=[JournalEntry("choice", choice)])
        return choice

    async def ask_human(self, agent: AgentSpec | None, prompt: str) -> str:
        entry = self._replayed("human")
        if entry is not None:
            return entry.value or ""
        self.live.set()
        waiting = self.manager.waiting
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self.pending is not None and self.pending[0] == prompt:
            deadline = self.pending[1]
            self.pending = None
            waiting[self.chat_id] = future
        else:
            timeout = self.budget.input_timeout_seconds
            deadline = datetime.now(UTC) + timedelta(seconds=timeout) if timeout else None
            waiting[self.chat_id] = future
            await self._step([StatusChange(ChatStatus.WAITING, input_prompt=prompt, input_deadline=deadline)])
        if deadline is None:
            return await future
        try:
            remaining = max(0.0, (deadline - datetime.now(UTC)).total_seconds())
            return await asyncio.wait_for(asyncio.shield(future), remaining)
        except TimeoutError:
            return await self._timed_out(future)

    async def _timed_out(self, future: asyncio.Future[str]) -> str:
        seconds = self.budget.input_timeout_seconds
        if self.budget.input_timeout_action is TimeoutAction.END:
            note = f"The run ended: nobody answered within {seconds:g} seconds."
            result = await self.manager.repo.apply_step(
                self.chat_id,
                [_system(note), StatusChange(ChatStatus.COMPLETED)],
                require=[ChatStatus.WAITING],
                run_no=self.run_no,
            )
            if result is None:  # an answer won the race
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
        )
        if result is None:
            return await future
        self.manager.waiting.pop(self.chat_id, None)
        self.manager.hub.publish(result.events)
        return ""


def _system(text: str) -> NewMessage:
    return NewMessage(type=MessageType.SYSTEM, sender=SYSTEM, receiver="", content=text)


class RunManager:
    def __init__(self, repo: Repository, hub: EventHub, llm: LlmClient, settings: Settings) -> None:
        self.repo = repo
        self.hub = hub
        self.llm = llm
        self.settings = settings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self.executor = CodeExecutor(
            timeout_seconds=settings.code_execution_timeout_seconds, output_limit=settings.code_execution_output_limit
        )

    def start(self, chat: Chat, spec: FlowSpec, journal: list[JournalEntry] | None = None) -> _Run:
        run = _Run(self, chat, spec, journal or [])
        task = asyncio.create_task(self._run(run, chat.run.run_input), name=f"run-{chat.id}")
        self._tasks[chat.id] = task
        task.add_done_callback(lambda t: self._tasks.pop(chat.id, None) if self._tasks.get(chat.id) is t else None)
        return run

    def is_running(self, chat_id: str) -> bool:
        return chat_id in self._tasks

    def is_waiting(self, chat_id: str) -> bool:
        future = self.waiting.get(chat_id)
        return future is not None and not future.done()

    def deliver_input(self, chat_id: str, answer: str) -> None:
        future = self.waiting.pop(chat_id)
        if not future.done():
            future.set_result(answer)

    async def stop(self, chat_id: str) -> None:
        """Stops the run's task (mid model call too); what it stored stays."""
        task = self._tasks.pop(chat_id, None)
        self.waiting.pop(chat_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def shutdown(self) -> None:
        """Stops every run where it is: their journals keep them, and `resume_all` picks them up again."""
        await asyncio.gather(*(self.stop(chat_id) for chat_id in list(self._tasks)))

    async def resume_all(self, *, replay_seconds: float = 30.0) -> None:
        """Rebuilds every run that was in progress when the server stopped, and returns once each has
        replayed its journal (so a SendInput finds the question it answers) or ended."""
        runs: list[tuple[_Run, asyncio.Task[None]]] = []
        for chat in await self.repo.list_chats_in_status(IN_RUN):
            if chat.id in self._tasks:
                continue
            try:
                spec = parse_flow(
                    await self.repo.get_chat_graph(chat.id), code_execution=self.settings.code_execution_enabled
                )
            except DomainError as err:
                await self._end_with_error(chat.id, f"the run could not be resumed: {err.message}")
                continue
            run = self.start(chat, spec, await self.repo.journal(chat.id, chat.run.run_no))
            runs.append((run, self._tasks[chat.id]))
        for run, task in runs:
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
                raise ReplayMismatch("the engine finished before its journal did")
            log.info("chat %s completed: %s", chat_id, reason)
            await run._step([StatusChange(ChatStatus.COMPLETED)])
        except RunGone:
            return
        except RunEnded as ended:
            await self._finish(chat_id, [_system(str(ended)), StatusChange(ChatStatus.COMPLETED)], run.run_no)
        except LlmError as exc:
            await self._end_with_error(chat_id, str(exc), run.run_no)
        except ReplayMismatch as exc:
            await self._end_with_error(chat_id, f"the run could not be resumed after a restart: {exc}", run.run_no)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("chat %s failed", chat_id)
            error = f"internal error while running the chat ({type(exc).__name__})"
            await self._end_with_error(chat_id, error, run.run_no)
        finally:
            run.live.set()
            if self.waiting.get(chat_id) is not None and self._tasks.get(chat_id) is asyncio.current_task():
                self.waiting.pop(chat_id, None)

    async def _finish(self, chat_id: str, items: list[StepItem], run_no: int | None) -> None:
        result = await self.repo.apply_step(chat_id, items, require=IN_RUN, run_no=run_no)
        if result is not None:
            self.hub.publish(result.events)

    async def _end_with_error(self, chat_id: str, error: str, run_no: int | None = None) -> None:
        await self._finish(chat_id, [StatusChange(ChatStatus.ERROR, error=error)], run_no)
