"""Engine loops that do no IO still share the event loop: a chat that ends before its first message stores
nothing and asks nobody, so a flow of many such chats (sequential, or an agent's nested chats) would
otherwise run as one callback, however large the flow, and stall every other call the server has."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from agentok_server.engine.flow_run import run_flow
from agentok_server.engine.flow_spec import parse_flow

from .scripted import ScriptedIO, ScriptedModel, agent, converse, flow, nested

CHATS = 200


async def _ticks_while(run: Coroutine[Any, Any, str]) -> tuple[int, str]:
    """How often another task got the loop while `run` ran, and what it returned."""
    task = asyncio.ensure_future(run)
    ticks = 0
    while not task.done():
        ticks += 1
        await asyncio.sleep(0)
    return ticks, task.result()


def _silent(node_id: str) -> dict[str, Any]:
    # max_consecutive_auto_reply 0: its chat (with max_turns) ends before its first message, no IO at all.
    return agent(node_id, "never said", max_consecutive_auto_reply=0)


async def test_sequential_chats_that_end_at_once_let_other_tasks_run() -> None:
    graph = flow(
        "u",
        [agent("u", "U"), *(_silent(f"a{i}") for i in range(CHATS))],
        [{**converse("u", f"a{i}", max_turns=1), "id": f"e{i}"} for i in range(CHATS)],
    )
    io = ScriptedIO()
    ticks, reason = await _ticks_while(run_flow(parse_flow(graph), "go", io, ScriptedModel()))
    assert io.messages == [] and reason.count("maximum consecutive auto-replies") == CHATS
    assert ticks >= CHATS


async def test_nested_chats_that_end_at_once_let_other_tasks_run() -> None:
    graph = flow(
        "u",
        [agent("u", "U"), agent("host", "H"), nested(), *(_silent(f"c{i}") for i in range(CHATS))],
        [
            converse("u", "host", max_turns=1),
            converse("host", "n"),
            *({**converse("n", f"c{i}", message="m", max_turns=1), "id": f"n{i}"} for i in range(CHATS)),
        ],
    )
    io = ScriptedIO()
    ticks, _ = await _ticks_while(run_flow(parse_flow(graph), "go", io, ScriptedModel()))
    # The host's reply is the last (empty) summary of its nested chats, none of which said anything.
    assert io.routed() == [("host", "u", "")]
    assert ticks >= CHATS
