"""Whether a page costs the same however long the history: ListMessages' first, a middle and the last page of
a chat of 1,000 and of 1,000,000 messages, ListChats' of an owner with 100 and with 100,000 chats (rows put
in by SQL: bench/seed.py), each at full load through Envoy (native gRPC, h2load)."""

from __future__ import annotations

from agentok.v1 import chat_service_pb2 as cs
from agentok_server.domain.paging import encode

from .reads import PAGE, h2load
from .seed import HITL_FLOW, clone_chats, insert_messages, setup_chat
from .stack import Stack

PAGES = ("first", "middle", "last")


def message_pages(stack: Stack, count: int, seconds: float) -> dict[str, float]:
    """req/s of each ListMessages page of a chat holding `count` messages."""
    _, chat_id = setup_chat(stack.edge, stack.key, HITL_FLOW)
    insert_messages(stack.database_url, chat_id, count)
    after = {"first": 0, "middle": count // 2, "last": count - PAGE}
    out = {}
    for page in PAGES:
        token = encode(after[page]) if after[page] else ""
        request = cs.ListMessagesRequest(chat_id=chat_id, page_size=PAGE, page_token=token)
        out[page] = h2load(stack.edge, "ListMessages", request, stack.key, seconds).rps
    return out


def chat_pages(stack: Stack, key: str, count: int, seconds: float) -> dict[str, float]:
    """req/s of each ListChats page of an owner (`key`'s) holding `count` chats."""
    _, template = setup_chat(stack.edge, key, HITL_FLOW)
    made = clone_chats(stack.database_url, template, count)
    # The template is the newest; a page token names the last chat of the page before.
    before = {"first": None, "middle": made[count // 2], "last": made[count - PAGE - 1]}
    out = {}
    for page in PAGES:
        mark = before[page]
        token = encode(mark[0].isoformat(), mark[1]) if mark else ""
        request = cs.ListChatsRequest(page_size=PAGE, page_token=token)
        out[page] = h2load(stack.edge, "ListChats", request, key, seconds).rps
    return out
