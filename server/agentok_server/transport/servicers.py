"""gRPC servicers: translate proto <-> domain, nothing else (rules live in domain/, SQL in storage/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import TypeAlias, TypeVar

import grpc

from agentok.v1 import api_key_service_pb2 as ks
from agentok.v1 import api_key_service_pb2_grpc
from agentok.v1 import chat_service_pb2 as cs
from agentok.v1 import chat_service_pb2_grpc as cs_grpc
from agentok.v1 import flow_service_pb2 as fs
from agentok.v1 import flow_service_pb2_grpc as fs_grpc
from agentok.v1 import tool_service_pb2 as ts
from agentok.v1 import tool_service_pb2_grpc as ts_grpc

from ..domain.chats import ChatService
from ..domain.errors import invalid_field
from ..domain.flows import FlowService
from ..domain.idempotency import Idempotency
from ..domain.keys import KeyService
from ..domain.model import ChatEvent, Identity
from ..domain.tools import ToolService
from . import convert
from .rpc import Authenticator, server_stream, unary

Ctx: TypeAlias = grpc.aio.ServicerContext  # type: ignore[type-arg]
_Retryable = TypeVar(
    "_Retryable",
    cs.CreateChatRequest,
    cs.SendMessageRequest,
    cs.SendInputRequest,
    fs.CreateFlowRequest,
    ts.CreateToolRequest,
)


def _without_request_id(request: _Retryable) -> bytes:
    """The request as a retry is compared (AIP-155): its deterministic serialization without the request_id,
    and without fields this build does not know, so REST and gRPC forms of one request compare equal."""
    body = type(request)()
    body.CopyFrom(request)
    body.ClearField("request_id")
    body.DiscardUnknownFields()
    return body.SerializeToString(deterministic=True)


class ChatServicer(cs_grpc.ChatServiceServicer):
    def __init__(self, chats: ChatService, idempotency: Idempotency, auth: Authenticator | None) -> None:
        self.chats = chats
        self.idempotency = idempotency
        self.auth = auth

    @unary
    async def ListChats(self, request: cs.ListChatsRequest, context: Ctx, identity: Identity) -> cs.ListChatsResponse:
        chats, token = await self.chats.list_chats(identity.owner, request.page_size, request.page_token)
        return cs.ListChatsResponse(chats=[convert.chat(c) for c in chats], next_page_token=token)

    @unary
    async def GetChat(self, request: cs.GetChatRequest, context: Ctx, identity: Identity) -> cs.GetChatResponse:
        return cs.GetChatResponse(chat=convert.chat(await self.chats.get(identity.owner, request.chat_id)))

    @unary
    async def CreateChat(
        self, request: cs.CreateChatRequest, context: Ctx, identity: Identity
    ) -> cs.CreateChatResponse:
        async def work() -> bytes:
            chat = await self.chats.create(
                identity.owner,
                request.name,
                request.from_type,
                request.from_flow,
                max_agent_turns=request.max_agent_turns,
                input_timeout_seconds=(
                    request.human_input_timeout.seconds + request.human_input_timeout.nanos / 1e9
                    if request.HasField("human_input_timeout")
                    else None
                ),
                input_timeout_action=convert.timeout_action_from_proto(request.human_input_timeout_action),
                max_tokens_per_run=request.max_tokens_per_run,
            )
            return cs.CreateChatResponse(chat=convert.chat(chat)).SerializeToString()

        response = await self.idempotency.once(
            identity.owner, "CreateChat", request.request_id, work, body=_without_request_id(request)
        )
        return cs.CreateChatResponse.FromString(response)

    @unary
    async def DeleteChat(
        self, request: cs.DeleteChatRequest, context: Ctx, identity: Identity
    ) -> cs.DeleteChatResponse:
        await self.chats.delete(identity.owner, request.chat_id)
        return cs.DeleteChatResponse()

    @unary
    async def SendMessage(
        self, request: cs.SendMessageRequest, context: Ctx, identity: Identity
    ) -> cs.SendMessageResponse:
        async def work() -> bytes:
            chat, message = await self.chats.send_message(identity.owner, request.chat_id, request.message)
            return cs.SendMessageResponse(chat=convert.chat(chat), message=convert.message(message)).SerializeToString()

        response = await self.idempotency.once(
            identity.owner,
            "SendMessage",
            request.request_id,
            work,
            body=_without_request_id(request),
            scope=request.chat_id,
        )
        return cs.SendMessageResponse.FromString(response)

    @unary
    async def ListMessages(
        self, request: cs.ListMessagesRequest, context: Ctx, identity: Identity
    ) -> cs.ListMessagesResponse:
        messages, token = await self.chats.list_messages(
            identity.owner, request.chat_id, request.page_size, request.page_token
        )
        return cs.ListMessagesResponse(messages=[convert.message(m) for m in messages], next_page_token=token)

    @unary
    async def SendInput(self, request: cs.SendInputRequest, context: Ctx, identity: Identity) -> cs.SendInputResponse:
        answer = request.message if request.HasField("message") else None

        async def work() -> bytes:
            results = convert.tool_results_from_proto(request.tool_results)
            chat = await self.chats.send_input(identity.owner, request.chat_id, answer, results)
            return cs.SendInputResponse(chat=convert.chat(chat)).SerializeToString()

        response = await self.idempotency.once(
            identity.owner,
            "SendInput",
            request.request_id,
            work,
            body=_without_request_id(request),
            scope=request.chat_id,
        )
        return cs.SendInputResponse.FromString(response)

    @unary
    async def CancelChat(
        self, request: cs.CancelChatRequest, context: Ctx, identity: Identity
    ) -> cs.CancelChatResponse:
        return cs.CancelChatResponse(chat=convert.chat(await self.chats.cancel(identity.owner, request.chat_id)))

    @server_stream
    async def WatchChat(
        self, request: cs.WatchChatRequest, context: Ctx, identity: Identity
    ) -> AsyncIterator[cs.WatchChatResponse]:
        events = await self.chats.watch(
            identity.owner,
            request.chat_id,
            request.after_seq,
            until_finished=request.until_finished,
            deltas=request.include_deltas,
        )
        # The chat exists and is the caller's: answer the headers now (HTTP 200 and text/event-stream through
        # Envoy), so a client with a read timeout does not wait for the first event or keep-alive.
        await context.send_initial_metadata(())
        async for event in events:
            yield _watch_response(event)


# The hub hands every watcher of a chat the same event object: its message is converted once, not once per
# watcher (with 10,000 watchers that was most of the fan-out's time). Keyed by id() with the event kept beside
# its response, so an id is never reused while it is in here; a few recent events are enough, since watchers
# take a burst's events in the same order.
_RECENT_EVENTS = 64
_responses: dict[int, tuple[ChatEvent, cs.WatchChatResponse]] = {}


def _watch_response(event: ChatEvent) -> cs.WatchChatResponse:
    known = _responses.get(id(event))
    if known is not None and known[0] is event:
        return known[1]  # shared read-only: grpc only serializes it
    response = cs.WatchChatResponse(event=convert.event(event))
    if len(_responses) >= _RECENT_EVENTS:
        del _responses[next(iter(_responses))]
    _responses[id(event)] = (event, response)
    return response


class FlowServicer(fs_grpc.FlowServiceServicer):
    def __init__(self, flows: FlowService, idempotency: Idempotency, auth: Authenticator | None) -> None:
        self.flows = flows
        self.idempotency = idempotency
        self.auth = auth

    @unary
    async def CreateFlow(
        self, request: fs.CreateFlowRequest, context: Ctx, identity: Identity
    ) -> fs.CreateFlowResponse:
        async def work() -> bytes:
            graph = convert.struct_to_dict(request.flow) if request.HasField("flow") else None
            flow = await self.flows.create(identity.owner, request.name, graph)  # type: ignore[arg-type]
            return fs.CreateFlowResponse(flow=convert.flow(flow)).SerializeToString()

        response = await self.idempotency.once(
            identity.owner, "CreateFlow", request.request_id, work, body=_without_request_id(request)
        )
        return fs.CreateFlowResponse.FromString(response)

    @unary
    async def GetFlow(self, request: fs.GetFlowRequest, context: Ctx, identity: Identity) -> fs.GetFlowResponse:
        return fs.GetFlowResponse(flow=convert.flow(await self.flows.get(identity.owner, request.flow_id)))

    @unary
    async def ListFlows(self, request: fs.ListFlowsRequest, context: Ctx, identity: Identity) -> fs.ListFlowsResponse:
        flows, token = await self.flows.list_flows(identity.owner, request.page_size, request.page_token)
        return fs.ListFlowsResponse(flows=[convert.flow(f) for f in flows], next_page_token=token)

    @unary
    async def DeleteFlow(
        self, request: fs.DeleteFlowRequest, context: Ctx, identity: Identity
    ) -> fs.DeleteFlowResponse:
        await self.flows.delete(identity.owner, request.flow_id)
        return fs.DeleteFlowResponse()


class ToolServicer(ts_grpc.ToolServiceServicer):
    def __init__(self, tools: ToolService, idempotency: Idempotency, auth: Authenticator | None) -> None:
        self.tools = tools
        self.idempotency = idempotency
        self.auth = auth

    @unary
    async def CreateTool(
        self, request: ts.CreateToolRequest, context: Ctx, identity: Identity
    ) -> ts.CreateToolResponse:
        async def work() -> bytes:
            tool = await self.tools.create(identity.owner, convert.tool_draft(request), tool_id=request.tool_id)
            return ts.CreateToolResponse(tool=convert.tool(tool)).SerializeToString()

        response = await self.idempotency.once(
            identity.owner, "CreateTool", request.request_id, work, body=_without_request_id(request)
        )
        return ts.CreateToolResponse.FromString(response)

    @unary
    async def GetTool(self, request: ts.GetToolRequest, context: Ctx, identity: Identity) -> ts.GetToolResponse:
        return ts.GetToolResponse(tool=convert.tool(await self.tools.get(identity.owner, request.tool_id)))

    @unary
    async def ListTools(self, request: ts.ListToolsRequest, context: Ctx, identity: Identity) -> ts.ListToolsResponse:
        tools, token = await self.tools.list_tools(identity.owner, request.page_size, request.page_token)
        return ts.ListToolsResponse(tools=[convert.tool(t) for t in tools], next_page_token=token)

    @unary
    async def UpdateTool(
        self, request: ts.UpdateToolRequest, context: Ctx, identity: Identity
    ) -> ts.UpdateToolResponse:
        tool = await self.tools.update(
            identity.owner, request.tool_id, convert.tool_draft(request.tool), list(request.update_mask.paths)
        )
        return ts.UpdateToolResponse(tool=convert.tool(tool))

    @unary
    async def DeleteTool(
        self, request: ts.DeleteToolRequest, context: Ctx, identity: Identity
    ) -> ts.DeleteToolResponse:
        await self.tools.delete(identity.owner, request.tool_id)
        return ts.DeleteToolResponse()


class ApiKeyServicer(api_key_service_pb2_grpc.ApiKeyServiceServicer):
    def __init__(self, keys: KeyService, auth: Authenticator | None) -> None:
        self.keys = keys
        self.auth = auth

    @unary
    async def CreateApiKey(
        self, request: ks.CreateApiKeyRequest, context: Ctx, identity: Identity
    ) -> ks.CreateApiKeyResponse:
        self.keys.require_key_manager(identity)
        if request.HasField("expire_time"):
            # The old name of expires_at: ignoring it would mint a key that never expires.
            raise invalid_field("expire_time", "was renamed to expires_at: send expires_at instead")
        expires_at = request.expires_at.ToDatetime(tzinfo=UTC) if request.HasField("expires_at") else None
        key, secret = await self.keys.create(
            identity.owner,
            request.name,
            scope=convert.scope_from_proto(request.scope),
            expires_at=expires_at,
            creator=identity,
        )
        return ks.CreateApiKeyResponse(api_key=convert.api_key(key), secret=secret)

    @unary
    async def ListApiKeys(
        self, request: ks.ListApiKeysRequest, context: Ctx, identity: Identity
    ) -> ks.ListApiKeysResponse:
        self.keys.require_key_manager(identity)
        keys, token = await self.keys.list_for(identity.owner, request.page_size, request.page_token)
        return ks.ListApiKeysResponse(api_keys=[convert.api_key(k) for k in keys], next_page_token=token)

    @unary
    async def DeleteApiKey(
        self, request: ks.DeleteApiKeyRequest, context: Ctx, identity: Identity
    ) -> ks.DeleteApiKeyResponse:
        self.keys.require_key_manager(identity)
        await self.keys.revoke(request.key_id, owner=identity.owner)
        return ks.DeleteApiKeyResponse()
