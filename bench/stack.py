"""The processes every workload runs against: server replicas + Envoy (as deployed), a throw-away PostgreSQL
database, and what the workloads read off them (RSS, CPU seconds)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentok_server.devjwt import ensure_dev_keys
from agentok_server.edge.envoy_config import JwtConfig, Upstream
from agentok_server.edge.envoy_process import EnvoyProcess

BIN = Path(sys.executable).parent
# Enough turns for the noisy neighbour's run to outlast its measurement: the server's limit is raised to it.
NOISY_TURNS = 1_000_000
POSTGRES_ADMIN = os.environ.get("AGENTOK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of one process, KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds one process has used (its threads included) and, if asked, that of its
    children which have exited and been waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12])
    if reaped_children:
        used += int(fields[13]) + int(fields[14])
    return used / _TICK


def postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL process on the machine, over a run in which nothing else uses PostgreSQL
    much. Backends come and go with connections: one that ended is counted in the postmaster's reaped
    children, or the difference over a run could come out negative."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name), reaped_children=True)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


@contextmanager
def postgres_database() -> Iterator[str]:
    """A throw-away database in the machine's PostgreSQL (`make bench MODE=cluster` makes sure one runs)."""
    name = f"agentok_bench_{uuid.uuid4().hex[:10]}"

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Stack:
    """One running deployment: its public edge (and, with `edge_per_replica`, one Envoy per replica too)."""

    edge: str
    key: str
    neighbour_key: str
    root: Path
    database_url: str
    servers: list[subprocess.Popen[bytes]]
    envoy: EnvoyProcess
    # With edge_per_replica: an Envoy in front of each replica alone, to put two clients on different replicas.
    replica_edges: list[str] = field(default_factory=list)

    @property
    def server_pid(self) -> int:
        return self.servers[0].pid

    @property
    def envoy_pid(self) -> int:
        assert self.envoy.pid is not None
        return self.envoy.pid


def _cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([str(BIN / "agentok"), *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def wait_healthy(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=30, wait_for_ready=True)


def envoy(root: Path, upstreams: list[Upstream], auth: bool, check_secret: str | None) -> EnvoyProcess:
    """Envoy as `make run` deploys it (bearer tokens verified too when auth is on) over `upstreams`."""
    proc = EnvoyProcess(
        work_dir=root,
        listen_host="127.0.0.1",
        listen_port=free_port(),
        upstreams=upstreams,
        jwt=JwtConfig("agentok-dev", "agentok", jwks_file=ensure_dev_keys(root.parent / "dev-jwt")) if auth else None,
        auth=auth,
        check_secret=check_secret,
        # No per-key rate limit: the load generator is one client with one key, and the figures measure the
        # service, not the limit (a deployment keeps it on: AGENTOK_RATE_LIMIT_PER_SECOND).
        rate_limit=None,
    )
    proc.start()
    return proc


@contextmanager
def stack(
    auth: bool, database_url: str | None = None, replicas: int = 1, edge_per_replica: bool = False
) -> Iterator[Stack]:
    """Fresh server replicas + one Envoy (SQLite unless database_url)."""
    root = Path(tempfile.mkdtemp(prefix="agentok-bench-"))
    env = {
        **os.environ,
        "AGENTOK_DATA_DIR": str(root / "data"),
        "AGENTOK_AUTH_ENABLED": "true" if auth else "false",
        "AGENTOK_MAX_AGENT_TURNS_LIMIT": str(NOISY_TURNS),
    }
    if database_url:
        env["AGENTOK_DATABASE_URL"] = database_url
    _cli(env, "db", "upgrade")
    key = _cli(env, "keys", "create", "bench").splitlines()[-1]
    neighbour_key = _cli(env, "keys", "create", "neighbour", "--owner", "neighbour").splitlines()[-1]
    check_secret = _cli(env, "edge", "check-secret")
    servers: list[subprocess.Popen[bytes]] = []
    upstreams: list[Upstream] = []
    edges: list[EnvoyProcess] = []
    try:
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
            wait_healthy(upstream.grpc_port)
        edges.append(envoy(root / "envoy", upstreams, auth, check_secret))
        if edge_per_replica:
            edges += [envoy(root / f"envoy-{n}", [u], auth, check_secret) for n, u in enumerate(upstreams)]
        yield Stack(
            edge=f"127.0.0.1:{edges[0].listen_port}",
            key=key,
            neighbour_key=neighbour_key,
            root=root,
            database_url=database_url or f"sqlite:///{root / 'data' / 'agentok.db'}",
            servers=servers,
            envoy=edges[0],
            replica_edges=[f"127.0.0.1:{e.listen_port}" for e in edges[1:]],
        )
    finally:
        for proc in edges:
            proc.stop()
        stop_all(servers)
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("kept", root)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
