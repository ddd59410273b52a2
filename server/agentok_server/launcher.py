"""`agentok run`: the gRPC server (or several replicas of it) and Envoy together, with the schema up to
date and a first API key, as `make run` and `make run-cluster` promise."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .app import open_repository, serve
from .children import describe_exit, dying_with_parent, exited
from .devjwt import ensure_dev_keys
from .domain.keys import KeyService
from .edge.envoy_browser import CONSOLE_PATH, cors_origins
from .edge.envoy_config import JwtConfig, RateLimit, Upstream
from .edge.envoy_process import EnvoyProcess
from .settings import Settings
from .storage import schema
from .transport.authz_http import CHECK_SECRET_NAME, new_check_secret

# Replica n (from 0) listens on the configured ports plus n * REPLICA_PORT_STEP.
REPLICA_PORT_STEP = 10

def jwt_config(settings: Settings) -> JwtConfig | None:
    """Envoy's bearer-token settings; with no JWKS configured, the development key pair's (created once)."""
    if not settings.tokens_enabled:
        return None
    jwks_file = None if settings.jwks_uri else settings.jwks_file or ensure_dev_keys(settings.dev_jwt_dir)
    return JwtConfig(
        settings.jwt_issuer,
        settings.jwt_audience,
        jwks_file=jwks_file,
        jwks_uri=settings.jwks_uri,
        jwks_ca_file=settings.jwks_ca_file,
    )


def edge_options(settings: Settings, check_secret: str) -> dict[str, Any]:
    """What Envoy's config takes from the settings (besides ports and upstreams)."""
    rate = settings.rate_limit_per_second
    return {
        "jwt": jwt_config(settings),
        "check_secret": check_secret,
        "route_timeout": settings.route_timeout_seconds,
        "rate_limit": RateLimit(rate, max(rate, settings.rate_limit_burst)) if rate else None,
        "cors_allowed_origins": cors_origins(settings.cors_allowed_origins),
    }


async def ensure_first_key(settings: Settings) -> tuple[str | None, str]:
    """Creates a key when none is active; returns its secret (shown once) or None, and the deployment's
    check secret (what Envoy proves itself with to the key check)."""
    repo = await open_repository(settings)
    try:
        check_secret = await repo.server_secret(CHECK_SECRET_NAME, new_check_secret)
        if await repo.count_active_keys():
            return None, check_secret
        _, secret = await KeyService(repo, cache_seconds=0).create("default", "first key")
        return secret, check_secret
    finally:
        await repo.dispose()


def _banner(settings: Settings, secret: str | None, upstreams: list[Upstream]) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    key = secret or "<your key>"
    servers = ", ".join(f"{u.host}:{u.grpc_port}" for u in upstreams)
    lines = [
        "",
        "agentok-grpc is running (Ctrl-C stops it).",
        f"  REST (through Envoy):        {base}",
        f"  web console:                 {base}{CONSOLE_PATH}",
        f"  gRPC (through Envoy):        {settings.http_host}:{settings.http_port}"
        "  (metadata x-api-key or authorization: Bearer)",
        f"  gRPC server (direct, local): {servers}",
        f"  database:                    {_printable(settings.effective_database_url)}",
    ]
    if settings.metrics_port:
        urls = ", ".join(f"http://127.0.0.1:{_metrics_port(settings, n)}/metrics" for n in range(len(upstreams)))
        lines.append(f"  metrics (local):             {urls}")
    if secret:
        lines.append(f"  first API key (shown once):  {secret}")
    else:
        lines.append("  API key: one exists already; create another with `.venv/bin/agentok keys create NAME`")
    if settings.tokens_enabled and not settings.jwks_uri and not settings.jwks_file:
        lines.append("  bearer tokens:               .venv/bin/agentok token --subject default  (development key pair)")
    lines += ["", "Try:", f"  curl -s {base}/chats -H 'X-API-KEY: {key}'", ""]
    return "\n".join(lines)


def _metrics_port(settings: Settings, replica: int) -> int:
    """Replica n's metrics port, moved like its other ports (0: off)."""
    return settings.metrics_port + replica * REPLICA_PORT_STEP if settings.metrics_port else 0


def _printable(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _envoy(settings: Settings, upstreams: list[Upstream], check_secret: str) -> EnvoyProcess:
    return EnvoyProcess(
        work_dir=settings.data_dir / "envoy",
        listen_host=settings.http_host,
        listen_port=settings.http_port,
        upstreams=upstreams,
        concurrency=settings.envoy_concurrency,
        log_level=settings.envoy_log_level,
        **edge_options(settings, check_secret),
    )


async def _prepare(settings: Settings) -> tuple[str | None, str]:
    """The development launcher brings the schema up to date itself (`agentok serve` only checks it)."""
    before, after = await asyncio.to_thread(schema.upgrade, settings.usable_database_url())
    if before != after:
        print(f"database schema upgraded: {before or 'empty'} -> {after}", flush=True)
    return await ensure_first_key(settings)


class LaunchFailed(Exception):
    """`agentok run` cannot start, or cannot go on; the message is one line saying why."""


class EdgeFailed(LaunchFailed):
    """Envoy would not start, or kept exiting; the message is the reason from its log."""


class DataDirInUse(LaunchFailed):
    """Another `agentok run` uses the same data directory."""


_EDGE_HINT = " (AGENTOK_HTTP_PORT moves its port)"

# Envoy exiting on its own is restarted, at most this often: a crash loop ends `agentok run` instead.
ENVOY_RESTARTS = 3
ENVOY_RESTART_WINDOW_SECONDS = 60.0

LOCK_FILE = "agentok.lock"


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), text)


def _say(line: str) -> None:
    print(f"agentok run: {line}", file=sys.stderr, flush=True)


def hold_data_dir(data_dir: Path) -> int:
    """Takes the data directory's lock (an flock on data_dir/agentok.lock, which names the holder's pid) for
    as long as this process lives: two launchers on one data directory would share its database, Envoy's
    work directory and its admin socket. Returns the lock's descriptor; raises DataDirInUse."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_CLOEXEC: the children do not inherit the lock (an Envoy must not keep it after the launcher).
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(
            f"another agentok run (pid {holder}) is using the data directory {data_dir.resolve()}: "
            "stop it, or give this one its own AGENTOK_DATA_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _warn_obsolete_settings() -> None:
    if "AGENTOK_ENVOY_ADMIN_PORT" in os.environ:
        _say("AGENTOK_ENVOY_ADMIN_PORT is no longer used: Envoy's admin is a Unix socket in its work directory")


async def _start_envoy(envoy: EnvoyProcess) -> None:
    """Forked here, on the event loop's (main) thread, then waited for on a worker thread: the readiness
    poll blocks, the fork must not happen on a thread that may go away (see children.py)."""
    envoy.spawn()
    await asyncio.to_thread(envoy.wait_ready)


async def _keep_envoy_up(envoy: EnvoyProcess) -> None:
    """Restarts Envoy whenever it exits without being asked to, each time one line on stderr saying why,
    with the end of its log; more than ENVOY_RESTARTS exits in ENVOY_RESTART_WINDOW_SECONDS raise EdgeFailed
    (the caller then stops everything). Returns only when Envoy was stopped on purpose."""
    restarts: deque[float] = deque()
    while True:
        assert envoy.proc is not None
        await exited(envoy.proc.pid)
        code = envoy.proc.wait()
        if envoy.stopping:
            return
        await asyncio.to_thread(envoy.stop)  # reaps it, and has its whole log written out
        why = f"Envoy exited unexpectedly ({describe_exit(code)}); its log ends: {_last_line(envoy.log_tail())}"
        now = time.monotonic()
        while restarts and now - restarts[0] > ENVOY_RESTART_WINDOW_SECONDS:
            restarts.popleft()
        if len(restarts) >= ENVOY_RESTARTS:
            raise EdgeFailed(
                f"{why}; it was restarted {len(restarts)} times in the last "
                f"{ENVOY_RESTART_WINDOW_SECONDS:g} s already, giving up"
            )
        restarts.append(now)
        window = f"{ENVOY_RESTART_WINDOW_SECONDS:g} s"
        _say(f"{why}; restarting it ({len(restarts)} of at most {ENVOY_RESTARTS} in {window})")
        try:
            await _start_envoy(envoy)
        except RuntimeError as err:  # counted as one more exit on the next round
            _say(f"Envoy did not come back: {_last_line(str(err))}")
            continue
        _say(f"Envoy is serving again on {envoy.url}")


async def _run(settings: Settings) -> None:
    """One replica: the server in this process, Envoy beside it."""
    secret, check_secret = await _prepare(settings)
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve(settings, ready=ready, stop=stop))
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({server, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        ready_wait.cancel()
        server.result()  # raises why the server could not start
        return
    upstreams = [Upstream(settings.grpc_host, settings.grpc_port, settings.authz_port)]
    envoy = _envoy(settings, upstreams, check_secret)
    keeper: asyncio.Task[None] | None = None
    try:
        try:
            await _start_envoy(envoy)
        except RuntimeError as err:
            stop.set()  # the server shuts down as on Ctrl-C: nothing is left half-running
            await server
            raise EdgeFailed(f"Envoy could not start: {_last_line(str(err))}{_EDGE_HINT}") from None
        print(_banner(settings, secret, upstreams), flush=True)
        keeper = asyncio.create_task(_keep_envoy_up(envoy))
        await asyncio.wait({server, keeper}, return_when=asyncio.FIRST_COMPLETED)
        if keeper.done() and keeper.exception() is not None:
            stop.set()  # Envoy gave up: so does the server, as on Ctrl-C
            await server
            keeper.result()
        await server
    finally:
        if keeper is not None:
            keeper.cancel()
        envoy.stop()


async def _relay(output: asyncio.StreamReader, listening: asyncio.Event) -> None:
    """A replica's stdout onto ours; `listening` is set at its "listening on" line (printed once it has bound
    its ports, which no other process can then share)."""
    async for line in output:
        if line.startswith(b"agentok gRPC server listening on"):
            listening.set()
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


async def _run_replicas(settings: Settings, replicas: int) -> None:
    """Several replicas, each an `agentok serve` process on its own ports, behind one Envoy."""
    secret, check_secret = await _prepare(settings)
    upstreams = [
        Upstream(
            settings.grpc_host,
            settings.grpc_port + n * REPLICA_PORT_STEP,
            settings.authz_port + n * REPLICA_PORT_STEP,
        )
        for n in range(replicas)
    ]
    procs: list[asyncio.subprocess.Process] = []
    relays: list[asyncio.Task[None]] = []
    envoy = _envoy(settings, upstreams, check_secret)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for n, upstream in enumerate(upstreams):
            env = {
                **os.environ,
                "AGENTOK_GRPC_PORT": str(upstream.grpc_port),
                "AGENTOK_AUTHZ_PORT": str(upstream.authz_port),
                "AGENTOK_METRICS_PORT": str(_metrics_port(settings, n)),
            }
            # Forked on the event loop's (main) thread: each replica dies with this launcher (children.py).
            proc = await asyncio.create_subprocess_exec(
                *dying_with_parent([sys.executable, "-m", "agentok_server.cli", "serve"]),
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            procs.append(proc)
            listening = asyncio.Event()
            assert proc.stdout is not None
            relays.append(asyncio.create_task(_relay(proc.stdout, listening)))
            await _wait_healthy(upstream, proc, listening)
        try:
            await _start_envoy(envoy)
        except RuntimeError as err:  # the replicas are stopped below
            raise EdgeFailed(f"Envoy could not start: {_last_line(str(err))}{_EDGE_HINT}") from None
        print(_banner(settings, secret, upstreams), flush=True)
        await _supervise(settings, upstreams, procs, stop, envoy)
    finally:
        await asyncio.to_thread(envoy.stop)
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), settings.shutdown_grace_seconds + 10)
            except TimeoutError:
                proc.kill()
        for relay in relays:
            relay.cancel()


async def _supervise(
    settings: Settings,
    upstreams: list[Upstream],
    procs: list[asyncio.subprocess.Process],
    stop: asyncio.Event,
    envoy: EnvoyProcess,
) -> None:
    """Until Ctrl-C / SIGTERM, or until no replica is left, or Envoy keeps exiting (EdgeFailed). A replica
    that exits leaves the others serving: that is the failover a cluster is for, and what `make run-cluster`
    lets one watch (kill a replica, and its runs go on elsewhere). Envoy is restarted as in `_run`."""
    exits = {
        asyncio.ensure_future(proc.wait()): (n, upstream)
        for n, (upstream, proc) in enumerate(zip(upstreams, procs, strict=True))
    }
    stopped = asyncio.ensure_future(stop.wait())
    keeper = asyncio.ensure_future(_keep_envoy_up(envoy))
    try:
        while exits:
            await asyncio.wait({*exits, stopped, keeper}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():  # Ctrl-C also reaches the replicas (one process group): their exits are expected
                return
            if keeper.done():
                keeper.result()  # EdgeFailed: the caller stops the replicas
                return
            for exited_replica in [waiting for waiting in exits if waiting.done()]:
                n, upstream = exits.pop(exited_replica)
                left = len(exits)
                code = exited_replica.result()
                what = f"replica {n + 1} (gRPC {upstream.host}:{upstream.grpc_port}) exited with code {code}"
                # A clean stop (SIGTERM) releases the leases at once; a crash leaves them to lapse.
                when = "at once" if code == 0 else f"once its leases lapse (within {settings.lease_seconds:g} s)"
                if left:
                    print(
                        f"{what}; {left} replica(s) keep serving behind Envoy and take over its runs {when}. "
                        "Ctrl-C stops everything.",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    print(f"{what}; no replica is left, stopping Envoy", file=sys.stderr, flush=True)
    finally:
        stopped.cancel()
        keeper.cancel()
        for waiting in exits:
            waiting.cancel()


async def _wait_healthy(upstream: Upstream, proc: asyncio.subprocess.Process, listening: asyncio.Event) -> None:
    """Until the replica says it has bound its ports and then answers its health check; raises if it exits
    first or takes over a minute. Its own line first: a health check alone would believe whatever answers
    on the port (another server left running there)."""
    exited_first = asyncio.ensure_future(proc.wait())
    bound = asyncio.ensure_future(listening.wait())
    done, _ = await asyncio.wait({bound, exited_first}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    bound.cancel()
    if exited_first in done:
        raise LaunchFailed(f"the replica on port {upstream.grpc_port} exited with code {proc.returncode}")
    if not done:
        exited_first.cancel()
        raise LaunchFailed(f"the replica on port {upstream.grpc_port} did not start within 60 s")
    async with grpc.aio.insecure_channel(f"{upstream.host}:{upstream.grpc_port}") as channel:
        request = health_pb2.HealthCheckRequest()
        check = asyncio.ensure_future(
            health_pb2_grpc.HealthStub(channel).Check(request, timeout=60, wait_for_ready=True)
        )
        done, _ = await asyncio.wait({check, exited_first}, return_when=asyncio.FIRST_COMPLETED)
        if exited_first in done:
            check.cancel()
            raise LaunchFailed(f"the replica on port {upstream.grpc_port} exited with code {proc.returncode}")
        exited_first.cancel()
        check.result()  # raises if it never became healthy


def run_stack(settings: Settings, replicas: int = 1) -> None:
    _warn_obsolete_settings()
    lock = hold_data_dir(settings.data_dir)
    try:
        asyncio.run(_run(settings) if replicas == 1 else _run_replicas(settings, replicas))
    finally:
        os.close(lock)
