"""The blocking client: one method per call of the chat and flow services, over a native gRPC channel."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc
import tenacity
from google.protobuf import struct_pb2

from agentok.v1 import (
    chat_pb2,
    chat_service_pb2,
    flow_pb2,
    flow_service_pb2,
)

from . import _core
from ._core import Base, Cursor, Reconnect, StatusLike, StreamEnded, Token
from ._errors import AgentokError, from_rpc_error

R = TypeVar("R")


class Client(Base):
    """A blocking client of an agentok-grpc deployment.

    `target` is Envoy's address (what `make run` prints as "gRPC (through Envoy)", e.g. "127.0.0.1:8080");
    give `credentials` (grpc.ssl_channel_credentials()) for a TLS listener. Every call sends `api_key` as
    x-api-key metadata or `token` as a bearer token (a string, or a callable asked before each call).
    Failures raise AgentokError. Use it as a context manager, or call close().
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        token: Token | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = _core.DEFAULT_TIMEOUT,
        reconnect: Reconnect | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        factories = (grpc.secure_channel, grpc.insecure_channel)
        super().__init__(target, factories, credentials, options, api_key, token, timeout, reconnect)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _call(self, method: Callable[..., R], request: Any) -> R:
        try:
            return method(request, metadata=self.metadata(), timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err

    # Flows

    def create_flow(
        self, flow: Mapping[str, Any] | struct_pb2.Struct, name: str = "", *, request_id: str | None = None
    ) -> flow_pb2.Flow:
        """Saves a flow (the {nodes, edges} graph Agentok Studio saves)."""
        return self._call(self.flows.CreateFlow, _core.create_flow_request(flow, name, request_id)).flow

    def get_flow(self, flow_id: str) -> flow_pb2.Flow:
        return self._call(self.flows.GetFlow, flow_service_pb2.GetFlowRequest(flow_id=flow_id)).flow

    def list_flows(self, *, page_size: int = 0) -> Iterator[flow_pb2.Flow]:
        """Every flow of the caller, page after page."""
        return self._pages(self.flows.ListFlows, flow_service_pb2.ListFlowsRequest(page_size=page_size), "flows")

    def delete_flow(self, flow_id: str) -> None:
        self._call(self.flows.DeleteFlow, flow_service_pb2.DeleteFlowRequest(flow_id=flow_id))

    # Chats

    def create_chat(
        self,
        flow_id: str,
        name: str = "",
        *,
        max_agent_turns: int = 0,
        human_input_timeout: datetime.timedelta | None = None,
        human_input_timeout_action: chat_pb2.HumanInputTimeoutAction | str | None = None,
        request_id: str | None = None,
    ) -> chat_pb2.Chat:
        """Creates a chat from a flow; it is ready for its first message."""
        request = _core.create_chat_request(
            flow_id, name, max_agent_turns, human_input_timeout, human_input_timeout_action, request_id
        )
        return self._call(self.chats.CreateChat, request).chat

    def get_chat(self, chat_id: str) -> chat_pb2.Chat:
        return self._call(self.chats.GetChat, chat_service_pb2.GetChatRequest(chat_id=chat_id)).chat

    def list_chats(self, *, page_size: int = 0) -> Iterator[chat_pb2.Chat]:
        """Every chat of the caller, newest first, page after page."""
        return self._pages(self.chats.ListChats, chat_service_pb2.ListChatsRequest(page_size=page_size), "chats")

    def delete_chat(self, chat_id: str) -> None:
        """Deletes the chat and its messages, stopping any run (watchers see chat_deleted)."""
        self._call(self.chats.DeleteChat, chat_service_pb2.DeleteChatRequest(chat_id=chat_id))

    def send_message(
        self, chat_id: str, message: str, *, request_id: str | None = None
    ) -> chat_service_pb2.SendMessageResponse:
        """Starts a run with `message`; returns at once with the chat (running) and the stored message, whose
        seq is where to watch from."""
        return self._call(self.chats.SendMessage, _core.send_message_request(chat_id, message, request_id))

    def send_input(
        self,
        chat_id: str,
        message: str | None = None,
        *,
        tool_results: Collection[chat_pb2.ToolResult] = (),
        request_id: str | None = None,
    ) -> chat_pb2.Chat:
        """Answers a chat waiting for a person: text continues, "" skips (auto-reply), "exit" ends the
        conversation; or gives the results of its pending client tool calls."""
        request = _core.send_input_request(chat_id, message, tool_results, request_id)
        return self._call(self.chats.SendInput, request).chat

    def cancel_chat(self, chat_id: str) -> chat_pb2.Chat:
        """Stops the chat's run, even mid model call; the chat is ready again."""
        return self._call(self.chats.CancelChat, chat_service_pb2.CancelChatRequest(chat_id=chat_id)).chat

    def messages(self, chat_id: str, *, page_size: int = 0) -> Iterator[chat_pb2.Message]:
        """The chat's whole history in seq order, fetched page after page as the iteration goes."""
        request = chat_service_pb2.ListMessagesRequest(chat_id=chat_id, page_size=page_size)
        return self._pages(self.chats.ListMessages, request, "messages")

    def _pages(self, method: Callable[..., Any], request: Any, field: str) -> Iterator[Any]:
        while True:
            page = self._call(method, request)
            yield from getattr(page, field)
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def watch(
        self,
        chat_id: str,
        *,
        after_seq: int = 0,
        until_finished: bool = False,
        keep_alives: bool = False,
        timeout: float | None = None,
        **flags: bool,
    ) -> Iterator[chat_pb2.ChatEvent]:
        """The chat's events after `after_seq` (0: its whole history), then live ones as they happen.

        Reconnects when the stream is lost (the server restarting, say) and resumes after the last stored
        event yielded, so none is missed or repeated (see Reconnect for how long it keeps trying). Ends after
        chat_deleted, or with `until_finished` after the first run end (status completed or error). Keep-alives
        only with `keep_alives`; the server's shutdown notice never (the watch handles it). `timeout` bounds
        the whole watch (TimeoutError); `flags` are further WatchChatRequest switches (include_deltas=True
        where the server has it).
        """
        cursor = Cursor(chat_id, after_seq, until_finished, flags)
        deadline = None if timeout is None else time.monotonic() + timeout
        stream: Iterator[chat_service_pb2.WatchChatResponse] | None = None
        try:
            while not cursor.done:
                # A fresh budget for each event: the watch gives up only after that long with nothing at all.
                for attempt in tenacity.Retrying(**self.reconnect.options()):
                    with attempt:
                        if stream is None:
                            stream = self._open(cursor, deadline)
                        try:
                            event = self._next(stream, deadline)
                        except BaseException:
                            stream = None
                            raise
                if cursor.take(event, keep_alives):
                    yield event
        finally:
            if stream is not None:
                stream.cancel()  # type: ignore[attr-defined]  # a grpc streaming call; cancel ends it now

    def _open(self, cursor: Cursor, deadline: float | None) -> Iterator[chat_service_pb2.WatchChatResponse]:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("the watch's timeout passed")
        stream: Iterator[chat_service_pb2.WatchChatResponse] = self.chats.WatchChat(
            cursor.request(), metadata=self.metadata(), timeout=remaining
        )
        return stream

    @staticmethod
    def _next(stream: Iterator[chat_service_pb2.WatchChatResponse], deadline: float | None) -> chat_pb2.ChatEvent:
        try:
            return next(stream).event
        except StopIteration:
            raise StreamEnded() from None
        except grpc.RpcError as err:
            error = from_rpc_error(err)
            if error.code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                raise TimeoutError("the watch's timeout passed") from error
            raise error from err

    def wait_for(
        self, chat_id: str, status: StatusLike | Collection[StatusLike], *, timeout: float | None = None
    ) -> chat_pb2.Chat:
        """Blocks until the chat's status is `status` (or one of several), and returns the chat then read.
        Returns at once if it already is. TimeoutError after `timeout` seconds."""
        wanted = _core.wanted(status)
        chat = self.get_chat(chat_id)
        if chat.status in wanted:
            return chat
        for event in self.watch(chat_id, after_seq=chat.last_seq, timeout=timeout):
            if event.HasField("status_changed") and event.status_changed.status in wanted:
                return self.get_chat(chat_id)
            if event.HasField("chat_deleted"):
                break
        raise AgentokError(grpc.StatusCode.NOT_FOUND, f"chat {chat_id} was deleted while waited for", "CHAT_NOT_FOUND")
