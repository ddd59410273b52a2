"""Reads through Envoy at full load: REST with wrk, native gRPC with h2load (nghttp2's HTTP/2 load generator,
posting one framed request message), both C programs, so the load generator costs the two cores little.

Each run also reads the CPU seconds the server, Envoy and PostgreSQL spent, per request: the costs the
README's estimate of N replicas on separate hosts is made from.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.message import Message

from agentok.v1 import chat_service_pb2 as cs
from agentok.v1 import chat_service_pb2_grpc

from .stack import cpu_seconds, postgres_cpu_seconds

CONNECTIONS = 16
WARM_UP_SECONDS = 2
PAGE = 50  # ListMessages' page in the reads workloads


@dataclass
class Load:
    """One load run: requests a second and CPU milliseconds per request by process ("server", "envoy", "postgres")."""

    rps: float
    cpu_ms: dict[str, float] = field(default_factory=dict)


class CpuMeter:
    """CPU seconds of the given processes (and PostgreSQL's, if asked) over a block."""

    def __init__(self, pids: dict[str, Sequence[int]], postgres: bool) -> None:
        self._pids = pids
        self._postgres = postgres

    def read(self) -> dict[str, float]:
        seen = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self._pids.items()}
        if self._postgres:
            seen["postgres"] = postgres_cpu_seconds()
        return seen

    def per_request(self, before: dict[str, float], requests: float) -> dict[str, float]:
        after = self.read()
        return {name: (after[name] - before[name]) * 1000 / max(requests, 1) for name in after}


def wrk(url: str, key: str | None, seconds: float, meter: CpuMeter | None = None, strict: bool = True) -> Load:
    """`strict`: every answer must be a 2xx (else only the 2xx count, and the others are printed)."""
    headers = ["-H", f"X-API-KEY: {key}"] if key else []
    check = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *headers, url], capture_output=True, text=True
    )
    assert check.stdout == "200", (url, check.stdout)
    base = ["wrk", "-t1", f"-c{CONNECTIONS}", *headers, url]
    subprocess.run([*base[:3], f"-d{WARM_UP_SECONDS}s", *base[3:]], capture_output=True, check=True)
    before = meter.read() if meter else {}
    out = subprocess.run([*base[:3], f"-d{seconds}s", *base[3:]], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if failed := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        assert not strict, out
        print(f"  ({failed.group(1)} answers were not 2xx: {url})", flush=True)
        rps -= int(failed.group(1)) / seconds
    return Load(rps, meter.per_request(before, rps * seconds) if meter else {})


def h2load(
    edge: str, method: str, request: Message, key: str | None, seconds: float, meter: CpuMeter | None = None
) -> Load:
    """Unary gRPC calls of `method` (ChatService) at full load; every answer must be OK (checked once first:
    h2load counts HTTP statuses, and a gRPC error comes in an HTTP 200)."""
    md = (("x-api-key", key),) if key else ()
    with grpc.insecure_channel(edge) as ch:
        getattr(chat_service_pb2_grpc.ChatServiceStub(ch), method)(request, metadata=md, timeout=10)
    body = request.SerializeToString()
    with tempfile.NamedTemporaryFile(suffix=".grpc") as frame:
        Path(frame.name).write_bytes(b"\x00" + struct.pack(">I", len(body)) + body)
        headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        if key:
            headers += ["-H", f"x-api-key: {key}"]
        args = ["h2load", "-c", str(CONNECTIONS), "-m", "1", "-t", "1", "-d", frame.name, *headers]
        args.append(f"http://{edge}/agentok.v1.ChatService/{method}")
        subprocess.run([*args, "-D", str(WARM_UP_SECONDS)], capture_output=True, check=True)
        before = meter.read() if meter else {}
        out = subprocess.run([*args, "-D", str(seconds)], capture_output=True, text=True, check=True).stdout
    counts = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out
    )
    assert counts and counts.group(4) == "0" and counts.group(5) == "0", out
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    return Load(rps, meter.per_request(before, int(counts.group(3))) if meter else {})


def reads(edge: str, key: str | None, chat_id: str, seconds: float, meter: CpuMeter | None = None) -> dict[str, Load]:
    """The four reads workloads: GetChat and a ListMessages page, over REST and native gRPC."""
    base = f"http://{edge}/chats/{chat_id}"
    return {
        "GetChat, REST": wrk(base, key, seconds, meter),
        "GetChat, gRPC": h2load(edge, "GetChat", cs.GetChatRequest(chat_id=chat_id), key, seconds, meter),
        f"ListMessages ({PAGE}), REST": wrk(f"{base}/messages?page_size={PAGE}", key, seconds, meter),
        f"ListMessages ({PAGE}), gRPC": h2load(
            edge, "ListMessages", cs.ListMessagesRequest(chat_id=chat_id, page_size=PAGE), key, seconds, meter
        ),
    }
