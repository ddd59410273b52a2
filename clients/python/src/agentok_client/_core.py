"""What the sync and the asyncio client share: credentials as call metadata, the channel's retry policy, the
requests each method sends, statuses by name, and the cursor that lets a watch resume with no gap or repeat.

Both clients return the generated proto messages themselves (agentok.v1's Chat, Message, ChatEvent, ...):
they are typed (the .pyi stubs), they are the API's contract, and fields the proto gains reach callers with
no release of this package.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import tenacity
from google.protobuf import struct_pb2

from agentok.v1 import (
    chat_enums_pb2,
    chat_pb2,
    chat_service_pb2,
    chat_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
)

from ._errors import AgentokError

# The chat status enum (agentok.v1.ChatStatus.Value): its Name() and Value() map numbers and names.
Status = chat_enums_pb2.ChatStatus.Value
# A chat status as the proto's enum value or its name ("completed", as REST prints it).
StatusLike: TypeAlias = "chat_enums_pb2.ChatStatus.Value | str"
Token: TypeAlias = str | Callable[[], str]

FINISHED = frozenset({Status.completed, Status.error})
# The kinds of event the server stores under a seq: the ones a resuming watch must neither miss nor repeat.
# Keep-alives repeat the latest seq, server_shutdown names it; other kinds (live-only ones a request may ask
# for) are passed through without moving the cursor.
STORED_KINDS = frozenset({"message_added", "status_changed", "chat_deleted"})
HIDDEN_KINDS = frozenset({"keep_alive", "server_shutdown"})

DEFAULT_TIMEOUT = 30.0
_RETRIED_SERVICES = ("agentok.v1.ChatService", "agentok.v1.FlowService")


def status(value: StatusLike) -> chat_enums_pb2.ChatStatus.Value:
    """The enum value of a status given as a value or a name (ValueError for a name the API does not have)."""
    return Status.Value(value) if isinstance(value, str) else value


def wanted(given: StatusLike | Collection[StatusLike]) -> frozenset[chat_enums_pb2.ChatStatus.Value]:
    """The statuses a wait_for waits for: one, or any of several."""
    many = [given] if isinstance(given, str | int) else list(given)
    return frozenset(status(one) for one in many)


def call_metadata(api_key: str | None, token: Token | None) -> Callable[[], tuple[tuple[str, str], ...]]:
    """The credential every call sends: an API key (x-api-key) or a bearer token, which may be a callable
    asked before each call (so a token that expires can be refreshed)."""
    if (api_key is None) == (token is None):
        raise ValueError("give exactly one of api_key and token")
    if api_key is not None:
        key_metadata = (("x-api-key", api_key),)
        return lambda: key_metadata
    assert token is not None
    current: Callable[[], str] = token if callable(token) else (lambda: token)
    return lambda: (("authorization", f"Bearer {current()}"),)


def channel_options(extra: Mapping[str, Any] | None = None) -> list[tuple[str, Any]]:
    """gRPC's own retry policy for unary calls refused with UNAVAILABLE before any answer (a replica or the
    edge briefly away). Writes are safe to repeat: each carries a request_id (ours unless the caller gave one),
    so the server returns the first result instead of doing the work twice."""
    config = {
        "methodConfig": [
            {
                "name": [{"service": name} for name in _RETRIED_SERVICES],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(config)), *(extra or {}).items()]


class Base:
    """What the blocking and the asyncio client both hold: the channel (grpc's or grpc.aio's, made by the
    `secure` or `insecure` factory given), the credential, the unary calls' timeout, the watch's reconnect
    policy, and the generated stubs (for calls the clients do not wrap; send metadata() with them)."""

    def __init__(
        self,
        target: str,
        factories: tuple[Callable[..., Any], Callable[..., Any]],
        credentials: grpc.ChannelCredentials | None,
        options: Mapping[str, Any] | None,
        api_key: str | None,
        token: Token | None,
        timeout: float,
        reconnect: Reconnect | None,
    ) -> None:
        self._metadata = call_metadata(api_key, token)
        self.timeout = timeout
        self.reconnect = reconnect or Reconnect()
        secure, insecure = factories
        opts = channel_options(options)
        self.channel = secure(target, credentials, opts) if credentials else insecure(target, opts)
        self.chats = chat_service_pb2_grpc.ChatServiceStub(self.channel)
        self.flows = flow_service_pb2_grpc.FlowServiceStub(self.channel)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata()


def request_id(given: str | None) -> str:
    return given if given else str(uuid.uuid4())


def create_flow_request(
    flow: Mapping[str, Any] | struct_pb2.Struct, name: str, rid: str | None
) -> flow_service_pb2.CreateFlowRequest:
    graph = flow if isinstance(flow, struct_pb2.Struct) else _struct(flow)
    return flow_service_pb2.CreateFlowRequest(name=name, flow=graph, request_id=request_id(rid))


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    graph = struct_pb2.Struct()
    graph.update(value)
    return graph


def create_chat_request(
    flow_id: str,
    name: str,
    max_agent_turns: int,
    human_input_timeout: datetime.timedelta | None,
    human_input_timeout_action: chat_pb2.HumanInputTimeoutAction | str | None,
    rid: str | None,
) -> chat_service_pb2.CreateChatRequest:
    request = chat_service_pb2.CreateChatRequest(
        name=name,
        from_type="flow",
        from_flow=flow_id,
        max_agent_turns=max_agent_turns,
        human_input_timeout_action=human_input_timeout_action,
        request_id=request_id(rid),
    )
    if human_input_timeout is not None:
        request.human_input_timeout.FromTimedelta(human_input_timeout)
    return request


def send_message_request(chat_id: str, message: str, rid: str | None) -> chat_service_pb2.SendMessageRequest:
    return chat_service_pb2.SendMessageRequest(chat_id=chat_id, message=message, request_id=request_id(rid))


def send_input_request(
    chat_id: str, message: str | None, tool_results: Collection[chat_pb2.ToolResult], rid: str | None
) -> chat_service_pb2.SendInputRequest:
    """`message` None sends none (for tool_results alone); "" skips, "exit" ends the conversation."""
    request = chat_service_pb2.SendInputRequest(chat_id=chat_id, tool_results=tool_results, request_id=request_id(rid))
    if message is not None:
        request.message = message
    return request


@dataclass(frozen=True)
class Reconnect:
    """How a watch comes back after losing its stream (the server restarting or killed, the edge away, the
    network: see _worth_reconnecting): tenacity's exponential backoff with jitter, giving up after
    `give_up_after` seconds without getting an event (the budget starts again with every event received)."""

    initial: float = 0.1
    maximum: float = 2.0
    give_up_after: float = 60.0

    def options(self) -> dict[str, Any]:
        """Keyword arguments of a tenacity.Retrying (or AsyncRetrying) for one wait for the next event."""
        return {
            "retry": tenacity.retry_if_exception(_worth_reconnecting),
            "wait": tenacity.wait_exponential_jitter(initial=self.initial, max=self.maximum),
            "stop": tenacity.stop_after_delay(self.give_up_after),
            "reraise": True,
        }


class StreamEnded(Exception):
    """The stream ended cleanly before the watch was done (after the server's shutdown event, say)."""


def _worth_reconnecting(err: BaseException) -> bool:
    """UNAVAILABLE, or a stream cut with no answer at all: a server killed mid-stream makes Envoy reset it,
    which gRPC reports as INTERNAL with no details, whereas every refusal of the service or its edge carries an
    ErrorInfo reason (an INTERNAL with one is the server's own answer, not retried)."""
    if isinstance(err, StreamEnded):
        return True
    if not isinstance(err, AgentokError):
        return False
    return err.code == grpc.StatusCode.UNAVAILABLE or (err.code == grpc.StatusCode.INTERNAL and not err.reason)


class Cursor:
    """Where a watch is: the seq of the last stored event it yielded. Each reconnection asks for the events
    after it, and a stored event at or before it is never yielded twice."""

    def __init__(self, chat_id: str, after_seq: int, until_finished: bool, flags: Mapping[str, bool]) -> None:
        self.chat_id = chat_id
        self.seq = after_seq
        self.until_finished = until_finished
        self.flags = dict(flags)
        self.done = False

    def request(self) -> chat_service_pb2.WatchChatRequest:
        return chat_service_pb2.WatchChatRequest(
            chat_id=self.chat_id, after_seq=self.seq, until_finished=self.until_finished, **self.flags
        )

    def take(self, event: chat_pb2.ChatEvent, keep_alives: bool) -> bool:
        """Whether to yield `event`; moves the cursor past it, and marks the watch done at its last event."""
        kind = event.WhichOneof("kind")
        if kind in STORED_KINDS:
            if event.seq <= self.seq:
                return False  # already yielded before a reconnection
            self.seq = event.seq
            self.done = kind == "chat_deleted" or (
                self.until_finished and kind == "status_changed" and event.status_changed.status in FINISHED
            )
            return True
        if kind in HIDDEN_KINDS:
            return keep_alives and kind == "keep_alive"
        return True
