"""The Python client (clients/python, agentok_client) against a real server behind a real Envoy: a whole
human-in-the-loop chat with the blocking and the asyncio client, errors with their code and reason, lists read
page after page, and a watch that goes on across server restarts with no gap and no repeat."""

from __future__ import annotations

import asyncio
import datetime
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from agentok.v1 import chat_pb2
from agentok_client import EXIT, SKIP, AgentokError, AsyncClient, ChatEvent, Client, Reconnect, Status
from agentok_server.edge.envoy_config import JwtConfig

from ..support.api import two_agent_flow
from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, create_key, free_port
from ..support.tokens import AUDIENCE, ISSUER, TokenFactory

REPLY = "Hello! I am a fixed-reply agent."


def hello_flow(**edge: Any) -> dict[str, Any]:
    """README's Hello flow: the user proxy asks a person every turn, the agent answers a fixed reply (no model)."""
    return two_agent_flow(
        a={"human_input_mode": "ALWAYS"},
        b={"disable_llm": True, "default_auto_reply": REPLY},
        edge=edge,
    )


@pytest.fixture(scope="module")
def own_stack(
    tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer, tokens: TokenFactory
) -> Iterator[Stack]:
    """This module's own stack: its last test restarts the server."""
    jwt = JwtConfig(ISSUER, AUDIENCE, jwks_file=tokens.jwks_file)
    stack = Stack(tmp_path_factory.mktemp("python-client"), llm_server.base_url, jwt=jwt).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def api_key(own_stack: Stack) -> str:
    return create_key(own_stack.env, "py-client", "pia")[1]


@pytest.fixture()
def client(own_stack: Stack, api_key: str) -> Iterator[Client]:
    with Client(own_stack.edge_target, api_key=api_key) as c:
        yield c


def test_a_whole_human_in_the_loop_chat_with_the_blocking_client(own_stack: Stack, tokens: TokenFactory) -> None:
    # A bearer token, asked for before each call (so a caller can refresh it).
    with Client(own_stack.edge_target, token=lambda: tokens.token("pia")) as client:
        flow = client.create_flow(hello_flow(), "Hello flow")
        chat = client.create_chat(flow.id, "My Chatbot")
        assert chat.status == Status.ready and chat.name == "My Chatbot"

        sent = client.send_message(chat.id, "Hello, Agentok Studio!")
        assert sent.chat.status == Status.running and sent.message.seq == sent.chat.last_seq
        waiting = client.wait_for(chat.id, "wait_for_human_input")
        assert waiting.input_prompt
        assert client.wait_for(chat.id, Status.wait_for_human_input) == waiting  # already there: at once

        client.send_input(chat.id, "one more")
        client.wait_for(chat.id, {"wait_for_human_input", "completed"})
        client.send_input(chat.id, SKIP)  # the user proxy auto-replies for the person
        client.wait_for(chat.id, "wait_for_human_input")
        answered = client.send_input(chat.id, EXIT)
        assert answered.status == Status.running
        done = client.wait_for(chat.id, ["completed", "error"])
        assert done.status == Status.completed

        history = list(client.messages(chat.id))
        assert [m.content for m in history] == ["Hello, Agentok Studio!", REPLY, "one more", REPLY, "", REPLY]
        assert [m.seq for m in history] == sorted(m.seq for m in history)
        # The whole run replayed by a watch from 0: every stored event once, in order, up to the run's end.
        events = list(client.watch(chat.id, until_finished=True))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert [e.message_added.content for e in events if e.HasField("message_added")] == [m.content for m in history]
        assert events[-1].status_changed.status == Status.completed

        assert chat.id in [c.id for c in client.list_chats()]
        client.delete_chat(chat.id)
        with pytest.raises(AgentokError) as gone:
            client.get_chat(chat.id)
        assert (gone.value.code, gone.value.reason) == (grpc.StatusCode.NOT_FOUND, "CHAT_NOT_FOUND")


async def test_a_whole_human_in_the_loop_chat_with_the_asyncio_client(own_stack: Stack, api_key: str) -> None:
    async with AsyncClient(own_stack.edge_target, api_key=api_key) as client:
        flow = await client.create_flow(hello_flow(), "Hello flow")
        assert (await client.get_flow(flow.id)).name == "Hello flow"
        chat = await client.create_chat(
            flow.id,
            "async chat",
            max_agent_turns=20,
            human_input_timeout=datetime.timedelta(minutes=5),
            human_input_timeout_action="HUMAN_INPUT_TIMEOUT_ACTION_END_RUN",
        )
        assert chat.max_agent_turns == 20 and chat.human_input_timeout.ToTimedelta() == datetime.timedelta(minutes=5)
        assert chat.human_input_timeout_action == chat_pb2.HUMAN_INPUT_TIMEOUT_ACTION_END_RUN
        sent = await client.send_message(chat.id, "hi")

        # Follow the run live: answer each question as it comes, stop at the run's end.
        seen: list[ChatEvent] = []
        answers = iter(["again", EXIT])
        async for event in client.watch(chat.id, after_seq=sent.chat.last_seq, until_finished=True):
            seen.append(event)
            if event.HasField("status_changed") and event.status_changed.status == Status.wait_for_human_input:
                assert event.status_changed.input_prompt
                await client.send_input(chat.id, next(answers))
        assert seen[-1].status_changed.status == Status.completed
        assert [e.seq for e in seen] == list(range(sent.chat.last_seq + 1, sent.chat.last_seq + 1 + len(seen)))

        assert [m.content async for m in client.messages(chat.id, page_size=2)] == ["hi", REPLY, "again", REPLY]
        assert (await client.wait_for(chat.id, "completed")).status == Status.completed

        # A waiting chat cancelled: ready again.
        await client.send_message(chat.id, "once more")
        await client.wait_for(chat.id, "wait_for_human_input")
        assert (await client.cancel_chat(chat.id)).status == Status.ready
        await client.delete_chat(chat.id)
        await client.delete_flow(flow.id)
        with pytest.raises(AgentokError) as gone:
            await client.get_flow(flow.id)
        assert (gone.value.code, gone.value.reason) == (grpc.StatusCode.NOT_FOUND, "FLOW_NOT_FOUND")


def test_errors_carry_the_grpc_code_and_the_error_info_reason(own_stack: Stack, client: Client) -> None:
    with pytest.raises(AgentokError) as missing:
        client.get_chat("no-such-chat")
    assert (missing.value.code, missing.value.reason, missing.value.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "CHAT_NOT_FOUND",
        "agentok.ai",
    )
    assert "no-such-chat" in missing.value.message

    flow = client.create_flow(hello_flow())
    with pytest.raises(AgentokError) as invalid:
        client.create_chat(flow.id, max_agent_turns=-1)
    assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT and invalid.value.reason
    assert [v.field for v in invalid.value.field_violations] == ["max_agent_turns"]

    chat = client.create_chat(flow.id)
    with pytest.raises(AgentokError) as not_waiting:
        client.send_input(chat.id, "nobody asked")
    assert not_waiting.value.code == grpc.StatusCode.FAILED_PRECONDITION and not_waiting.value.reason

    # Refusals Envoy makes itself at the edge carry a reason too, the same way.
    with Client(own_stack.edge_target, api_key="atk_not-a-key") as stranger:
        with pytest.raises(AgentokError) as refused:
            stranger.get_chat(chat.id)
        assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")
        with pytest.raises(AgentokError) as refused_stream:
            next(stranger.watch(chat.id))
        assert refused_stream.value.reason == "API_KEY_INVALID"  # not retried: only UNAVAILABLE is
    with pytest.raises(ValueError):
        Client(own_stack.edge_target)  # neither a key nor a token


def test_a_wait_and_a_watch_end_when_told(client: Client) -> None:
    chat = client.create_chat(client.create_flow(hello_flow()).id)
    client.send_message(chat.id, "hi")
    client.wait_for(chat.id, "wait_for_human_input")
    with pytest.raises(TimeoutError):
        client.wait_for(chat.id, "completed", timeout=0.5)  # nobody answers
    # Nothing listens: the watch retries UNAVAILABLE for as long as its Reconnect allows, then says so.
    with Client(f"127.0.0.1:{free_port()}", api_key="atk_x", reconnect=Reconnect(give_up_after=0.5)) as nowhere:
        with pytest.raises(AgentokError) as down:
            next(nowhere.watch(chat.id))
        assert down.value.code == grpc.StatusCode.UNAVAILABLE


def test_lists_are_read_page_after_page(client: Client) -> None:
    # No person in the loop: the user proxy auto-replies, 5 rounds, 10 messages after the first.
    flow = client.create_flow(
        two_agent_flow(
            a={"human_input_mode": "NEVER", "default_auto_reply": "go on", "max_consecutive_auto_reply": 5},
            b={"disable_llm": True, "default_auto_reply": "ok"},
        )
    )
    chats = [client.create_chat(flow.id, f"paged {n}") for n in range(3)]
    client.send_message(chats[0].id, "start")
    client.wait_for(chats[0].id, "completed")

    one_page = list(client.messages(chats[0].id, page_size=1000))
    paged = list(client.messages(chats[0].id, page_size=3))
    assert len(one_page) == 12 and paged == one_page
    assert [m.content for m in paged] == ["start", *["ok", "go on"] * 5, "ok"]
    # Every chat of the caller, newest first, one per page.
    listed = [c.id for c in client.list_chats(page_size=1)]
    assert listed[:3] == [c.id for c in reversed(chats)]
    assert flow.id in [f.id for f in client.list_flows(page_size=1)]


class Watcher:
    """A watch of one chat in its own thread, from 0 to the run's end, with the blocking client or (`asyncio`)
    the asyncio one in the thread's own event loop; what it yields is kept, and handed over as it comes."""

    def __init__(self, stack: Stack, api_key: str, chat_id: str, *, asyncio_client: bool) -> None:
        self.target, self.api_key, self.chat_id = stack.edge_target, api_key, chat_id
        self.seen: list[ChatEvent] = []
        self._delivered: queue.Queue[ChatEvent | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._follow_async if asyncio_client else self._follow)
        self.thread.start()

    def _keep(self, event: ChatEvent) -> None:
        self.seen.append(event)
        self._delivered.put(event)

    def _follow(self) -> None:
        try:
            with Client(self.target, api_key=self.api_key) as client:
                for event in client.watch(self.chat_id, until_finished=True):
                    self._keep(event)
        except BaseException as err:  # handed to the test's thread, which fails with it
            self._delivered.put(err)

    def _follow_async(self) -> None:
        async def follow() -> None:
            async with AsyncClient(self.target, api_key=self.api_key) as client:
                async for event in client.watch(self.chat_id, until_finished=True):
                    self._keep(event)

        try:
            asyncio.run(follow())
        except BaseException as err:
            self._delivered.put(err)

    def next(self, until: Callable[[ChatEvent], bool]) -> ChatEvent:
        """Blocks until the watch yields an event that `until` accepts (30 s at most)."""
        while True:
            item = self._delivered.get(timeout=30)
            if isinstance(item, BaseException):
                raise item
            if until(item):
                return item


def _waiting(event: ChatEvent) -> bool:
    return event.HasField("status_changed") and event.status_changed.status == Status.wait_for_human_input


def test_a_watch_goes_on_across_server_restarts_with_no_gap_and_no_repeat(
    own_stack: Stack, client: Client, api_key: str
) -> None:
    chat = client.create_chat(client.create_flow(hello_flow()).id)
    client.send_message(chat.id, "before the restarts")
    watchers = [Watcher(own_stack, api_key, chat.id, asyncio_client=flavour) for flavour in (False, True)]

    def all_see(until: Callable[[ChatEvent], bool]) -> None:
        for watcher in watchers:
            watcher.next(until)

    try:
        all_see(_waiting)

        own_stack.server.stop(signal.SIGKILL)  # the streams break with no goodbye
        own_stack.server.start()
        client.send_input(chat.id, "after a crash")
        all_see(lambda e: e.message_added.content == "after a crash")
        all_see(_waiting)

        assert own_stack.server.stop(signal.SIGTERM) == 0  # the server says it is going (server_shutdown)
        own_stack.server.start()
        client.send_input(chat.id, EXIT)
        all_see(lambda e: e.status_changed.status == Status.completed)
    finally:
        for watcher in watchers:
            watcher.thread.join(30)
    assert not any(watcher.thread.is_alive() for watcher in watchers)

    # Each watch: every stored event exactly once, in order, none lost across the two restarts, the run's end
    # last; what it saw is the chat's history.
    history = [m.content for m in client.messages(chat.id)]
    assert history == ["before the restarts", REPLY, "after a crash", REPLY]  # "exit" ends it, unstored
    for watcher in watchers:
        seen = watcher.seen
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
        assert seen[-1].status_changed.status == Status.completed
        assert [e.message_added.content for e in seen if e.HasField("message_added")] == history
