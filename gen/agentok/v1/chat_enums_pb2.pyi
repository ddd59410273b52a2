from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ChatStatus(_message.Message):
    __slots__ = ()
    class Value(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VALUE_UNSPECIFIED: _ClassVar[ChatStatus.Value]
        ready: _ClassVar[ChatStatus.Value]
        running: _ClassVar[ChatStatus.Value]
        wait_for_human_input: _ClassVar[ChatStatus.Value]
        completed: _ClassVar[ChatStatus.Value]
        error: _ClassVar[ChatStatus.Value]
    VALUE_UNSPECIFIED: ChatStatus.Value
    ready: ChatStatus.Value
    running: ChatStatus.Value
    wait_for_human_input: ChatStatus.Value
    completed: ChatStatus.Value
    error: ChatStatus.Value
    def __init__(self) -> None: ...

class MessageType(_message.Message):
    __slots__ = ()
    class Value(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VALUE_UNSPECIFIED: _ClassVar[MessageType.Value]
        user: _ClassVar[MessageType.Value]
        assistant: _ClassVar[MessageType.Value]
        system: _ClassVar[MessageType.Value]
        tool: _ClassVar[MessageType.Value]
    VALUE_UNSPECIFIED: MessageType.Value
    user: MessageType.Value
    assistant: MessageType.Value
    system: MessageType.Value
    tool: MessageType.Value
    def __init__(self) -> None: ...
