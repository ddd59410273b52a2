"""`make bench`: the speed figures in the README, measured against real processes on this machine, each beside
what it is read against in the same run (the transport's ceiling, auth off, a smaller history, SQLite).

Sections (`--only` picks some; `--quick` makes every N small, to smoke-test the bench itself):
  reads     GetChat and a 50-message ListMessages page through Envoy, REST (wrk) and native gRPC (h2load), with
            auth on and off, and the ceiling: the same Envoy config before a servicer answering from memory
            (bench/ceiling.py); CPU per request of the server, Envoy (and PostgreSQL);
  sessions  human-in-the-loop sessions (gRPC, 16 clients), a message's commit -> a watcher, a noisy neighbour;
  watchers  N idle WatchChat streams on one chat, gRPC and SSE, N = 1,000 and 10,000 (bench/watchers.py);
  history   pages of a chat of 1,000 and 1,000,000 messages, of an owner with 100 and 100,000 chats;
  delta     streaming deltas' latency (bench/delta_latency.py, when it is there).
With --cluster: reads and sessions on SQLite (the baseline), then on PostgreSQL with 1 and 2 replicas, and
with 2, a watcher on one replica while the run goes on the other.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: import the bench as the package it is
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentok_server.edge.envoy_config import Upstream
from bench import ceiling, history, reads, sessions, watchers
from bench.seed import HITL_FLOW, insert_messages, setup_chat
from bench.stack import Stack, envoy, free_port, postgres_database, stack, wait_healthy
from bench.table import Figure, Goal, Table

CEILING = "ceiling (no auth, no database)"
SQLITE_ON, SQLITE_OFF = "SQLite, auth on", "SQLite, auth off"
READ_GOAL = Goal(">= 0.70 of the ceiling", min_ratio=0.70)
AUTH_GOAL = Goal("auth <= 15% of a read (>= 0.85)", min_ratio=0.85)
POSTGRES_GOAL = Goal(">= 0.80 of SQLite", min_ratio=0.80)
# A page's cost within 20% of the small history's: its rate at least 1 / 1.2 of the small one's.
HISTORY_GOAL = Goal("cost within 20% (>= 0.83)", min_ratio=1 / 1.2)
WATCH_ROUNDS = 300


def key_of(config: str, workload: str) -> str:
    return f"{config}/{workload}"


def add_reads(table: Table, config: str, loads: dict[str, reads.Load], baseline: str | None, goal: Goal | None) -> None:
    for workload, load in loads.items():
        gets = workload.startswith("GetChat")
        table.add(
            Figure(
                key_of(config, workload),
                workload,
                config,
                f"{load.rps:,.0f} req/s",
                load.rps,
                key_of(baseline, workload) if baseline else None,
                goal if gets else None,
            )
        )
        if load.cpu_ms:
            cost = ", ".join(f"{name} {ms:.3f}" for name, ms in load.cpu_ms.items())
            table.note(f"{workload}: CPU ms per request", config, cost)


def chat_with_page(s: Stack) -> str:
    _, chat_id = setup_chat(s.edge, s.key, HITL_FLOW)
    insert_messages(s.database_url, chat_id, reads.PAGE + 10)
    return chat_id


def meter(s: Stack, postgres: bool = False) -> reads.CpuMeter:
    return reads.CpuMeter({"server": [p.pid for p in s.servers], "envoy": [s.envoy_pid]}, postgres)


def run_reads(table: Table, args: argparse.Namespace) -> None:
    answers = Path(tempfile.mkdtemp(prefix="agentok-bench-ceiling-"))
    try:
        with stack(auth=False) as s:
            chat_id = chat_with_page(s)
            ceiling.capture(s.edge, (), chat_id, reads.PAGE, answers)
            add_reads(table, SQLITE_OFF, reads.reads(s.edge, None, chat_id, args.seconds, meter(s)), CEILING, None)
        port = free_port()
        with ceiling.ceiling_server(port, answers):
            wait_healthy(port)
            edge = envoy(answers / "envoy", [Upstream("127.0.0.1", port, free_port())], False, None)
            try:
                add_reads(
                    table,
                    CEILING,
                    reads.reads(f"127.0.0.1:{edge.listen_port}", None, chat_id, args.seconds),
                    None,
                    None,
                )
            finally:
                edge.stop()
    finally:
        shutil.rmtree(answers, ignore_errors=True)
    with stack(auth=True) as s:
        loads = reads.reads(s.edge, s.key, chat_with_page(s), args.seconds, meter(s))
        add_reads(table, SQLITE_ON, loads, CEILING, READ_GOAL)
    for workload, load in loads.items():
        base = key_of(SQLITE_OFF, workload)
        table.add(
            Figure(
                key_of("auth on / off", workload),
                workload,
                "auth on / off",
                f"{load.rps:,.0f} req/s",
                load.rps,
                base,
                AUTH_GOAL,
            )
        )


def add_sessions(table: Table, s: Stack, config: str, args: argparse.Namespace, baseline: str | None = None) -> None:
    workload = f"human-in-the-loop sessions (gRPC, {args.clients} clients)"
    cpu = meter(s, postgres=s.database_url.startswith("postgres"))
    before = cpu.read()
    sps = asyncio.run(sessions.bench_sessions(s.edge, s.key, args.seconds, args.clients))
    cost = cpu.per_request(before, sps * args.seconds)
    table.note(f"{workload}: CPU ms per session", config, ", ".join(f"{n} {ms:.2f}" for n, ms in cost.items()))
    goal = POSTGRES_GOAL if baseline else None
    table.add(
        Figure(
            key_of(config, workload),
            workload,
            config,
            f"{sps:,.0f} sessions/s",
            sps,
            key_of(baseline, workload) if baseline else None,
            goal,
        )
    )
    lat = sorted(asyncio.run(sessions.bench_watch_latency(s.edge, s.key, rounds=args.rounds)))
    add_latency(table, config, f"WatchChat: commit -> watcher ({args.rounds} rounds)", lat)


def add_latency(table: Table, config: str, workload: str, lat: list[float]) -> None:
    p50, p99 = statistics.median(lat), watchers.percentile(lat, 0.99)
    table.add(
        Figure(key_of(config, workload), workload, config, f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(lat)})", p99)
    )


def run_sessions(table: Table, args: argparse.Namespace) -> None:
    with stack(auth=True) as s:
        add_sessions(table, s, SQLITE_ON, args)
        lat = asyncio.run(sessions.bench_noisy_neighbour(s.edge, s.key, s.neighbour_key, args.seconds))
        add_latency(table, SQLITE_ON, "noisy neighbour: GetChat (gRPC, 1 client) beside another tenant's run", lat)


def run_watchers(table: Table, args: argparse.Namespace) -> None:
    counts = (100, 1000) if args.quick else (1000, 10_000)
    for kind in ("grpc", "sse"):
        for count in counts:
            with stack(auth=True) as s:

                def get_chat(chat_id: str, s: Stack = s) -> float:
                    return reads.wrk(f"http://{s.edge}/chats/{chat_id}", s.key, args.seconds, strict=False).rps

                w = watchers.measure(s, kind, count, get_chat)
            config = f"{count:,} {'gRPC' if kind == 'grpc' else 'SSE'} watchers"
            table.add(
                Figure(
                    key_of(config, "server RSS"),
                    "server RSS per watcher",
                    config,
                    f"{w.server_kib:.1f} KiB",
                    w.server_kib,
                    goal=Goal("<= 30 KiB", max_value=30),
                )
            )
            table.add(
                Figure(
                    key_of(config, "envoy RSS"), "Envoy RSS per watcher", config, f"{w.envoy_kib:.1f} KiB", w.envoy_kib
                )
            )
            table.add(
                Figure(
                    key_of(config, "fan-out"),
                    "one commit -> every watcher",
                    config,
                    f"p50 {w.p50_ms:.0f} ms, p99 {w.p99_ms:.0f} ms",
                    w.p99_ms,
                    goal=Goal("p99 <= 500 ms", max_value=500),
                )
            )
            missing = count - w.received
            table.add(
                Figure(
                    key_of(config, "received"),
                    "watchers open / that got it",
                    config,
                    f"{w.opened:,} / {w.received:,} of {count:,}",
                    missing,
                    goal=Goal("all", max_value=0),
                )
            )
            table.add(
                Figure(
                    key_of(config, "without"),
                    "GetChat REST without watchers",
                    config,
                    f"{w.rps_without:,.0f} req/s",
                    w.rps_without,
                )
            )
            table.add(
                Figure(
                    key_of(config, "during"),
                    "GetChat REST while they watch",
                    config,
                    f"{w.rps_during:,.0f} req/s",
                    w.rps_during,
                    key_of(config, "without"),
                    Goal(">= 0.90", min_ratio=0.90),
                )
            )


def run_history(table: Table, args: argparse.Namespace) -> None:
    messages = (1000, 20_000) if args.quick else (1000, 1_000_000)
    chats = (100, 5000) if args.quick else (100, 100_000)
    with stack(auth=True) as s:
        small, big = (history.message_pages(s, n, args.history_seconds) for n in messages)
        add_history(table, "ListMessages (gRPC, 50)", "messages", messages, small, big)
        small = history.chat_pages(s, s.key, chats[0], args.history_seconds)
        big = history.chat_pages(s, s.neighbour_key, chats[1], args.history_seconds)
        add_history(table, "ListChats (gRPC, 50)", "chats", chats, small, big)


def add_history(
    table: Table, workload: str, what: str, counts: tuple[int, int], small: dict[str, float], big: dict[str, float]
) -> None:
    for page in history.PAGES:
        name = f"{workload}, {page} page"
        configs = [f"{n:,} {what}" for n in counts]
        table.add(Figure(key_of(configs[0], name), name, configs[0], f"{small[page]:,.0f} req/s", small[page]))
        table.add(
            Figure(
                key_of(configs[1], name),
                name,
                configs[1],
                f"{big[page]:,.0f} req/s",
                big[page],
                key_of(configs[0], name),
                HISTORY_GOAL,
            )
        )


def run_cluster(table: Table, args: argparse.Namespace) -> None:
    with stack(auth=True) as s:
        add_reads(table, SQLITE_ON, reads.reads(s.edge, s.key, chat_with_page(s), args.seconds, meter(s)), None, None)
        add_sessions(table, s, SQLITE_ON, args)
    for replicas in (1, 2):
        config = f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}"
        with postgres_database() as url, stack(True, url, replicas, edge_per_replica=replicas > 1) as s:
            loads = reads.reads(s.edge, s.key, chat_with_page(s), args.seconds, meter(s, postgres=True))
            add_reads(table, config, loads, SQLITE_ON, POSTGRES_GOAL)
            add_sessions(table, s, config, args, baseline=SQLITE_ON)
            if replicas > 1:
                watch, run = s.replica_edges
                lat = asyncio.run(sessions.bench_watch_latency(watch, s.key, args.rounds, run_edge=run))
                add_latency(table, config, "WatchChat: run on one replica -> watcher on the other", lat)


def run_delta(table: Table, args: argparse.Namespace) -> None:
    """Streaming deltas' latency: bench/delta_latency.py's rows, when that module is there."""
    if importlib.util.find_spec("bench.delta_latency") is None:
        table.note("streaming deltas", "-", "bench/delta_latency.py is not there yet")
        return
    from bench import delta_latency  # type: ignore[attr-defined,unused-ignore]

    try:
        rows = delta_latency.run(args)
    except Exception as err:  # noqa: BLE001 -- the rest of the table is still worth printing
        table.note("streaming deltas", "-", f"failed: {type(err).__name__}: {str(err)[:200]}")
        return
    for workload, text in rows:
        table.note(workload, "deltas", text)


SECTIONS = {
    "reads": run_reads,
    "sessions": run_sessions,
    "watchers": run_watchers,
    "history": run_history,
    "delta": run_delta,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each throughput run")
    parser.add_argument("--history-seconds", type=int, default=3, help="duration of each history page's run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=WATCH_ROUNDS, help="answer/reply rounds of the watch latency")
    parser.add_argument("--quick", action="store_true", help="small N and short runs: a smoke test of the bench")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument("--cluster", action="store_true", help="SQLite, then PostgreSQL with 1 and with 2 replicas")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.history_seconds, args.rounds = min(args.seconds, 2), 1, 20
    return args


def main() -> None:
    args = parse()
    for tool in ("wrk", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: `make bench` installs it (apt-get install wrk nghttp2-client)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    table = Table()
    if args.cluster:
        run_cluster(table, args)
        if not args.only or "delta" in args.only:
            run_delta(table, args)  # it reads args.cluster: deltas across two PostgreSQL replicas too
    else:
        for name, section in SECTIONS.items():
            if not args.only or name in args.only:
                section(table, args)
    print()
    print(table.render())


if __name__ == "__main__":
    main()
