"""ChatService and RunManager wired to a MemoryStore, an EventHub, a scripted model and code runner, and
Settings built in code: the one place the unit tests construct them (app.py is the production wiring)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agentok_server.domain.chats import ChatService
from agentok_server.domain.events import EventHub, Subscription
from agentok_server.domain.idempotency import Idempotency
from agentok_server.domain.metrics import NO_OBSERVER, Observer
from agentok_server.domain.model import Chat, ChatEvent, ChatStatus, Tool, ToolCall, ToolResult
from agentok_server.domain.runs import RunManager
from agentok_server.engine.code_execution import CodeBlock
from agentok_server.engine.llm import Endpoint, OnDelta
from agentok_server.engine.tool_calls import ModelReply
from agentok_server.settings import Settings

from .api import two_agent_flow
from .memory_store import MemoryStore

# How long a test waits for something the code under test will do at once; only a bug reaches it.
PATIENCE_SECONDS = 5.0
OWNER = "alice"
# The user proxy asks a person at every turn; the assistant asks the model.
ASKING = two_agent_flow(a={"human_input_mode": "ALWAYS"})


class ScriptedModel:
    """ModelClient: each call is recorded, then waits for the next reply in line. Replies given up front are
    answered at once; with none queued a call waits until the test `reply()`s, so a test controls when
    a model reply arrives."""

    def __init__(self, replies: Iterable[str | ModelReply] = ()) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        # The `tools` each call offered ([] for a plain completion).
        self.offered: list[list[dict[str, Any]]] = []
        self._replies: asyncio.Queue[str | ModelReply] = asyncio.Queue()
        self._called = asyncio.Condition()
        for text in replies:
            self._replies.put_nowait(text)

    async def complete(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None
    ) -> ModelReply:
        reply = await self._next(messages, [])
        if isinstance(reply, ModelReply):
            assert not reply.tool_calls, f"a model offered no tools was scripted to call tools: {reply}"
            return reply
        return ModelReply(reply)

    async def propose(
        self,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        on_delta: OnDelta | None = None,
    ) -> ModelReply:
        """A text reply scripted for a call that offers tools is a reply that calls none."""
        reply = await self._next(messages, tools)
        return reply if isinstance(reply, ModelReply) else ModelReply(reply)

    async def _next(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str | ModelReply:
        self.calls.append(copy.deepcopy(messages))
        self.offered.append(copy.deepcopy(tools))
        async with self._called:
            self._called.notify_all()
        return await self._replies.get()

    def reply(self, *texts: str | ModelReply) -> None:
        for text in texts:
            self._replies.put_nowait(text)

    @property
    def unanswered_replies(self) -> int:
        """Replies queued that no call has taken (a run stopped mid-call never takes its reply)."""
        return self._replies.qsize()

    async def wait_calls(self, count: int) -> None:
        """Returns once the model has been called `count` times in all."""
        async with asyncio.timeout(PATIENCE_SECONDS), self._called:
            await self._called.wait_for(lambda: len(self.calls) >= count)


@dataclass
class ScriptedCode:
    """CodeRunner: records each call's blocks and answers `output`."""

    output: str = "exitcode: 0 (execution succeeded)\nCode output: \n42\n"
    calls: list[list[CodeBlock]] = field(default_factory=list)

    async def run(self, blocks: list[CodeBlock]) -> str:
        self.calls.append(list(blocks))
        return self.output


@dataclass
class ScriptedTools:
    """ToolRunner: records each call and answers `results[name]` (an error result for a name it lacks)."""

    results: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, ToolCall]] = field(default_factory=list)
    # Set: each call waits for it (a test holds a call in flight); `started` is set once a call began.
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, tool: Tool, call: ToolCall, chat_id: str) -> ToolResult:
        self.calls.append((tool.id, call))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if call.name not in self.results:
            return ToolResult(call.call_id, f"Error: no scripted result for {call.name}", is_error=True)
        return ToolResult(call.call_id, self.results[call.name])


@dataclass
class Services:
    store: MemoryStore
    hub: EventHub
    model: ScriptedModel
    code: ScriptedCode
    tools: ScriptedTools
    settings: Settings
    runs: RunManager
    chats: ChatService
    idempotency: Idempotency


# What the unit tests' `services` fixture (tests/unit/conftest.py) hands them: make_services, stopped after.
MakeServices = Callable[..., Services]


def settings_for_tests(**overrides: Any) -> Settings:
    """Everything a run reads, set here rather than from the environment."""
    values: dict[str, Any] = {
        "llm_base_url": "http://model.invalid/v1",  # never dialled: the scripted model answers
        "llm_api_key": None,
        "code_execution_enabled": False,
        "default_max_agent_turns": 200,
        "max_agent_turns_limit": 1000,
        "max_concurrent_runs_per_owner": 100,
        "default_input_timeout_seconds": 0.0,
        "default_input_timeout_action": "skip",
        "watch_keepalive_seconds": 60.0,
        "lease_seconds": 60.0,  # no lease lapses during a test unless the test lapses it
        "lease_renew_seconds": 60.0,
    }
    return Settings(**(values | overrides))


def make_services(
    store: MemoryStore | None = None,
    *,
    model: ScriptedModel | None = None,
    code: ScriptedCode | None = None,
    tools: ScriptedTools | None = None,
    hub: EventHub | None = None,
    observer: Observer = NO_OBSERVER,
    **settings: Any,
) -> Services:
    """One replica's services on `store` (a new one by default): pass the same store for a restarted server,
    `store.replica("b")` for a peer. Keyword arguments override settings_for_tests()."""
    store = store or MemoryStore()
    hub = hub or EventHub()
    model = model or ScriptedModel()
    code = code or ScriptedCode()
    tools = tools or ScriptedTools()
    config = settings_for_tests(**settings)
    runs = RunManager(store, hub, model, config, executor=code, tools=tools, observer=observer)
    chats = ChatService.from_settings(store, hub, runs, config)
    return Services(store, hub, model, code, tools, config, runs, chats, Idempotency(store))


async def new_chat(services: Services, graph: dict[str, Any], **budget: Any) -> str:
    """A chat of a new flow with this graph, through ChatService.create (budget: its keyword arguments)."""
    flow = await services.store.insert_flow(owner=OWNER, name="flow", graph=graph, warnings=[])
    chat = await services.chats.create(OWNER, "chat", "flow", flow.id, **budget)
    return chat.id


async def next_event(sub: Subscription, accept: Callable[[ChatEvent], bool]) -> ChatEvent:
    """The next event the subscription hears that `accept`s."""
    async with asyncio.timeout(PATIENCE_SECONDS):
        while True:
            event = await sub.queue.get()
            assert event is not None, "the hub closed"
            if accept(event):
                return event


async def until_status(sub: Subscription, *statuses: ChatStatus) -> ChatEvent:
    """The next status change to one of these."""
    return await next_event(sub, lambda e: e.status is not None and e.status.status in statuses)


async def contents(services: Services, chat_id: str) -> list[str]:
    return [m.content for m in await services.store.list_messages(chat_id, 1000, 0)]


async def run_until_waiting(s: Services, chat_id: str, text: str = "task", reply: str = "r1") -> Chat:
    """Sends `text` to a chat of ASKING and returns it once the run asks its person (the model said `reply`)."""
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, text)
        await s.model.wait_calls(len(s.model.calls) + 1)
        s.model.reply(reply)
        await until_status(sub, ChatStatus.WAITING)
    return await s.chats.get(OWNER, chat_id)
