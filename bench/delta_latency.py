"""Streaming deltas: how long a model's text takes to reach a watcher. The model is the tests' fake
OpenAI-compatible server (tests/support/fake_llm.py) streaming each reply word by word; the watcher is a
gRPC WatchChat with include_deltas through Envoy. Each round is one chat whose one reply is streamed; its
figure is the time from the fake writing the reply's first word to the watcher receiving the first delta.
Beside it, in the same run and on the same stack, the existing WatchChat figure (a stored message's commit
to the watcher: bench/sessions.py). With --cluster, the same on two PostgreSQL replicas, the run on one and
the watcher on the other (deltas travel by NOTIFY).

`run(args) -> [(label, value)]` for bench/run.py's table; `python -m bench.delta_latency [--quick]` prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from agentok.v1 import chat_enums_pb2, chat_service_pb2_grpc
from agentok.v1 import chat_service_pb2 as cs
from tests.support.fake_llm import FakeLlmServer

from .seed import metadata, setup_chat
from .sessions import bench_watch_latency
from .stack import Stack, postgres_database, stack
from .watchers import percentile

Status = chat_enums_pb2.ChatStatus.Value
REPLY = "a reply the model writes one word at a time, as every chat product shows it " * 4


def _flow(model: str) -> dict[str, object]:
    """A user proxy's message, the assistant's one streamed reply, the end."""
    return {
        "nodes": [
            {"id": "init", "type": "initializer", "data": {"class": "Initializer", "name": "Initializer"}},
            {
                "id": "a",
                "type": "user",
                "data": {"class": "UserProxyAgent", "name": "User", "human_input_mode": "NEVER"},
            },
            {"id": "b", "type": "assistant", "data": {"class": "AssistantAgent", "name": "Assistant"}},
        ],
        "edges": [
            {"id": "e0", "source": "init", "target": "a"},
            {"id": "e1", "source": "a", "target": "b", "type": "converse", "data": {"max_turns": 1}},
        ],
        "llm_config": {"model": model},
    }


async def _one_round(fake: FakeLlmServer, watch_edge: str, run_edge: str, key: str) -> float:
    """ms from the model's first word to the watcher's first delta, for one new chat."""
    # The fake waits 50 ms before it answers: the watcher subscribed long before the first word (WatchChat
    # answers its headers just before it subscribes). The figure starts at the word, not the wait.
    model = f"slow-0.05-{uuid.uuid4().hex[:8]}"
    fake.fake.script(model, [REPLY])
    _, chat_id = setup_chat(run_edge, key, _flow(model))
    md = metadata(key)
    async with grpc.aio.insecure_channel(watch_edge) as ch, grpc.aio.insecure_channel(run_edge) as run_ch:
        chats = chat_service_pb2_grpc.ChatServiceStub(ch)
        request = cs.WatchChatRequest(chat_id=chat_id, include_deltas=True, until_finished=True)
        stream = chats.WatchChat(request, metadata=md, timeout=60)
        await stream.initial_metadata()
        runs = chat_service_pb2_grpc.ChatServiceStub(run_ch)
        await runs.SendMessage(cs.SendMessageRequest(chat_id=chat_id, message="go"), metadata=md, timeout=10)
        first: float | None = None
        while (item := await stream.read()) is not grpc.aio.EOF:
            assert isinstance(item, cs.WatchChatResponse)
            if first is None and item.event.HasField("message_delta"):
                first = time.time()
            if item.event.HasField("status_changed") and item.event.status_changed.status == Status.error:
                raise RuntimeError(f"the run failed: {item.event.status_changed.error}")
    if first is None:
        raise RuntimeError("no delta reached the watcher")
    (written,) = fake.fake.first_words(model)
    return (first - written) * 1000


def _deltas(fake: FakeLlmServer, s: Stack, rounds: int, watch_edge: str, run_edge: str) -> list[float]:
    async def all_rounds() -> list[float]:
        return [await _one_round(fake, watch_edge, run_edge, s.key) for _ in range(rounds)]

    return asyncio.run(all_rounds())


def _fmt(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.50):.1f} ms, p99 {percentile(values, 0.99):.1f} ms ({len(values)} rounds)"


@contextmanager
def _model_server() -> Iterator[FakeLlmServer]:
    """The fake model, and the server's model URL pointing at it (stack() passes os.environ on)."""
    fake = FakeLlmServer().start()
    before = os.environ.get("AGENTOK_LLM_BASE_URL")
    os.environ["AGENTOK_LLM_BASE_URL"] = fake.base_url
    try:
        yield fake
    finally:
        if before is None:
            os.environ.pop("AGENTOK_LLM_BASE_URL", None)
        else:
            os.environ["AGENTOK_LLM_BASE_URL"] = before
        fake.stop()


def run(args: argparse.Namespace) -> list[tuple[str, str]]:
    rounds = max(5, min(getattr(args, "rounds", 100), 100))
    rows: list[tuple[str, str]] = []
    with _model_server() as fake:
        with stack(auth=True) as s:
            rows.append(
                ("SQLite: model's first word -> watcher's first delta", _fmt(_deltas(fake, s, rounds, s.edge, s.edge)))
            )
            watch = asyncio.run(bench_watch_latency(s.edge, s.key, rounds))
            rows.append(("SQLite: WatchChat, a message's commit -> watcher", _fmt(watch)))
        if getattr(args, "cluster", False):
            with postgres_database() as url, stack(True, url, 2, edge_per_replica=True) as s:
                watch_edge, run_edge = s.replica_edges
                lat = _deltas(fake, s, rounds, watch_edge, run_edge)
                rows.append(("PostgreSQL, 2 replicas: first word -> delta on the other replica", _fmt(lat)))
                watch = asyncio.run(bench_watch_latency(watch_edge, s.key, rounds, run_edge=run_edge))
                rows.append(("PostgreSQL, 2 replicas: WatchChat commit -> watcher on the other", _fmt(watch)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100, help="chats streamed (one reply each)")
    parser.add_argument("--quick", action="store_true", help="20 rounds")
    parser.add_argument("--cluster", action="store_true", help="also on two PostgreSQL replicas")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 20
    for label, value in run(args):
        print(f"{label}: {value}", flush=True)


if __name__ == "__main__":
    main()
