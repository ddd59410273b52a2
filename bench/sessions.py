"""Whole sessions and event latency: human-in-the-loop sessions at full load, a message's way from its commit
to a watcher (on the replica that ran it or on another), and one tenant's reads beside another's busy run."""

from __future__ import annotations

import asyncio
import time

import grpc

from agentok.v1 import chat_enums_pb2, chat_service_pb2_grpc
from agentok.v1 import chat_service_pb2 as cs

from .seed import ECHO_FLOW, HITL_FLOW, NOISY_FLOW, metadata, setup_chat
from .stack import NOISY_TURNS

Status = chat_enums_pb2.ChatStatus.Value


async def _session(chats: chat_service_pb2_grpc.ChatServiceStub, md: tuple[tuple[str, str], ...], flow_id: str) -> None:
    chat = (
        await chats.CreateChat(cs.CreateChatRequest(name="s", from_type="flow", from_flow=flow_id), metadata=md)
    ).chat
    sent = await chats.SendMessage(cs.SendMessageRequest(chat_id=chat.id, message="hi"), metadata=md)
    stream = chats.WatchChat(
        cs.WatchChatRequest(chat_id=chat.id, after_seq=sent.chat.last_seq, until_finished=True), metadata=md
    )
    answered = False
    async for item in stream:  # until_finished: the server ends the stream when the run completes
        ev = item.event
        if not ev.HasField("status_changed"):
            continue
        if ev.status_changed.status == Status.wait_for_human_input and not answered:
            answered = True
            await chats.SendInput(cs.SendInputRequest(chat_id=chat.id, message="exit"), metadata=md)
        elif ev.status_changed.status == Status.error:
            raise RuntimeError(ev.status_changed.error)
    listed = await chats.ListMessages(cs.ListMessagesRequest(chat_id=chat.id), metadata=md)
    assert len(listed.messages) == 1, listed


async def bench_sessions(edge: str, key: str, seconds: float, clients: int) -> float:
    flow_id, _ = setup_chat(edge, key, HITL_FLOW)
    md = metadata(key)
    done = 0
    async with grpc.aio.insecure_channel(edge) as ch:
        chats = chat_service_pb2_grpc.ChatServiceStub(ch)
        await _session(chats, md, flow_id)  # warm-up
        end = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < end:
                await _session(chats, md, flow_id)
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - start
    return done / elapsed


async def bench_watch_latency(edge: str, key: str, rounds: int, run_edge: str | None = None) -> list[float]:
    """A person and an agent take turns (paced by the person's answers, as in real use); each message's
    latency is the time from its commit (created_at) to its arrival at a watcher through Envoy. With
    `run_edge` (an Envoy in front of another replica), the run is started and answered there, so every event
    reaches the watcher's replica through PostgreSQL's NOTIFY."""
    # Every round is two agent turns (the user proxy relays the answer, the agent replies): lift the
    # per-run turn budget (default 200) above what the rounds use.
    _, chat_id = setup_chat(edge, key, ECHO_FLOW, max_agent_turns=2 * rounds + 10)
    md = metadata(key)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(edge) as ch, grpc.aio.insecure_channel(run_edge or edge) as run_ch:
        chats = chat_service_pb2_grpc.ChatServiceStub(ch)
        runs = chat_service_pb2_grpc.ChatServiceStub(run_ch)
        sent = await runs.SendMessage(cs.SendMessageRequest(chat_id=chat_id, message="start"), metadata=md)
        stream = chats.WatchChat(cs.WatchChatRequest(chat_id=chat_id, after_seq=sent.chat.last_seq), metadata=md)
        answered = 0
        async for item in stream:
            now = time.time()
            ev = item.event
            if ev.HasField("message_added"):
                latencies.append((now - ev.message_added.created_at.ToNanoseconds() / 1e9) * 1000)
            elif ev.HasField("status_changed") and ev.status_changed.status in (Status.completed, Status.error):
                raise RuntimeError(f"the run ended before {rounds} rounds: {ev.status_changed}")
            elif ev.HasField("status_changed") and ev.status_changed.status == Status.wait_for_human_input:
                if answered == rounds:
                    break
                answered += 1
                await runs.SendInput(cs.SendInputRequest(chat_id=chat_id, message=f"round {answered}"), metadata=md)
        stream.cancel()
    return latencies


async def bench_noisy_neighbour(edge: str, key: str, neighbour_key: str, seconds: float) -> list[float]:
    """One tenant's GetChat latencies (ms, one call at a time through Envoy) while another tenant's run of
    fixed-reply agents goes on; the run must still be going at the end, or the figure would not be that."""
    _, noisy_chat = setup_chat(edge, neighbour_key, NOISY_FLOW, max_agent_turns=NOISY_TURNS)
    _, chat_id = setup_chat(edge, key, HITL_FLOW)
    md, noisy_md = metadata(key), (("x-api-key", neighbour_key),)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(edge) as ch:
        chats = chat_service_pb2_grpc.ChatServiceStub(ch)
        await chats.GetChat(cs.GetChatRequest(chat_id=chat_id), metadata=md)  # warm-up (connection, key cache)
        await chats.SendMessage(cs.SendMessageRequest(chat_id=noisy_chat, message="go"), metadata=noisy_md)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            await chats.GetChat(cs.GetChatRequest(chat_id=chat_id), metadata=md, timeout=10)
            latencies.append((time.perf_counter() - start) * 1000)
        noisy = (await chats.GetChat(cs.GetChatRequest(chat_id=noisy_chat), metadata=noisy_md)).chat
        if noisy.status != Status.running:
            raise RuntimeError(f"the noisy run ended during the measurement: {noisy}")
        await chats.CancelChat(cs.CancelChatRequest(chat_id=noisy_chat), metadata=noisy_md)
    print(f"  (the noisy run made {noisy.last_seq} events meanwhile)", flush=True)
    return latencies
