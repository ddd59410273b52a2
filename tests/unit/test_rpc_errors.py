"""The one error mapping: a server fault is INTERNAL with a generic message (its details stay in the log),
and a request that does not decode is INVALID_ARGUMENT. A real grpc.aio server on port 0, a real channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from agentok.v1 import chat_service_pb2 as cs
from agentok.v1 import chat_service_pb2_grpc
from agentok_server.domain import paging
from agentok_server.transport.rpc import add_servicer
from agentok_server.transport.servicers import ChatServicer


class BrokenChats:
    """A domain service whose storage fails the way a database does: with details a client must not see."""

    async def get(self, owner: str, chat_id: str) -> Any:
        raise RuntimeError("(psycopg) INSERT INTO chat VALUES ('secret-owner', ...)")


@pytest.fixture()
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    add_servicer(
        chat_service_pb2_grpc.add_ChatServiceServicer_to_server,
        ChatServicer(BrokenChats(), None, None),  # type: ignore[arg-type]
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await server.stop(None)


async def test_a_server_fault_is_internal_and_tells_nothing_of_it(channel: grpc.aio.Channel) -> None:
    stub = chat_service_pb2_grpc.ChatServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetChat(cs.GetChatRequest(chat_id="c1"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    details = err.value.details() or ""
    assert "internal error" in details and "secret" not in details and "INSERT" not in details


async def test_bytes_that_do_not_decode_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_unary("/agentok.v1.ChatService/GetChat")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw(b"\x0a\x02\xff\xfe", timeout=10)  # field 1 (chat_id): two bytes of invalid UTF-8
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be decoded" in (err.value.details() or "")


def test_a_page_ends_early_at_its_byte_budget_but_never_empty() -> None:
    big = paging.PAGE_BYTES // 2 + 1
    rows = [big, big, big, 1]
    assert paging.fit(rows, 10, lambda r: r) == ([big], True)
    assert paging.fit([paging.PAGE_BYTES * 3, 1], 10, lambda r: r) == ([paging.PAGE_BYTES * 3], True)
    assert paging.fit([1, 1, 1], 2, lambda r: r) == ([1, 1], True)
    assert paging.fit([1, 1], 2, lambda r: r) == ([1, 1], False)
    assert paging.fit([], 2, lambda r: r) == ([], False)
