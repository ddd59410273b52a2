"""`make bench`: the speed figures in the README, measured against real processes on this machine.

Workloads (each against a fresh server + Envoy over a fresh SQLite file; with --cluster, over a fresh
PostgreSQL database with 1 and then 2 server replicas behind the Envoy):
  1. GetChat through Envoy over REST (wrk, 16 connections), with auth on and with auth off;
  2. complete human-in-the-loop sessions over native gRPC through Envoy, 16 concurrent clients;
  3. WatchChat latency: from a message's commit (its created_at) to its arrival at a gRPC watcher;
  4. a noisy neighbour: one tenant's GetChat latency while another tenant's run of two fixed-reply agents
     (no model, no person: every step is the server's own work) goes on.

One script, a little past 400 lines, on purpose: `python bench/run.py` is what a reader runs and reads to see
how each README figure was made, and the workloads share its process setup.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentok.v1 import chat_enums_pb2, chat_service_pb2_grpc, flow_service_pb2_grpc
from agentok.v1 import chat_service_pb2 as cs
from agentok.v1 import flow_service_pb2 as fs
from agentok_server.devjwt import ensure_dev_keys
from agentok_server.edge.envoy_config import JwtConfig, Upstream
from agentok_server.edge.envoy_process import EnvoyProcess

BIN = Path(sys.executable).parent
Status = chat_enums_pb2.ChatStatus.Value

# A person answers the assistant (ALWAYS); no model needed, so the figures measure the service alone.
HITL_FLOW = {
    "nodes": [
        {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
        {"id": "u", "type": "user", "data": {"name": "User", "human_input_mode": "NEVER", "default_auto_reply": "ok"}},
        {
            "id": "a",
            "type": "conversable",
            "data": {"name": "Agent", "disable_llm": True, "default_auto_reply": "done", "human_input_mode": "ALWAYS"},
        },
    ],
    "edges": [{"source": "i", "target": "u"}, {"source": "u", "target": "a", "type": "converse"}],
}
# A person (ALWAYS) talks with a fixed-reply agent: each answer adds two messages.
ECHO_FLOW = {
    "nodes": [
        {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
        {"id": "u", "type": "user", "data": {"name": "User", "human_input_mode": "ALWAYS"}},
        {
            "id": "a",
            "type": "conversable",
            "data": {"name": "Agent", "disable_llm": True, "default_auto_reply": "pong"},
        },
    ],
    "edges": [{"source": "i", "target": "u"}, {"source": "u", "target": "a", "type": "converse"}],
}
# Two fixed-reply agents and nobody to ask: the run goes on until its turn budget ends it (or it is cancelled).
NOISY_FLOW = {
    "nodes": [
        {"id": "i", "type": "initializer", "data": {"name": "Initializer"}},
        {
            "id": "u",
            "type": "user",
            "data": {
                "name": "User",
                "human_input_mode": "NEVER",
                "default_auto_reply": "ping",
                "max_consecutive_auto_reply": 10_000_000,
            },
        },
        {
            "id": "a",
            "type": "conversable",
            "data": {
                "name": "Agent",
                "disable_llm": True,
                "default_auto_reply": "pong",
                "max_consecutive_auto_reply": 10_000_000,
            },
        },
    ],
    "edges": [{"source": "i", "target": "u"}, {"source": "u", "target": "a", "type": "converse"}],
}
# Enough turns to outlast the measurement: the stacks raise the server's turn limit to allow them.
NOISY_TURNS = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_database() -> Iterator[str]:
    """A throw-away database in the machine's PostgreSQL (`make bench MODE=cluster` makes sure one runs)."""
    admin = os.environ.get("AGENTOK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"agentok_bench_{uuid.uuid4().hex[:10]}"

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def stack(auth: bool, database_url: str | None = None, replicas: int = 1) -> Iterator[tuple[str, str, str]]:
    """Yields (edge address, api key, another owner's api key) for fresh server replicas + one Envoy (SQLite
    unless database_url)."""
    root = Path(tempfile.mkdtemp(prefix="agentok-bench-"))
    env = {
        **os.environ,
        "AGENTOK_DATA_DIR": str(root / "data"),
        "AGENTOK_AUTH_ENABLED": "true" if auth else "false",
        "AGENTOK_MAX_AGENT_TURNS_LIMIT": str(NOISY_TURNS),
    }
    if database_url:
        env["AGENTOK_DATABASE_URL"] = database_url
    subprocess.run([str(BIN / "agentok"), "db", "upgrade"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [str(BIN / "agentok"), "keys", "create", "bench"], env=env, check=True, capture_output=True, text=True
    )
    key = out.stdout.strip().splitlines()[-1]
    out = subprocess.run(
        [str(BIN / "agentok"), "keys", "create", "neighbour", "--owner", "neighbour"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    neighbour_key = out.stdout.strip().splitlines()[-1]
    check_secret = subprocess.run(
        [str(BIN / "agentok"), "edge", "check-secret"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    servers: list[subprocess.Popen[bytes]] = []
    upstreams: list[Upstream] = []
    for n in range(replicas):
        upstream = Upstream("127.0.0.1", free_port(), free_port())
        replica_env = {
            **env,
            "AGENTOK_GRPC_PORT": str(upstream.grpc_port),
            "AGENTOK_AUTHZ_PORT": str(upstream.authz_port),
            # As deployed: every replica serves its metrics (and writes its request log).
            "AGENTOK_METRICS_PORT": str(free_port()),
        }
        log = (root / f"server-{n}.log").open("wb")
        servers.append(subprocess.Popen([str(BIN / "agentok"), "serve"], env=replica_env, stdout=log, stderr=log))
        upstreams.append(upstream)
    for upstream in upstreams:
        with grpc.insecure_channel(f"127.0.0.1:{upstream.grpc_port}") as ch:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=30, wait_for_ready=True)
    envoy = EnvoyProcess(
        work_dir=root / "envoy",
        listen_host="127.0.0.1",
        listen_port=free_port(),
        upstreams=upstreams,
        # As `make run` deploys it: bearer tokens verified too (requests here carry keys, so it passes them on).
        jwt=JwtConfig("agentok-dev", "agentok", jwks_file=ensure_dev_keys(root / "dev-jwt")) if auth else None,
        auth=auth,
        check_secret=check_secret,
        # No per-key rate limit: the load generator is one client with one key, and the figures measure the
        # service, not the limit (a deployment keeps it on: AGENTOK_RATE_LIMIT_PER_SECOND).
        rate_limit=None,
    )
    envoy.start()
    try:
        yield f"127.0.0.1:{envoy.listen_port}", key, neighbour_key
    finally:
        envoy.stop()
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(timeout=30)
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("kept", root)


def _setup_chat(edge: str, key: str, flow: dict, max_agent_turns: int = 0) -> tuple[str, str]:
    md = (("x-api-key", key),)
    with grpc.insecure_channel(edge) as ch:
        graph = struct_pb2.Struct()
        graph.update(flow)
        flow_id = (
            flow_service_pb2_grpc.FlowServiceStub(ch)
            .CreateFlow(fs.CreateFlowRequest(name="bench", flow=graph), metadata=md, timeout=10)
            .flow.id
        )
        chat = (
            chat_service_pb2_grpc.ChatServiceStub(ch)
            .CreateChat(
                cs.CreateChatRequest(
                    name="bench", from_type="flow", from_flow=flow_id, max_agent_turns=max_agent_turns
                ),
                metadata=md,
                timeout=10,
            )
            .chat
        )
    return flow_id, chat.id


def bench_get_chat(edge: str, key: str, seconds: int) -> float:
    _, chat_id = _setup_chat(edge, key, HITL_FLOW)
    url = f"http://{edge}/chats/{chat_id}"
    check = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"X-API-KEY: {key}", url],
        capture_output=True,
        text=True,
    )
    assert check.stdout == "200", check.stdout
    # Warm-up (connections, caches), then the measured run.
    subprocess.run(["wrk", "-t1", "-c16", "-d2s", "-H", f"X-API-KEY: {key}", url], capture_output=True, check=True)
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "-H", f"X-API-KEY: {key}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not non2xx, out
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


async def _session(chats: chat_service_pb2_grpc.ChatServiceStub, md: tuple, flow_id: str) -> None:
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
    flow_id, _ = _setup_chat(edge, key, HITL_FLOW)
    md = (("x-api-key", key),)
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


async def bench_watch_latency(edge: str, key: str, rounds: int) -> list[float]:
    """A person and an agent take turns (paced by the person's answers, as in real use); each message's
    latency is the time from its commit (created_at) to its arrival at a watcher through Envoy."""
    # Every round is two agent turns (the user proxy relays the answer, the agent replies): lift the
    # per-run turn budget (default 200) above what the rounds use.
    _, chat_id = _setup_chat(edge, key, ECHO_FLOW, max_agent_turns=2 * rounds + 10)
    md = (("x-api-key", key),)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(edge) as ch:
        chats = chat_service_pb2_grpc.ChatServiceStub(ch)
        sent = await chats.SendMessage(cs.SendMessageRequest(chat_id=chat_id, message="start"), metadata=md)
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
                await chats.SendInput(cs.SendInputRequest(chat_id=chat_id, message=f"round {answered}"), metadata=md)
        stream.cancel()
    return latencies


async def bench_noisy_neighbour(edge: str, key: str, neighbour_key: str, seconds: float) -> list[float]:
    """One tenant's GetChat latencies (ms, one call at a time through Envoy) while another tenant's run of
    fixed-reply agents goes on; the run must still be going at the end, or the figure would not be that."""
    _, noisy_chat = _setup_chat(edge, neighbour_key, NOISY_FLOW, max_agent_turns=NOISY_TURNS)
    _, chat_id = _setup_chat(edge, key, HITL_FLOW)
    md, noisy_md = (("x-api-key", key),), (("x-api-key", neighbour_key),)
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


# The workloads, in the order the table lists them (a mode may leave one out).
GET_CHAT = "`GET /chats/{id}` through Envoy (REST, wrk, 16 connections)"
SESSIONS = "human-in-the-loop sessions through Envoy (gRPC, {clients} clients)"
WATCH_ROUNDS = 300
WATCH = f"WatchChat: message commit -> watcher through Envoy ({WATCH_ROUNDS} answer/reply rounds)"
NOISY = "noisy neighbour: GetChat through Envoy (gRPC, 1 client) while another tenant's fixed-reply run goes on"


def run_workloads(
    edge: str, key: str, neighbour_key: str, args: argparse.Namespace, label: str, latency: bool
) -> dict[str, str]:
    """Each workload's figure by workload; printed as it comes, as a full run takes minutes."""
    results: dict[str, str] = {}

    def report(workload: str, value: str) -> None:
        results[workload] = value
        print(f"{label}: {workload}: {value}", flush=True)

    rps = bench_get_chat(edge, key, args.seconds)
    report(GET_CHAT, f"{rps:,.0f} req/s")
    sps = asyncio.run(bench_sessions(edge, key, args.seconds, args.clients))
    report(SESSIONS.format(clients=args.clients), f"{sps:,.0f} sessions/s")
    if latency:
        lat = sorted(asyncio.run(bench_watch_latency(edge, key, rounds=WATCH_ROUNDS)))
        p50 = statistics.median(lat)
        p99 = lat[int(len(lat) * 0.99) - 1]
        report(WATCH, f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(lat)} messages)")
        # Auth on only: with it off every caller is the same owner, and there is no other tenant.
        lat = sorted(asyncio.run(bench_noisy_neighbour(edge, key, neighbour_key, args.seconds)))
        p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
        report(NOISY, f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(lat)} calls)")
    return results


def side_by_side(columns: dict[str, dict[str, str]]) -> str:
    """One markdown table: a row per workload, a column per configuration ("-" where one was not run)."""
    workloads = list(dict.fromkeys(w for figures in columns.values() for w in figures))
    lines = [
        "| workload | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for workload in workloads:
        lines.append(f"| {workload} | " + " | ".join(f.get(workload, "-") for f in columns.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each throughput run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--cluster", action="store_true", help="PostgreSQL with 1 and with 2 replicas instead of SQLite"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    columns: dict[str, dict[str, str]] = {}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    if args.cluster:
        # The same workloads, auth on as deployed, each configuration on a database of its own.
        for replicas in (1, 2):
            label = f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}"
            with postgres_database() as url, stack(True, url, replicas) as (edge, key, neighbour_key):
                columns[label] = run_workloads(edge, key, neighbour_key, args, label, latency=True)
    else:
        for auth in (True, False):
            label = f"SQLite, auth {'on' if auth else 'off'}"
            with stack(auth) as (edge, key, neighbour_key):
                columns[label] = run_workloads(edge, key, neighbour_key, args, label, latency=auth)
    print()
    print(side_by_side(columns))


if __name__ == "__main__":
    main()
