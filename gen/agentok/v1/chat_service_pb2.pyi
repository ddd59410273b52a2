import datetime

from agentok.v1 import chat_pb2 as _chat_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListChatsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListChatsResponse(_message.Message):
    __slots__ = ("chats", "next_page_token")
    CHATS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    chats: _containers.RepeatedCompositeFieldContainer[_chat_pb2.Chat]
    next_page_token: str
    def __init__(self, chats: _Optional[_Iterable[_Union[_chat_pb2.Chat, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetChatRequest(_message.Message):
    __slots__ = ("chat_id",)
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    chat_id: str
    def __init__(self, chat_id: _Optional[str] = ...) -> None: ...

class GetChatResponse(_message.Message):
    __slots__ = ("chat",)
    CHAT_FIELD_NUMBER: _ClassVar[int]
    chat: _chat_pb2.Chat
    def __init__(self, chat: _Optional[_Union[_chat_pb2.Chat, _Mapping]] = ...) -> None: ...

class CreateChatRequest(_message.Message):
    __slots__ = ("name", "from_type", "from_flow", "max_agent_turns", "human_input_timeout", "human_input_timeout_action", "request_id", "max_tokens_per_run")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_TYPE_FIELD_NUMBER: _ClassVar[int]
    FROM_FLOW_FIELD_NUMBER: _ClassVar[int]
    MAX_AGENT_TURNS_FIELD_NUMBER: _ClassVar[int]
    HUMAN_INPUT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HUMAN_INPUT_TIMEOUT_ACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_PER_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    from_type: str
    from_flow: str
    max_agent_turns: int
    human_input_timeout: _duration_pb2.Duration
    human_input_timeout_action: _chat_pb2.HumanInputTimeoutAction
    request_id: str
    max_tokens_per_run: int
    def __init__(self, name: _Optional[str] = ..., from_type: _Optional[str] = ..., from_flow: _Optional[str] = ..., max_agent_turns: _Optional[int] = ..., human_input_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., human_input_timeout_action: _Optional[_Union[_chat_pb2.HumanInputTimeoutAction, str]] = ..., request_id: _Optional[str] = ..., max_tokens_per_run: _Optional[int] = ...) -> None: ...

class CreateChatResponse(_message.Message):
    __slots__ = ("chat",)
    CHAT_FIELD_NUMBER: _ClassVar[int]
    chat: _chat_pb2.Chat
    def __init__(self, chat: _Optional[_Union[_chat_pb2.Chat, _Mapping]] = ...) -> None: ...

class DeleteChatRequest(_message.Message):
    __slots__ = ("chat_id",)
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    chat_id: str
    def __init__(self, chat_id: _Optional[str] = ...) -> None: ...

class DeleteChatResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SendMessageRequest(_message.Message):
    __slots__ = ("chat_id", "message", "request_id")
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    chat_id: str
    message: str
    request_id: str
    def __init__(self, chat_id: _Optional[str] = ..., message: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class SendMessageResponse(_message.Message):
    __slots__ = ("chat", "message")
    CHAT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    chat: _chat_pb2.Chat
    message: _chat_pb2.Message
    def __init__(self, chat: _Optional[_Union[_chat_pb2.Chat, _Mapping]] = ..., message: _Optional[_Union[_chat_pb2.Message, _Mapping]] = ...) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("chat_id", "page_size", "page_token")
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    chat_id: str
    page_size: int
    page_token: str
    def __init__(self, chat_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.Message]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[_chat_pb2.Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SendInputRequest(_message.Message):
    __slots__ = ("chat_id", "message", "request_id", "tool_results")
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    chat_id: str
    message: str
    request_id: str
    tool_results: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ToolResult]
    def __init__(self, chat_id: _Optional[str] = ..., message: _Optional[str] = ..., request_id: _Optional[str] = ..., tool_results: _Optional[_Iterable[_Union[_chat_pb2.ToolResult, _Mapping]]] = ...) -> None: ...

class CancelChatRequest(_message.Message):
    __slots__ = ("chat_id",)
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    chat_id: str
    def __init__(self, chat_id: _Optional[str] = ...) -> None: ...

class CancelChatResponse(_message.Message):
    __slots__ = ("chat",)
    CHAT_FIELD_NUMBER: _ClassVar[int]
    chat: _chat_pb2.Chat
    def __init__(self, chat: _Optional[_Union[_chat_pb2.Chat, _Mapping]] = ...) -> None: ...

class SendInputResponse(_message.Message):
    __slots__ = ("chat",)
    CHAT_FIELD_NUMBER: _ClassVar[int]
    chat: _chat_pb2.Chat
    def __init__(self, chat: _Optional[_Union[_chat_pb2.Chat, _Mapping]] = ...) -> None: ...

class WatchChatRequest(_message.Message):
    __slots__ = ("chat_id", "after_seq", "until_finished", "include_deltas")
    CHAT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FINISHED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELTAS_FIELD_NUMBER: _ClassVar[int]
    chat_id: str
    after_seq: int
    until_finished: bool
    include_deltas: bool
    def __init__(self, chat_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., until_finished: _Optional[bool] = ..., include_deltas: _Optional[bool] = ...) -> None: ...

class WatchChatResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _chat_pb2.ChatEvent
    def __init__(self, event: _Optional[_Union[_chat_pb2.ChatEvent, _Mapping]] = ...) -> None: ...
