"""N idle WatchChat streams on one chat through Envoy, native gRPC or REST's Server-Sent Events: what each costs
the server and Envoy in memory, how long one commit takes to reach the last of them, whether every one got it,
and whether other calls slow meanwhile.

The watchers live in client processes of their own (`python -m bench.watchers client ...`), several for large N,
so that no one Python event loop stands between the server and ten thousand streams. Each client says `open`
once all its streams have their response headers, then, after the commit, prints each stream's latency: the
time from the message's commit (its created_at, the server's clock, the same machine) to its arrival.
"""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc

from agentok.v1 import chat_service_pb2 as cs
from agentok.v1 import chat_service_pb2_grpc

from .seed import HITL_FLOW, metadata, setup_chat
from .stack import Stack, rss_kib

REPO = Path(__file__).resolve().parent.parent
# Streams per gRPC connection (each client channel is its own HTTP/2 connection to Envoy).
STREAMS_PER_CHANNEL = 1000
# Streams per client process.
STREAMS_PER_CLIENT = 2500
ARRIVAL_TIMEOUT = 60.0
OPEN_BATCH = 100


# What ended streams that did not get the event (a status code, an HTTP status, an exception's name): the
# client prints it, so a failed run says why.
failures: collections.Counter[str] = collections.Counter()


async def _grpc_stream(call: grpc.aio.UnaryStreamCall, opened: asyncio.Event) -> float | None:
    try:
        await call.initial_metadata()
        opened.set()
        async for item in call:
            if item.event.HasField("message_added"):
                return time.time() - item.event.message_added.created_at.ToNanoseconds() / 1e9
    except grpc.aio.AioRpcError as err:
        failures[err.code().name] += 1
        opened.set()
    return None


async def _read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked HTTP/1.1 body (Envoy streams the SSE body that way); b"" at its end."""
    size = int((await reader.readline()).split(b";")[0], 16)
    data = await reader.readexactly(size + 2)  # the chunk and its CRLF
    return data[:-2]


def sse_latency(line: bytes, now: float) -> float | None:
    """The latency of a `data:` line if it carries a message_added event."""
    if not line.startswith(b"data:") or b"message_added" not in line:
        return None
    created = json.loads(line[5:])["event"]["message_added"]["created_at"]
    return now - datetime.fromisoformat(created).timestamp()


async def _sse_stream(edge: str, key: str, path: str, opened: asyncio.Event) -> float | None:
    """A lean SSE reader: one socket, the request written by hand, the chunked body split into lines."""
    host, port = edge.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    except OSError:
        opened.set()
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {edge}\r\nX-API-KEY: {key}\r\n\r\n".encode())
        status = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        opened.set()
        if b" 200 " not in status:
            failures[status.decode(errors="replace").strip()] += 1
            return None
        buffer = b""
        while chunk := await _read_chunk(reader):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            now = time.time()
            for line in lines:
                if (latency := sse_latency(line, now)) is not None:
                    return latency
    except (OSError, ValueError, asyncio.IncompleteReadError) as err:
        failures[type(err).__name__] += 1
        opened.set()
    finally:
        writer.close()
    return None


async def client(kind: str, edge: str, key: str, chat_id: str, after: int, count: int) -> None:
    md = metadata(key)
    opened = [asyncio.Event() for _ in range(count)]
    channels: list[grpc.aio.Channel] = []
    tasks: list[asyncio.Future[float | None]] = []
    request = cs.WatchChatRequest(chat_id=chat_id, after_seq=after)
    path = f"/chats/{chat_id}/watch?after_seq={after}"
    if kind == "grpc":
        # A pool of its own per channel: grpc would otherwise share one connection among identical channels.
        channels = [
            grpc.aio.insecure_channel(edge, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(-(-count // STREAMS_PER_CHANNEL))
        ]
    stubs = [chat_service_pb2_grpc.ChatServiceStub(ch) for ch in channels]
    # Opened a batch at a time, each batch's headers awaited before the next: the figures are of watchers that
    # stay open, not of a reconnect storm (all of them in the same moment queue their key checks past Envoy's
    # one-second check timeout on two busy cores).
    for start in range(0, count, OPEN_BATCH):
        batch = range(start, min(count, start + OPEN_BATCH))
        for n in batch:
            if kind == "grpc":
                stream = _grpc_stream(stubs[n % len(stubs)].WatchChat(request, metadata=md), opened[n])
            else:
                stream = _sse_stream(edge, key, path, opened[n])
            tasks.append(asyncio.ensure_future(stream))
        await asyncio.gather(*(opened[n].wait() for n in batch))
    print("open", sum(not t.done() for t in tasks), flush=True)
    done, _ = await asyncio.wait(tasks, timeout=ARRIVAL_TIMEOUT)
    latencies = [t.result() for t in done if t.result() is not None]
    print(json.dumps({"latencies": latencies, "failures": dict(failures)}), flush=True)
    for ch in channels:
        await ch.close(grace=None)


@dataclass
class WatchFigures:
    opened: int
    received: int
    server_kib: float
    envoy_kib: float
    p50_ms: float
    p99_ms: float
    rps_without: float
    rps_during: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def measure(stack: Stack, kind: str, count: int, get_chat_rps: Callable[[str], float]) -> WatchFigures:
    """`count` watchers of `kind` (grpc or sse) on one chat; get_chat_rps(chat_id) runs the GetChat load."""
    _, chat_id = setup_chat(stack.edge, stack.key, HITL_FLOW)
    rps_without = get_chat_rps(chat_id)
    server_before, envoy_before = rss_kib(stack.server_pid), rss_kib(stack.envoy_pid)
    clients = []
    for start in range(0, count, STREAMS_PER_CLIENT):
        n = min(STREAMS_PER_CLIENT, count - start)
        args = ["client", kind, stack.edge, stack.key, chat_id, "0", str(n)]
        clients.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.watchers", *args], cwd=REPO, stdout=subprocess.PIPE, text=True
            )
        )
    opened = 0
    for proc in clients:
        assert proc.stdout is not None
        opened += int(proc.stdout.readline().split()[1])
    time.sleep(1.0)  # let both processes settle (buffers, the last headers) before reading memory
    server_kib = (rss_kib(stack.server_pid) - server_before) / count
    envoy_kib = (rss_kib(stack.envoy_pid) - envoy_before) / count
    rps_during = get_chat_rps(chat_id)
    with grpc.insecure_channel(stack.edge) as ch:
        request = cs.SendMessageRequest(chat_id=chat_id, message="to every watcher")
        chat_service_pb2_grpc.ChatServiceStub(ch).SendMessage(request, metadata=metadata(stack.key), timeout=30)
    latencies: list[float] = []
    failed: collections.Counter[str] = collections.Counter()
    for proc in clients:
        assert proc.stdout is not None
        got = json.loads(proc.stdout.readline())
        latencies += got["latencies"]
        failed.update(got["failures"])
        proc.wait(timeout=30)
    if failed:
        print(f"  ({kind}, {count:,}: streams that failed, by why: {dict(failed)})", flush=True)
    return WatchFigures(
        opened=opened,
        received=len(latencies),
        server_kib=server_kib,
        envoy_kib=envoy_kib,
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        rps_without=rps_without,
        rps_during=rps_during,
    )


if __name__ == "__main__":
    _, kind_, edge_, key_, chat_, after_, count_ = sys.argv[1:]
    asyncio.run(client(kind_, edge_, key_, chat_, int(after_), int(count_)))
