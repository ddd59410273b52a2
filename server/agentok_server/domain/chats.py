"""Chat rules and the chat state machine:

ready/completed/error --SendMessage--> running --(agent needs a person)--> wait_for_human_input
wait_for_human_input --SendInput--> running --(run ends)--> completed | error
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from ..engine.flow_spec import FlowSpec
from ..settings import Settings
from . import paging, tool_steps
from .errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    chat_not_found,
    flow_not_found,
    invalid_field,
    too_many_runs,
)
from .events import EventHub
from .flow_rules import parse_runnable, resolve_tools
from .limits import check_id
from .model import (
    Budget,
    Chat,
    ChatEvent,
    ChatStatus,
    EventKind,
    JournalEntry,
    Message,
    MessageType,
    NewMessage,
    StatusChange,
    TimeoutAction,
    Tool,
    ToolResult,
)
from .ports import ChatsAndFlows, RunLimitReached, StepResult
from .runs import IN_RUN, SYSTEM, RunManager
from .text import check_text, is_clean_text
from .watching import ChatStreams

MAX_INPUT_TIMEOUT_SECONDS = 366 * 86400
# What a SendMessage refused for too many runs in progress is told (RetryInfo): runs that need no person end
# within moments, and anything sooner would only be refused again.
RUN_SLOT_RETRY_SECONDS = 5.0
STARTABLE = [ChatStatus.READY, ChatStatus.COMPLETED, ChatStatus.ERROR]
# Starts tried while other runs keep beginning and ending between the read and the write (each such round is a
# whole run that started and finished meanwhile, so a few suffice).
START_ATTEMPTS = 3


class ChatService:
    def __init__(
        self,
        repo: ChatsAndFlows,
        hub: EventHub,
        runs: RunManager,
        *,
        keepalive_seconds: float,
        default_budget: Budget | None = None,
        max_agent_turns_limit: int = 1000,
        max_runs_per_owner: int = 100,
    ) -> None:
        self._default_budget = default_budget or Budget(max_agent_turns=min(200, max_agent_turns_limit))
        self._max_agent_turns = max_agent_turns_limit
        self._max_runs_per_owner = max_runs_per_owner
        self._repo = repo
        self._hub = hub
        self._runs = runs
        self._streams = ChatStreams(repo, hub, keepalive_seconds=keepalive_seconds)

    @classmethod
    def from_settings(cls, repo: ChatsAndFlows, hub: EventHub, runs: RunManager, settings: Settings) -> ChatService:
        """The service as the server's settings configure it (app.py, and the unit tests on an in-memory store)."""
        return cls(
            repo,
            hub,
            runs,
            keepalive_seconds=settings.watch_keepalive_seconds,
            default_budget=Budget(
                max_agent_turns=settings.default_max_agent_turns,
                input_timeout_seconds=settings.default_input_timeout_seconds,
                input_timeout_action=TimeoutAction(settings.default_input_timeout_action),
                max_tokens_per_run=settings.default_max_tokens_per_run,
            ),
            max_agent_turns_limit=settings.max_agent_turns_limit,
            max_runs_per_owner=settings.max_concurrent_runs_per_owner,
        )

    async def _get(self, owner: str, chat_id: str) -> Chat:
        if not chat_id:
            raise invalid_field("chat_id", "is required")
        check_id("chat_id", chat_id)
        chat = await self._repo.get_chat(owner, chat_id) if is_clean_text(chat_id) else None
        if chat is None:
            raise chat_not_found(chat_id)
        return chat

    async def get(self, owner: str, chat_id: str) -> Chat:
        return await self._get(owner, chat_id)

    async def list_chats(self, owner: str, page_size: int, page_token: str) -> tuple[list[Chat], str]:
        return await paging.newest_first(
            lambda limit, after: self._repo.list_chats(owner, limit, after), page_size, page_token, _chat_bytes
        )

    async def create(
        self,
        owner: str,
        name: str,
        from_type: str,
        from_flow: str,
        *,
        max_agent_turns: int = 0,
        input_timeout_seconds: float | None = None,
        input_timeout_action: TimeoutAction | None = None,
        max_tokens_per_run: int = 0,
    ) -> Chat:
        """Budgets left at 0/None take the server's defaults."""
        if max_tokens_per_run < 0:
            raise invalid_field("max_tokens_per_run", "must not be negative (0 means the server's default)")
        if max_agent_turns < 0:
            raise invalid_field("max_agent_turns", "must not be negative (0 means the server's default)")
        if max_agent_turns > self._max_agent_turns:
            # No run is unlimited: each one holds a share of this server until its budget ends it.
            raise invalid_field(
                "max_agent_turns",
                f"must be at most {self._max_agent_turns}, this server's limit (0 means the server's default, "
                f"{self._default_budget.max_agent_turns})",
            )
        if input_timeout_seconds is not None and input_timeout_seconds < 0:
            raise invalid_field("human_input_timeout", "must not be negative")
        if input_timeout_seconds is not None and 0 < input_timeout_seconds < 0.001:
            # Below the clock's resolution it would silently mean "forever" (zero).
            raise invalid_field("human_input_timeout", "must be zero (wait forever) or at least 1ms")
        if input_timeout_seconds is not None and input_timeout_seconds > MAX_INPUT_TIMEOUT_SECONDS:
            # A deadline must stay a date every database (and Python) can hold.
            raise invalid_field("human_input_timeout", f"must be at most {MAX_INPUT_TIMEOUT_SECONDS // 86400} days")
        check_text("name", name)
        defaults = self._default_budget
        budget = Budget(
            max_agent_turns=max_agent_turns or defaults.max_agent_turns,
            input_timeout_seconds=(
                defaults.input_timeout_seconds if input_timeout_seconds is None else input_timeout_seconds
            ),
            input_timeout_action=input_timeout_action or defaults.input_timeout_action,
            max_tokens_per_run=max_tokens_per_run or defaults.max_tokens_per_run,
        )
        if from_type != "flow":
            raise invalid_field("from_type", f'must be "flow" (got {from_type!r})')
        if not from_flow:
            raise invalid_field("from_flow", "is required: the id of a flow to run")
        check_id("from_flow", from_flow)
        flow = await self._repo.get_flow(owner, from_flow) if is_clean_text(from_flow) else None
        if flow is None:
            raise flow_not_found(from_flow)
        return await self._repo.insert_chat(
            owner=owner,
            name=name.strip() or flow.name,
            from_type=from_type,
            from_flow=from_flow,
            graph=flow.graph,
            budget=budget,
        )

    async def delete(self, owner: str, chat_id: str) -> None:
        await self._get(owner, chat_id)
        await self._runs.stop(chat_id)
        chat = await self._repo.delete_chat(owner, chat_id)
        if chat is None:
            raise chat_not_found(chat_id)
        # A run started while the first one was being stopped finds its chat gone on its next step.
        await self._runs.stop(chat_id)
        self._hub.publish(
            [ChatEvent(chat_id=chat_id, seq=chat.last_seq + 1, time=datetime.now(UTC), kind=EventKind.DELETED)]
        )

    async def _runnable(self, owner: str, chat_id: str) -> tuple[FlowSpec, dict[str, Tool]]:
        """The chat's flow and the tools it binds, as a run needs them; FAILED_PRECONDITION when either no
        longer does (a setting changed, a tool was deleted since)."""
        graph = await self._repo.get_chat_graph(chat_id)
        try:
            spec = parse_runnable(graph, code_execution=self._runs.code_execution)
            return spec, await resolve_tools(spec, owner, self._repo)
        except InvalidArgument as exc:
            raise FailedPrecondition(
                f"the chat's flow can no longer run: {exc.message}",
                reason="FLOW_NOT_RUNNABLE",
                metadata=exc.metadata,
            ) from None

    async def send_message(self, owner: str, chat_id: str, text: str) -> tuple[Chat, Message]:
        if not text.strip():
            raise invalid_field("message", "is required and must not be empty")
        check_text("message", text)
        chat = await self._get(owner, chat_id)
        self._check_startable(chat)
        spec, tools = await self._runnable(owner, chat_id)
        initiator, recipient = spec.agent(spec.chat.initiator), spec.agent(spec.chat.recipient)
        first = NewMessage(type=MessageType.USER, sender=initiator.name, receiver=recipient.name, content=text)
        for _ in range(START_ATTEMPTS):
            # The run's lease is taken in the same transaction: of two replicas racing, one starts the run. So
            # is the owner's count of runs in progress: of two racing starts, only those within the cap pass.
            try:
                result = await self._repo.apply_step(
                    chat_id,
                    [StatusChange(ChatStatus.RUNNING), first],
                    require=STARTABLE,
                    owner=owner,
                    start_run=text,
                    holder=self._runs.replica_id,
                    lease_until=self._runs.lease_until(),
                    max_runs_per_owner=self._max_runs_per_owner,
                )
            except RunLimitReached as full:
                raise too_many_runs(full.limit, RUN_SLOT_RETRY_SECONDS) from None
            if result is not None:
                break
            # The chat changed between the read and the write: gone, or busy, is what the client hears; startable
            # again (another run began and ended in between) is no reason to refuse, so the start is tried again.
            self._check_startable(await self._get(owner, chat_id))
        else:
            raise Aborted(
                "the chat kept changing while the message was being sent; send it again",
                reason="CHAT_CHANGED",
                metadata={"chat_id": chat_id},
            )
        self._hub.publish(result.events)
        self._runs.start(result.chat, spec, tools=tools)
        message = result.events[-1].message
        assert message is not None
        return result.chat, message

    @staticmethod
    def _check_startable(chat: Chat) -> None:
        if chat.status is ChatStatus.RUNNING:
            raise FailedPrecondition(
                "the chat is running: wait until it is completed before sending a new message",
                reason="CHAT_RUNNING",
                metadata={"chat_id": chat.id, "status": chat.status.value},
            )
        if chat.status is ChatStatus.WAITING:
            raise FailedPrecondition(
                "the chat is waiting for human input: answer with POST /chats/{chat_id}/input (SendInput)",
                reason="CHAT_WAITING_FOR_INPUT",
                metadata={"chat_id": chat.id, "status": chat.status.value},
            )

    async def send_input(
        self, owner: str, chat_id: str, answer: str | None, tool_results: Sequence[ToolResult] = ()
    ) -> Chat:
        if tool_results:
            if answer is not None:
                raise invalid_field("message", "must be absent when tool_results is set: send one or the other")
            return await self._send_tool_results(owner, chat_id, tool_results)
        if answer is None:
            raise invalid_field("message", 'is required (send "" to skip, "exit" to end the conversation)')
        check_text("message", answer)
        chat = await self._get(owner, chat_id)
        self._check_waiting(chat)
        if chat.pending_tool_calls:
            raise FailedPrecondition(
                "the chat waits for the results of client tool calls (pending_tool_calls), not a person's "
                "text: send them as tool_results",
                reason="CHAT_WAITING_FOR_TOOL_RESULTS",
                metadata={"chat_id": chat_id},
            )
        # The answer is journaled with the status change: after a restart, the run replays it.
        entry = JournalEntry("human", answer)
        result = await self._repo.apply_step(
            chat_id,
            [StatusChange(ChatStatus.RUNNING)],
            require=[ChatStatus.WAITING],
            owner=owner,
            journal=[entry],
            run_no=chat.run.run_no,
        )
        if result is None:
            raise FailedPrecondition("the chat is no longer waiting for human input", reason="CHAT_NOT_WAITING")
        return self._answered(chat_id, result, entry)

    async def _send_tool_results(self, owner: str, chat_id: str, results: Sequence[ToolResult]) -> Chat:
        for _ in range(START_ATTEMPTS):
            chat = await self._get(owner, chat_id)
            still_open = tool_steps.answer_pending(chat.pending_tool_calls, results)
            if still_open:
                # Some calls answered: the chat keeps waiting for the others, under the same deadline.
                prompt = tool_steps.waiting_prompt(still_open)
                change = StatusChange(
                    ChatStatus.WAITING,
                    input_prompt=prompt,
                    input_deadline=chat.run.input_deadline,
                    pending_tool_calls=still_open,
                )
            else:
                change = StatusChange(ChatStatus.RUNNING)
            entry = JournalEntry(tool_steps.CLIENT_RESULTS, tool_steps.encode_results(results))
            # Only on the journal it was decided from: two clients answering different calls at once must not
            # both leave the chat waiting for what the other answered.
            result = await self._repo.apply_step(
                chat_id,
                [change],
                require=[ChatStatus.WAITING],
                owner=owner,
                journal=[entry],
                run_no=chat.run.run_no,
                at_step=chat.run.run_steps,
            )
            if result is not None:
                return self._answered(chat_id, result, entry)
        raise Aborted(
            "the chat kept changing while the tool results were being sent; send them again",
            reason="CHAT_CHANGED",
            metadata={"chat_id": chat_id},
        )

    def _answered(self, chat_id: str, result: StepResult, entry: JournalEntry) -> Chat:
        self._hub.publish(result.events)
        # The run may live on another replica: it reads the answer from the journal when told of the change
        # (or, with no replica holding it, whoever takes it over replays it).
        self._runs.deliver_input(chat_id, entry)
        return result.chat

    @staticmethod
    def _check_waiting(chat: Chat) -> None:
        if chat.status is not ChatStatus.WAITING:
            raise FailedPrecondition(
                f"the chat is not waiting for human input (status: {chat.status.value})",
                reason="CHAT_NOT_WAITING",
                metadata={"chat_id": chat.id, "status": chat.status.value},
            )

    async def cancel(self, owner: str, chat_id: str) -> Chat:
        """Stops the run, mid model call too; the chat is ready again, with a message recording why."""
        chat = await self._get(owner, chat_id)
        if not chat.status.in_run:
            raise FailedPrecondition(
                f"the chat has no run to cancel (status: {chat.status.value})",
                reason="CHAT_NOT_RUNNING",
                metadata={"chat_id": chat_id, "status": chat.status.value},
            )
        await self._runs.stop(chat_id)
        note = NewMessage(type=MessageType.SYSTEM, sender=SYSTEM, receiver="", content="The run was cancelled.")
        result = await self._repo.apply_step(
            chat_id, [note, StatusChange(ChatStatus.READY)], require=IN_RUN, owner=owner
        )
        if result is None:  # the run ended on its own meanwhile
            chat = await self._get(owner, chat_id)
            raise FailedPrecondition(
                f"the chat has no run to cancel (status: {chat.status.value})", reason="CHAT_NOT_RUNNING"
            )
        self._hub.publish(result.events)
        return result.chat

    async def list_messages(
        self, owner: str, chat_id: str, page_size: int, page_token: str
    ) -> tuple[list[Message], str]:
        limit = paging.page_size(page_size, default=100, maximum=1000)
        after = paging.decode_seq(page_token)
        await self._get(owner, chat_id)
        rows = await self._repo.list_messages(chat_id, limit + 1, after)
        messages, more = paging.fit(rows, limit, _message_bytes)
        return messages, paging.encode(messages[-1].seq) if more else ""

    async def watch(
        self, owner: str, chat_id: str, after_seq: int, *, until_finished: bool = False, deltas: bool = False
    ) -> AsyncIterator[ChatEvent]:
        """Stored events after `after_seq`, then live ones; subscribing first means none fall in between.
        `deltas`: live message deltas too (never replayed: the stored message carries their text)."""
        if after_seq < 0:
            raise invalid_field("after_seq", "must not be negative")
        await self._get(owner, chat_id)
        return self._streams.follow(owner, chat_id, after_seq, until_finished=until_finished, deltas=deltas)


def _chat_bytes(chat: Chat) -> int:
    return 256 + len(chat.name.encode()) + len(chat.error.encode()) + len(chat.input_prompt.encode())


def _message_bytes(message: Message) -> int:
    text = [message.content, message.sender, message.receiver]
    text += [part for c in message.tool_calls for part in (c.call_id, c.name, c.arguments)]
    text += [part for r in message.tool_responses for part in (r.call_id, r.content)]
    return 256 + sum(len(part.encode()) for part in text)
