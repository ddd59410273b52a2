import datetime

from agentok.v1 import chat_enums_pb2 as _chat_enums_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HumanInputTimeoutAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HUMAN_INPUT_TIMEOUT_ACTION_UNSPECIFIED: _ClassVar[HumanInputTimeoutAction]
    HUMAN_INPUT_TIMEOUT_ACTION_SKIP: _ClassVar[HumanInputTimeoutAction]
    HUMAN_INPUT_TIMEOUT_ACTION_END_RUN: _ClassVar[HumanInputTimeoutAction]
HUMAN_INPUT_TIMEOUT_ACTION_UNSPECIFIED: HumanInputTimeoutAction
HUMAN_INPUT_TIMEOUT_ACTION_SKIP: HumanInputTimeoutAction
HUMAN_INPUT_TIMEOUT_ACTION_END_RUN: HumanInputTimeoutAction

class Chat(_message.Message):
    __slots__ = ("id", "name", "from_type", "from_flow", "status", "error", "created_at", "updated_at", "input_prompt", "last_seq", "max_agent_turns", "human_input_timeout", "human_input_timeout_action", "input_deadline", "pending_tool_calls", "run_usage", "usage", "max_tokens_per_run")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_TYPE_FIELD_NUMBER: _ClassVar[int]
    FROM_FLOW_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    INPUT_PROMPT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_AGENT_TURNS_FIELD_NUMBER: _ClassVar[int]
    HUMAN_INPUT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HUMAN_INPUT_TIMEOUT_ACTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    PENDING_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    RUN_USAGE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_PER_RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    from_type: str
    from_flow: str
    status: _chat_enums_pb2.ChatStatus.Value
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    input_prompt: str
    last_seq: int
    max_agent_turns: int
    human_input_timeout: _duration_pb2.Duration
    human_input_timeout_action: HumanInputTimeoutAction
    input_deadline: _timestamp_pb2.Timestamp
    pending_tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    run_usage: Usage
    usage: Usage
    max_tokens_per_run: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., from_type: _Optional[str] = ..., from_flow: _Optional[str] = ..., status: _Optional[_Union[_chat_enums_pb2.ChatStatus.Value, str]] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., input_prompt: _Optional[str] = ..., last_seq: _Optional[int] = ..., max_agent_turns: _Optional[int] = ..., human_input_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., human_input_timeout_action: _Optional[_Union[HumanInputTimeoutAction, str]] = ..., input_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pending_tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., run_usage: _Optional[_Union[Usage, _Mapping]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., max_tokens_per_run: _Optional[int] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("id", "chat_id", "seq", "type", "sender", "receiver", "content", "created_at", "tool_calls", "tool_responses", "usage")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESPONSES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    chat_id: str
    seq: int
    type: _chat_enums_pb2.MessageType.Value
    sender: str
    receiver: str
    content: str
    created_at: _timestamp_pb2.Timestamp
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    tool_responses: _containers.RepeatedCompositeFieldContainer[ToolResult]
    usage: Usage
    def __init__(self, id: _Optional[str] = ..., chat_id: _Optional[str] = ..., seq: _Optional[int] = ..., type: _Optional[_Union[_chat_enums_pb2.MessageType.Value, str]] = ..., sender: _Optional[str] = ..., receiver: _Optional[str] = ..., content: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., tool_responses: _Optional[_Iterable[_Union[ToolResult, _Mapping]]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("call_id", "name", "arguments")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    arguments: str
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("call_id", "content", "is_error")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    content: str
    is_error: bool
    def __init__(self, call_id: _Optional[str] = ..., content: _Optional[str] = ..., is_error: _Optional[bool] = ...) -> None: ...

class ChatEvent(_message.Message):
    __slots__ = ("seq", "chat_id", "time", "message_added", "status_changed", "chat_deleted", "keep_alive", "server_shutdown", "message_delta")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ADDED_FIELD_NUMBER: _ClassVar[int]
    STATUS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    CHAT_DELETED_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    SERVER_SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_DELTA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    chat_id: str
    time: _timestamp_pb2.Timestamp
    message_added: Message
    status_changed: StatusChanged
    chat_deleted: ChatDeleted
    keep_alive: KeepAlive
    server_shutdown: ServerShutdown
    message_delta: MessageDelta
    def __init__(self, seq: _Optional[int] = ..., chat_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message_added: _Optional[_Union[Message, _Mapping]] = ..., status_changed: _Optional[_Union[StatusChanged, _Mapping]] = ..., chat_deleted: _Optional[_Union[ChatDeleted, _Mapping]] = ..., keep_alive: _Optional[_Union[KeepAlive, _Mapping]] = ..., server_shutdown: _Optional[_Union[ServerShutdown, _Mapping]] = ..., message_delta: _Optional[_Union[MessageDelta, _Mapping]] = ...) -> None: ...

class MessageDelta(_message.Message):
    __slots__ = ("draft_id", "sender", "text")
    DRAFT_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    draft_id: str
    sender: str
    text: str
    def __init__(self, draft_id: _Optional[str] = ..., sender: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ServerShutdown(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusChanged(_message.Message):
    __slots__ = ("status", "error", "input_prompt", "pending_tool_calls")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INPUT_PROMPT_FIELD_NUMBER: _ClassVar[int]
    PENDING_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    status: _chat_enums_pb2.ChatStatus.Value
    error: str
    input_prompt: str
    pending_tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    def __init__(self, status: _Optional[_Union[_chat_enums_pb2.ChatStatus.Value, str]] = ..., error: _Optional[str] = ..., input_prompt: _Optional[str] = ..., pending_tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ...) -> None: ...

class ChatDeleted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KeepAlive(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
