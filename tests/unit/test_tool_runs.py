"""Tool calls in a run, in memory: what is stored and journaled, what a restart runs again (a call whose result
is stored: never; a call in flight: once more, with the same call_id), client tools answered through
SendInput, and a flow whose tool was deleted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentok_server.domain.errors import FailedPrecondition, InvalidArgument
from agentok_server.domain.model import ChatStatus, MessageType, NewMessage, Tool, ToolCall, ToolKind, ToolResult
from agentok_server.domain.paging import PAGE_BYTES
from agentok_server.engine.tool_calls import ModelReply

from ..support.api import two_agent_flow
from ..support.memory_services import (
    OWNER,
    PATIENCE_SECONDS,
    MakeServices,
    ScriptedTools,
    Services,
    new_chat,
    until_status,
)

PARAMS: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
CALL = ToolCall("call_1", "calculator", '{"a": 2}')
PROPOSAL = ModelReply("", (CALL,))
# The user proxy runs the tool (one auto-reply, then the chat ends); the assistant's model proposes it.
FLOW = two_agent_flow(a={"human_input_mode": "NEVER", "max_consecutive_auto_reply": 1}, edge={"tools": ["calc"]})


async def add_tool(
    s: Services, kind: ToolKind = ToolKind.HTTP, tool_id: str = "calc", name: str = "calculator"
) -> None:
    url = "https://tools.example/calc" if kind is ToolKind.HTTP else ""
    tool = Tool(id=tool_id, owner=OWNER, name=name, description="adds", parameters=PARAMS, kind=kind, url=url)
    assert await s.store.insert_tool(tool) is not None


async def test_a_server_tool_runs_once_and_its_call_and_result_are_history(services: MakeServices) -> None:
    s = services(tools=ScriptedTools({"calculator": "4"}))
    await add_tool(s)
    chat_id = await new_chat(s, FLOW)
    s.model.reply(PROPOSAL, "two and two is 4")
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "what is 2+2?")
        await until_status(sub, ChatStatus.COMPLETED)
    messages = await s.store.list_messages(chat_id, 100, 0)
    assert [(m.sender, m.type, m.content) for m in messages] == [
        ("User", MessageType.USER, "what is 2+2?"),
        ("Assistant", MessageType.ASSISTANT, ""),
        ("User", MessageType.TOOL, "4"),
        ("Assistant", MessageType.ASSISTANT, "two and two is 4"),
    ]
    assert messages[1].tool_calls == (CALL,)
    assert messages[2].tool_responses == (ToolResult("call_1", "4"),)
    assert s.tools.calls == [("calc", CALL)]
    assert [t["function"]["name"] for t in s.model.offered[0]] == ["calculator"]
    assert s.model.calls[1][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "4"}
    kinds = [e.kind for e in await s.store.journal(chat_id, 1)]
    assert kinds == ["llm_tools", "say", "tool", "say", "llm_tools", "say"]


async def test_a_stored_result_is_not_run_again_after_a_restart(services: MakeServices) -> None:
    first = services(tools=ScriptedTools({"calculator": "4"}))
    await add_tool(first)
    chat_id = await new_chat(first, FLOW)
    first.model.reply(PROPOSAL)
    await first.chats.send_message(OWNER, chat_id, "what is 2+2?")
    await first.model.wait_calls(2)  # the result is stored; the model's next reply is pending when it stops
    await first.runs.shutdown()

    again = services(first.store, tools=ScriptedTools({"calculator": "4"}))
    with again.hub.subscribe(chat_id) as sub:
        await again.runs.resume_all()
        again.model.reply("two and two is 4")
        await until_status(sub, ChatStatus.COMPLETED)
    assert again.tools.calls == [], "the result came from the journal"
    assert len(again.model.calls) == 1 and again.model.calls[0] == first.model.calls[1]
    assert [m.type for m in await again.store.list_messages(chat_id, 100, 0)].count(MessageType.TOOL) == 1


async def test_a_call_in_flight_when_the_server_stops_is_made_again_with_its_call_id(services: MakeServices) -> None:
    first = services(tools=ScriptedTools({"calculator": "4"}, gate=asyncio.Event()))
    await add_tool(first)
    chat_id = await new_chat(first, FLOW)
    first.model.reply(PROPOSAL)
    await first.chats.send_message(OWNER, chat_id, "what is 2+2?")
    async with asyncio.timeout(PATIENCE_SECONDS):
        await first.tools.started.wait()
    await first.runs.shutdown()  # cancels the call mid-flight: nothing of it is stored

    again = services(first.store, tools=ScriptedTools({"calculator": "4"}))
    with again.hub.subscribe(chat_id) as sub:
        await again.runs.resume_all()
        again.model.reply("4")
        await until_status(sub, ChatStatus.COMPLETED)
    assert first.tools.calls == again.tools.calls == [("calc", CALL)]
    assert len(first.model.calls) == len(again.model.calls) == 1, "the proposal came from the journal"
    assert [m.type for m in await again.store.list_messages(chat_id, 100, 0)].count(MessageType.TOOL) == 1


CLIENT_FLOW = two_agent_flow(
    a={"human_input_mode": "NEVER", "max_consecutive_auto_reply": 1}, edge={"tools": ["calc", "look"]}
)
TWO_CALLS = ModelReply("", (CALL, ToolCall("call_2", "lookup", '{"q": "x"}')))


async def client_chat_waiting(s: Services) -> str:
    await add_tool(s, ToolKind.CLIENT)
    await add_tool(s, ToolKind.CLIENT, "look", "lookup")
    chat_id = await new_chat(s, CLIENT_FLOW)
    s.model.reply(TWO_CALLS)
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "go")
        event = await until_status(sub, ChatStatus.WAITING)
    assert event.status is not None and [c.call_id for c in event.status.pending_tool_calls] == ["call_1", "call_2"]
    return chat_id


async def test_client_tools_wait_for_the_callers_results(services: MakeServices) -> None:
    s = services()
    chat_id = await client_chat_waiting(s)
    chat = await s.chats.get(OWNER, chat_id)
    assert chat.pending_tool_calls == TWO_CALLS.tool_calls and "2 client tool call(s)" in chat.input_prompt
    assert s.tools.calls == [], "the server runs no client tool"

    with pytest.raises(InvalidArgument, match=r"tool_results\[0\].call_id: the chat has no pending tool call 'nope'"):
        await s.chats.send_input(OWNER, chat_id, None, [ToolResult("nope", "x")])
    with pytest.raises(InvalidArgument, match="a second time"):
        await s.chats.send_input(OWNER, chat_id, None, [ToolResult("call_1", "x"), ToolResult("call_1", "y")])
    with pytest.raises(FailedPrecondition, match="not a person's text") as refused:
        await s.chats.send_input(OWNER, chat_id, "hello")
    assert refused.value.reason == "CHAT_WAITING_FOR_TOOL_RESULTS"
    with pytest.raises(InvalidArgument, match="must be absent"):
        await s.chats.send_input(OWNER, chat_id, "", [ToolResult("call_1", "4")])
    assert (await s.chats.get(OWNER, chat_id)).run.run_steps == chat.run.run_steps, "nothing stored"

    partial = await s.chats.send_input(OWNER, chat_id, None, [ToolResult("call_2", "found", is_error=False)])
    assert partial.status is ChatStatus.WAITING and [c.call_id for c in partial.pending_tool_calls] == ["call_1"]
    with pytest.raises(InvalidArgument, match="answered already"):
        await s.chats.send_input(OWNER, chat_id, None, [ToolResult("call_2", "again")])
    s.model.reply("done")
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_input(OWNER, chat_id, None, [ToolResult("call_1", "bad input", is_error=True)])
        await until_status(sub, ChatStatus.COMPLETED)
    messages = await s.store.list_messages(chat_id, 100, 0)
    tool_message = next(m for m in messages if m.type is MessageType.TOOL)
    assert tool_message.tool_responses == (ToolResult("call_1", "bad input", True), ToolResult("call_2", "found"))
    assert tool_message.content == "bad input\n\nfound"
    chat = await s.chats.get(OWNER, chat_id)
    assert chat.pending_tool_calls == () and chat.status is ChatStatus.COMPLETED


async def test_a_run_rebuilt_after_a_partial_answer_waits_for_the_rest(services: MakeServices) -> None:
    first = services()
    chat_id = await client_chat_waiting(first)
    await first.chats.send_input(OWNER, chat_id, None, [ToolResult("call_1", "4")])
    await first.runs.shutdown()
    before = await first.store.events_after(chat_id, 0)

    again = services(first.store)
    await again.runs.resume_all()
    assert again.runs.is_waiting(chat_id)
    assert await again.store.events_after(chat_id, 0) == before, "the rebuilt run asks nothing again"
    again.model.reply("done")
    with again.hub.subscribe(chat_id) as sub:
        await again.chats.send_input(OWNER, chat_id, None, [ToolResult("call_2", "found")])
        await until_status(sub, ChatStatus.COMPLETED)
    tool_message = next(m for m in await again.store.list_messages(chat_id, 100, 0) if m.type is MessageType.TOOL)
    assert [r.content for r in tool_message.tool_responses] == ["4", "found"]


async def test_a_chat_whose_tool_was_deleted_cannot_start_a_run(services: MakeServices) -> None:
    s = services()
    await add_tool(s)
    chat_id = await new_chat(s, FLOW)
    assert await s.store.delete_tool(OWNER, "calc")
    with pytest.raises(FailedPrecondition) as refused:
        await s.chats.send_message(OWNER, chat_id, "go")
    assert refused.value.reason == "FLOW_NOT_RUNNABLE"
    assert "binds tool 'calc', which does not exist" in refused.value.message
    assert (await s.chats.get(OWNER, chat_id)).status is ChatStatus.READY


async def test_calls_past_the_per_message_cap_get_an_error_result_unrun(services: MakeServices) -> None:
    s = services(tools=ScriptedTools({"calculator": "4"}), max_tool_calls_per_message=1)
    await add_tool(s)
    chat_id = await new_chat(s, FLOW)
    s.model.reply(ModelReply("", (CALL, ToolCall("call_2", "calculator", '{"a": 3}'))), "ok")
    with s.hub.subscribe(chat_id) as sub:
        await s.chats.send_message(OWNER, chat_id, "go")
        await until_status(sub, ChatStatus.COMPLETED)
    assert s.tools.calls == [("calc", CALL)]
    tool_message = next(m for m in await s.store.list_messages(chat_id, 100, 0) if m.type is MessageType.TOOL)
    assert tool_message.tool_responses[0] == ToolResult("call_1", "4")
    refused = tool_message.tool_responses[1]
    assert refused.is_error and "only the first 1 tool calls of a message are run" in refused.content


async def test_a_page_of_history_counts_the_bytes_of_tool_calls_and_results(services: MakeServices) -> None:
    """A tool message holds its results twice (content and tool_responses): a page of them must still fit."""
    s = services()
    chat_id = await new_chat(s, FLOW)
    big = "x" * (PAGE_BYTES // 6)
    results = (ToolResult("c", big),)
    for _ in range(3):
        message = NewMessage(MessageType.TOOL, "User", "Assistant", big, tool_responses=results)
        assert await s.store.apply_step(chat_id, [message]) is not None
    page, token = await s.chats.list_messages(OWNER, chat_id, 10, "")
    # Counting content alone, all three (1/2 PAGE_BYTES) would fit; with the results, two fill a page.
    assert len(page) == 2 and token
