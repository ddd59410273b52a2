"""A Python client of agentok-grpc: `Client` (blocking) and `AsyncClient` (asyncio) over native gRPC.

    from agentok_client import Client

    with Client("127.0.0.1:8080", api_key="atk_...") as client:
        flow = client.create_flow({"nodes": [...], "edges": [...]}, "Hello flow")
        chat = client.create_chat(flow.id, "My Chatbot")
        client.send_message(chat.id, "Hello!")
        chat = client.wait_for(chat.id, "wait_for_human_input")

Methods return the API's own proto messages (agentok.v1's Chat, Message, ChatEvent); failures raise
AgentokError with the gRPC code and the ErrorInfo reason.
"""

from agentok.v1.chat_enums_pb2 import ChatStatus, MessageType
from agentok.v1.chat_pb2 import Chat, ChatEvent, Message, ToolResult
from agentok.v1.flow_pb2 import Flow

from ._aio import AsyncClient
from ._core import FINISHED, Reconnect, Status, StatusLike
from ._errors import AgentokError, FieldViolation
from ._sync import Client

# SendInput's two special answers: skip the turn (AutoGen's empty auto-reply) and end the conversation.
SKIP = ""
EXIT = "exit"

__all__ = [
    "EXIT",
    "FINISHED",
    "SKIP",
    "AgentokError",
    "AsyncClient",
    "Chat",
    "ChatEvent",
    "ChatStatus",
    "Client",
    "FieldViolation",
    "Flow",
    "Message",
    "MessageType",
    "Reconnect",
    "Status",
    "StatusLike",
    "ToolResult",
]
