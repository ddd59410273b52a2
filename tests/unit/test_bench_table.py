"""The bench's own code, without its processes: `make bench` is run rarely, so its table building (ratios to
the baselines, goals met or not) and its SSE reader are kept from rotting here. No timing is asserted."""

from __future__ import annotations

import time

from bench import run
from bench.reads import Load
from bench.table import Figure, Goal, Table
from bench.watchers import percentile, sse_latency


def test_the_table_reads_each_figure_against_its_baseline_and_goal() -> None:
    table = Table()
    loads = {"GetChat, REST": Load(1000.0, {"server": 0.5, "envoy": 0.25}), "ListMessages (50), gRPC": Load(400.0)}
    run.add_reads(table, run.CEILING, loads, None, None)
    run.add_reads(table, run.SQLITE_ON, {k: Load(v.rps * 0.6) for k, v in loads.items()}, run.CEILING, run.READ_GOAL)
    table.add(
        Figure(
            "w/rss",
            "server RSS per watcher",
            "1,000 gRPC watchers",
            "12.0 KiB",
            12.0,
            goal=Goal("<= 30 KiB", max_value=30),
        )
    )
    run.add_history(
        table,
        "ListChats (gRPC, 50)",
        "chats",
        (100, 100_000),
        {p: 100.0 for p in run.history.PAGES},
        {p: 90.0 for p in run.history.PAGES},
    )
    table.note("streaming deltas", "-", "not there yet")

    rows = {(line.split(" | ")[0][2:], line.split(" | ")[1]): line for line in table.render().splitlines()[2:]}
    assert "| 0.60 | >= 0.70 of the ceiling (NOT met) |" in rows[("GetChat, REST", run.SQLITE_ON)]
    # Only GetChat carries the read goal; every read still shows its ratio.
    assert rows[("ListMessages (50), gRPC", run.SQLITE_ON)].endswith("| 0.60 | - |")
    assert "server 0.500, envoy 0.250" in rows[("GetChat, REST: CPU ms per request", run.CEILING)]
    assert rows[("server RSS per watcher", "1,000 gRPC watchers")].endswith("| - | <= 30 KiB (met) |")
    assert "| 0.90 | cost within 20% (>= 0.83) (met) |" in rows[("ListChats (gRPC, 50), last page", "100,000 chats")]
    assert ("streaming deltas", "-") in rows


def test_the_bench_parses_its_quick_options() -> None:
    args = run.parse(["--quick", "--only", "reads"])
    assert (args.seconds, args.rounds, args.only) == (2, 20, ["reads"])


def test_the_sse_reader_times_message_events_only() -> None:
    line = b'data: {"event": {"seq": "3", "message_added": {"content": "hi", "created_at": "2026-12-01T10:00:00Z"}}}'
    created = 1_796_119_200.0  # 2026-12-01T10:00:00Z
    assert sse_latency(line, created + 0.25) == 0.25
    assert sse_latency(b'data: {"event": {"keep_alive": {}}}', time.time()) is None
    assert sse_latency(b"id: 3", time.time()) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
