"""gRPC servicers: translate proto <-> domain, nothing else (rules live in domain/, SQL in storage/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from google.protobuf import json_format

from agentok.v1 import chat_service_pb2 as cs
from agentok.v1 import chat_service_pb2_grpc as cs_grpc
from agentok.v1 import flow_service_pb2 as fs
from agentok.v1 import flow_service_pb2_grpc as fs_grpc

from ..domain.chats import ChatService
from ..domain.flows import FlowService
from ..domain.keys import KeyService
from . import convert
from .rpc import server_stream, unary

Ctx: TypeAlias = grpc.aio.ServicerContext  # type: ignore[type-arg]


class ChatServicer(cs_grpc.ChatServiceServicer):
    def __init__(self, chats: ChatService, keys: KeyService | None) -> None:
        self.chats = chats
        self.keys = keys

    @unary
    async def ListChats(self, request: cs.ListChatsRequest, context: Ctx, owner: str) -> cs.ListChatsResponse:
        chats, token = await self.chats.list_chats(owner, request.page_size, request.page_token)
        return cs.ListChatsResponse(chats=[convert.chat(c) for c in chats], next_page_token=token)

    @unary
    async def GetChat(self, request: cs.GetChatRequest, context: Ctx, owner: str) -> cs.GetChatResponse:
        return cs.GetChatResponse(chat=convert.chat(await self.chats.get(owner, request.chat_id)))

    @unary
    async def CreateChat(self, request: cs.CreateChatRequest, context: Ctx, owner: str) -> cs.CreateChatResponse:
        chat = await self.chats.create(owner, request.name, request.from_type, request.from_flow)
        return cs.CreateChatResponse(chat=convert.chat(chat))

    @unary
    async def DeleteChat(self, request: cs.DeleteChatRequest, context: Ctx, owner: str) -> cs.DeleteChatResponse:
        await self.chats.delete(owner, request.chat_id)
        return cs.DeleteChatResponse()

    @unary
    async def SendMessage(self, request: cs.SendMessageRequest, context: Ctx, owner: str) -> cs.SendMessageResponse:
        chat, message = await self.chats.send_message(owner, request.chat_id, request.message)
        return cs.SendMessageResponse(chat=convert.chat(chat), message=convert.message(message))

    @unary
    async def ListMessages(self, request: cs.ListMessagesRequest, context: Ctx, owner: str) -> cs.ListMessagesResponse:
        messages, token = await self.chats.list_messages(owner, request.chat_id, request.page_size, request.page_token)
        return cs.ListMessagesResponse(messages=[convert.message(m) for m in messages], next_page_token=token)

    @unary
    async def SendInput(self, request: cs.SendInputRequest, context: Ctx, owner: str) -> cs.SendInputResponse:
        answer = request.message if request.HasField("message") else None
        return cs.SendInputResponse(chat=convert.chat(await self.chats.send_input(owner, request.chat_id, answer)))

    @server_stream
    async def WatchChat(
        self, request: cs.WatchChatRequest, context: Ctx, owner: str
    ) -> AsyncIterator[cs.WatchChatResponse]:
        async for event in await self.chats.watch(
            owner, request.chat_id, request.after_seq, until_finished=request.until_finished
        ):
            yield cs.WatchChatResponse(event=convert.event(event))


class FlowServicer(fs_grpc.FlowServiceServicer):
    def __init__(self, flows: FlowService, keys: KeyService | None) -> None:
        self.flows = flows
        self.keys = keys

    @unary
    async def CreateFlow(self, request: fs.CreateFlowRequest, context: Ctx, owner: str) -> fs.CreateFlowResponse:
        graph = json_format.MessageToDict(request.flow) if request.HasField("flow") else None
        flow = await self.flows.create(owner, request.name, graph)  # type: ignore[arg-type]
        return fs.CreateFlowResponse(flow=convert.flow(flow))

    @unary
    async def GetFlow(self, request: fs.GetFlowRequest, context: Ctx, owner: str) -> fs.GetFlowResponse:
        return fs.GetFlowResponse(flow=convert.flow(await self.flows.get(owner, request.flow_id)))

    @unary
    async def ListFlows(self, request: fs.ListFlowsRequest, context: Ctx, owner: str) -> fs.ListFlowsResponse:
        flows, token = await self.flows.list_flows(owner, request.page_size, request.page_token)
        return fs.ListFlowsResponse(flows=[convert.flow(f) for f in flows], next_page_token=token)

    @unary
    async def DeleteFlow(self, request: fs.DeleteFlowRequest, context: Ctx, owner: str) -> fs.DeleteFlowResponse:
        await self.flows.delete(owner, request.flow_id)
        return fs.DeleteFlowResponse()
