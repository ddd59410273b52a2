"""Runs a chat's conversation in the background: stores each step, streams it, waits for people."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..engine.conversation import TwoAgentConversation
from ..engine.flow_spec import AgentSpec, FlowSpec
from ..engine.llm import Endpoint, LlmClient, LlmError, resolve_endpoint
from ..settings import Settings
from ..storage.repository import Repository, StepItem
from .events import EventHub
from .model import ChatStatus, NewMessage, StatusChange

log = logging.getLogger(__name__)

INTERRUPTED = "the server stopped while this chat was running; send a new message to start again"


class _ChatGone(Exception):
    """The chat was deleted (or its run taken away) while the run was in progress."""


class RunManager:
    def __init__(self, repo: Repository, hub: EventHub, llm: LlmClient, settings: Settings) -> None:
        self._repo = repo
        self._hub = hub
        self._llm = llm
        self._settings = settings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._waiting: dict[str, asyncio.Future[str]] = {}

    def start(self, chat_id: str, spec: FlowSpec, first_message: str) -> None:
        task = asyncio.create_task(self._run(chat_id, spec, first_message), name=f"run-{chat_id}")
        self._tasks[chat_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(chat_id, None) if self._tasks.get(chat_id) is _t else None)

    def is_waiting(self, chat_id: str) -> bool:
        future = self._waiting.get(chat_id)
        return future is not None and not future.done()

    def deliver_input(self, chat_id: str, answer: str) -> None:
        future = self._waiting.pop(chat_id)
        future.set_result(answer)

    async def stop(self, chat_id: str) -> None:
        task = self._tasks.pop(chat_id, None)
        self._waiting.pop(chat_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def shutdown(self) -> None:
        """Stops every run and records why, so no chat is left `running` with nothing running it."""
        ids = list(self._tasks)
        await asyncio.gather(*(self.stop(chat_id) for chat_id in ids))
        await self.fail_interrupted()

    async def fail_interrupted(self) -> None:
        for chat in await self._repo.list_chats_in_status([ChatStatus.RUNNING, ChatStatus.WAITING]):
            if chat.id not in self._tasks:
                await self._step(chat.id, [StatusChange(ChatStatus.ERROR, error=INTERRUPTED)], require=None)

    async def _step(self, chat_id: str, items: list[StepItem], require: list[ChatStatus] | None) -> None:
        result = await self._repo.apply_step(chat_id, items, require=require)
        if result is None:
            raise _ChatGone(chat_id)
        self._hub.publish(result.events)

    async def _run(self, chat_id: str, spec: FlowSpec, first_message: str) -> None:
        endpoint: Endpoint | None = None

        async def complete(agent: AgentSpec, messages: list[dict[str, Any]]) -> str:
            nonlocal endpoint
            if endpoint is None:
                s = self._settings
                endpoint = resolve_endpoint(spec.llm, base_url=s.llm_base_url, model=s.llm_model, api_key=s.llm_api_key)
            return await self._llm.complete(endpoint, messages)

        manager = self

        class _IO:
            async def say(self, message: NewMessage) -> None:
                await manager._step(chat_id, [message], require=[ChatStatus.RUNNING])

            async def ask_human(self, agent: AgentSpec, prompt: str) -> str:
                future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                manager._waiting[chat_id] = future
                await manager._step(
                    chat_id,
                    [StatusChange(ChatStatus.WAITING, input_prompt=prompt)],
                    require=[ChatStatus.RUNNING],
                )
                return await future

        conversation = TwoAgentConversation(spec, complete)
        try:
            reason = await conversation.run(first_message, _IO())
            log.info("chat %s completed: %s", chat_id, reason)
            await self._step(chat_id, [StatusChange(ChatStatus.COMPLETED)], require=[ChatStatus.RUNNING])
        except _ChatGone:
            return
        except LlmError as exc:
            await self._end_with_error(chat_id, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("chat %s failed", chat_id)
            await self._end_with_error(chat_id, f"internal error while running the chat ({type(exc).__name__})")
        finally:
            self._waiting.pop(chat_id, None)

    async def _end_with_error(self, chat_id: str, error: str) -> None:
        try:
            await self._step(
                chat_id,
                [StatusChange(ChatStatus.ERROR, error=error)],
                require=[ChatStatus.RUNNING, ChatStatus.WAITING],
            )
        except _ChatGone:
            pass
