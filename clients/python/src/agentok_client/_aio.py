"""The asyncio client: Client's methods as coroutines (and async iterators), over a grpc.aio channel."""

from __future__ import annotations

import datetime
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio
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


class AsyncClient(Base):
    """Client for asyncio: the same methods and arguments (see Client for what each does), awaited, and
    `messages`, `list_chats`, `list_flows` and `watch` as async iterators. Create it inside the event loop it
    is used in; `async with`, or await close()."""

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
        factories = (grpc.aio.secure_channel, grpc.aio.insecure_channel)
        super().__init__(target, factories, credentials, options, api_key, token, timeout, reconnect)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def _call(self, method: Callable[..., Awaitable[R]], request: Any) -> R:
        try:
            return await method(request, metadata=self.metadata(), timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err

    async def create_flow(
        self, flow: Mapping[str, Any] | struct_pb2.Struct, name: str = "", *, request_id: str | None = None
    ) -> flow_pb2.Flow:
        return (await self._call(self.flows.CreateFlow, _core.create_flow_request(flow, name, request_id))).flow

    async def get_flow(self, flow_id: str) -> flow_pb2.Flow:
        return (await self._call(self.flows.GetFlow, flow_service_pb2.GetFlowRequest(flow_id=flow_id))).flow

    def list_flows(self, *, page_size: int = 0) -> AsyncIterator[flow_pb2.Flow]:
        return self._pages(self.flows.ListFlows, flow_service_pb2.ListFlowsRequest(page_size=page_size), "flows")

    async def delete_flow(self, flow_id: str) -> None:
        await self._call(self.flows.DeleteFlow, flow_service_pb2.DeleteFlowRequest(flow_id=flow_id))

    async def create_chat(
        self,
        flow_id: str,
        name: str = "",
        *,
        max_agent_turns: int = 0,
        human_input_timeout: datetime.timedelta | None = None,
        human_input_timeout_action: chat_pb2.HumanInputTimeoutAction | str | None = None,
        request_id: str | None = None,
    ) -> chat_pb2.Chat:
        request = _core.create_chat_request(
            flow_id, name, max_agent_turns, human_input_timeout, human_input_timeout_action, request_id
        )
        return (await self._call(self.chats.CreateChat, request)).chat

    async def get_chat(self, chat_id: str) -> chat_pb2.Chat:
        return (await self._call(self.chats.GetChat, chat_service_pb2.GetChatRequest(chat_id=chat_id))).chat

    def list_chats(self, *, page_size: int = 0) -> AsyncIterator[chat_pb2.Chat]:
        return self._pages(self.chats.ListChats, chat_service_pb2.ListChatsRequest(page_size=page_size), "chats")

    async def delete_chat(self, chat_id: str) -> None:
        await self._call(self.chats.DeleteChat, chat_service_pb2.DeleteChatRequest(chat_id=chat_id))

    async def send_message(
        self, chat_id: str, message: str, *, request_id: str | None = None
    ) -> chat_service_pb2.SendMessageResponse:
        return await self._call(self.chats.SendMessage, _core.send_message_request(chat_id, message, request_id))

    async def send_input(
        self,
        chat_id: str,
        message: str | None = None,
        *,
        tool_results: Collection[chat_pb2.ToolResult] = (),
        request_id: str | None = None,
    ) -> chat_pb2.Chat:
        request = _core.send_input_request(chat_id, message, tool_results, request_id)
        return (await self._call(self.chats.SendInput, request)).chat

    async def cancel_chat(self, chat_id: str) -> chat_pb2.Chat:
        return (await self._call(self.chats.CancelChat, chat_service_pb2.CancelChatRequest(chat_id=chat_id))).chat

    def messages(self, chat_id: str, *, page_size: int = 0) -> AsyncIterator[chat_pb2.Message]:
        request = chat_service_pb2.ListMessagesRequest(chat_id=chat_id, page_size=page_size)
        return self._pages(self.chats.ListMessages, request, "messages")

    async def _pages(
        self, method: Callable[..., Awaitable[Any]], request: Any, field: str
    ) -> AsyncGenerator[Any, None]:
        while True:
            page = await self._call(method, request)
            for item in getattr(page, field):
                yield item
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def watch(
        self,
        chat_id: str,
        *,
        after_seq: int = 0,
        until_finished: bool = False,
        keep_alives: bool = False,
        **flags: bool,
    ) -> AsyncGenerator[chat_pb2.ChatEvent, None]:
        """See Client.watch; bound it with asyncio.timeout() instead of a timeout argument."""
        cursor = Cursor(chat_id, after_seq, until_finished, flags)
        stream: Any = None  # a grpc.aio.UnaryStreamCall
        try:
            while not cursor.done:
                async for attempt in tenacity.AsyncRetrying(**self.reconnect.options()):
                    with attempt:
                        if stream is None:
                            stream = self._open(cursor)
                        try:
                            event = await self._next(stream)
                        except BaseException:
                            stream = None
                            raise
                if cursor.take(event, keep_alives):
                    yield event
        finally:
            if stream is not None:
                stream.cancel()

    def _open(self, cursor: Cursor) -> Any:
        return self.chats.WatchChat(cursor.request(), metadata=self.metadata())

    @staticmethod
    async def _next(stream: Any) -> chat_pb2.ChatEvent:
        try:
            item = await stream.read()
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
        if item is grpc.aio.EOF:
            raise StreamEnded()
        event: chat_pb2.ChatEvent = item.event
        return event

    async def wait_for(self, chat_id: str, status: StatusLike | Collection[StatusLike]) -> chat_pb2.Chat:
        """See Client.wait_for; bound it with asyncio.timeout() instead of a timeout argument."""
        wanted = _core.wanted(status)
        chat = await self.get_chat(chat_id)
        if chat.status in wanted:
            return chat
        async with aclosing(self.watch(chat_id, after_seq=chat.last_seq)) as events:
            async for event in events:
                if event.HasField("status_changed") and event.status_changed.status in wanted:
                    return await self.get_chat(chat_id)
                if event.HasField("chat_deleted"):
                    break
        raise AgentokError(grpc.StatusCode.NOT_FOUND, f"chat {chat_id} was deleted while waited for", "CHAT_NOT_FOUND")
