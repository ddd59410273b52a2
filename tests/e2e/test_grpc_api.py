"""Native gRPC clients through Envoy: the same API, statuses with details, and WatchChat resume."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentok.v1 import chat_enums_pb2, chat_service_pb2

from ..conftest import Keys
from ..support.api import Grpc, real_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm
from ..support.stack import Stack

Status = chat_enums_pb2.ChatStatus.Value


@pytest.fixture()
def client(stack: Stack, keys: Keys) -> Iterator[Grpc]:
    c = Grpc(stack.edge_target, keys.alice)
    yield c
    c.close()


def _until_status(stream: grpc.Future, statuses: set[int]) -> list[chat_service_pb2.WatchChatResponse]:
    events = []
    for item in stream:
        if item.event.HasField("keep_alive"):
            continue
        events.append(item)
        if item.event.HasField("status_changed") and item.event.status_changed.status in statuses:
            return events
    raise AssertionError("stream ended early")


def test_full_session_and_watch_resume(client: Grpc, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, ["one", "two"])
    flow_id = client.create_flow(with_model(real_flow("13"), model))
    chat = client.create_chat(flow_id)
    assert chat.status == Status.ready

    stream = client.watch(chat.id)
    sent = client.chats.SendMessage(
        chat_service_pb2.SendMessageRequest(chat_id=chat.id, message="hi"),
        metadata=client.metadata,
        timeout=10,
    )
    assert sent.chat.status == Status.running and sent.message.seq == 2
    first = _until_status(stream, {Status.wait_for_human_input})
    stream.cancel()  # the client goes away mid-conversation...
    assert [e.event.seq for e in first] == [1, 2, 3, 4]
    assert first[2].event.message_added.content == "one"
    assert first[3].event.status_changed.input_prompt.startswith("Replying as UserProxy.")

    reply = client.chats.SendInput(
        chat_service_pb2.SendInputRequest(chat_id=chat.id, message="more"),
        metadata=client.metadata,
        timeout=10,
    )
    assert reply.chat.status == Status.running

    # ...and reconnects with the last seq it saw: nothing missed, nothing repeated.
    resumed = _until_status(client.watch(chat.id, after_seq=first[-1].event.seq), {Status.wait_for_human_input})
    seqs = [e.event.seq for e in resumed]
    assert seqs == list(range(5, 5 + len(seqs)))
    contents = [e.event.message_added.content for e in resumed if e.event.HasField("message_added")]
    assert contents == ["more", "two"]

    listed = client.chats.ListMessages(
        chat_service_pb2.ListMessagesRequest(chat_id=chat.id, page_size=2),
        metadata=client.metadata,
        timeout=10,
    )
    assert [m.content for m in listed.messages] == ["hi", "one"] and listed.next_page_token
    rest_of = client.chats.ListMessages(
        chat_service_pb2.ListMessagesRequest(chat_id=chat.id, page_token=listed.next_page_token),
        metadata=client.metadata,
        timeout=10,
    )
    assert [m.content for m in rest_of.messages] == ["more", "two"] and not rest_of.next_page_token

    client.chats.SendInput(
        chat_service_pb2.SendInputRequest(chat_id=chat.id, message="exit"),
        metadata=client.metadata,
        timeout=10,
    )
    client.chats.DeleteChat(chat_service_pb2.DeleteChatRequest(chat_id=chat.id), metadata=client.metadata, timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        client.chats.GetChat(chat_service_pb2.GetChatRequest(chat_id=chat.id), metadata=client.metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_errors_carry_error_info_and_field_violations(client: Grpc) -> None:
    flow_id = client.create_flow(with_model(real_flow("14"), "m"))
    chat = client.create_chat(flow_id)
    with pytest.raises(grpc.RpcError) as err:
        client.chats.SendMessage(
            chat_service_pb2.SendMessageRequest(chat_id=chat.id, message="  "),
            metadata=client.metadata,
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)
    assert status is not None
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and info.reason == "INVALID_ARGUMENT" and info.domain == "agentok.ai"
    assert status.details[1].Unpack(bad) and bad.field_violations[0].field == "message"

    with pytest.raises(grpc.RpcError) as err:
        client.chats.SendInput(
            chat_service_pb2.SendInputRequest(chat_id=chat.id, message="x"),
            metadata=client.metadata,
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not waiting" in (err.value.details() or "")

    with pytest.raises(grpc.RpcError) as err:
        list(client.watch("missing-chat", timeout=10))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
