"""`agentok run`: the gRPC server (or several replicas of it) and Envoy together, with the schema up to
date and a first API key, as `make run` and `make run-cluster` promise."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .app import open_repository, serve
from .devjwt import ensure_dev_keys
from .domain.keys import KeyService
from .edge.envoy_config import JwtConfig, Upstream
from .edge.envoy_process import EnvoyProcess
from .settings import Settings
from .storage import schema

# Replica n (from 0) listens on the configured ports plus n * REPLICA_PORT_STEP.
REPLICA_PORT_STEP = 10

GEN_DESCRIPTOR = "gen/agentok_descriptor.pb"


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
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
    )


async def ensure_first_key(settings: Settings) -> str | None:
    """Creates a key when none is active; returns its secret (shown once), else None."""
    repo = await open_repository(settings)
    try:
        if await repo.count_active_keys():
            return None
        _, secret = await KeyService(repo, cache_seconds=0).create("default", "first key")
        return secret
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
        f"  gRPC (through Envoy):        {settings.http_host}:{settings.http_port}"
        "  (metadata x-api-key or authorization: Bearer)",
        f"  gRPC server (direct, local): {servers}",
        f"  database:                    {_printable(settings.effective_database_url)}",
    ]
    if secret:
        lines.append(f"  first API key (shown once):  {secret}")
    else:
        lines.append("  API key: one exists already; create another with `.venv/bin/agentok keys create NAME`")
    if settings.tokens_enabled and not settings.jwks_uri and not settings.jwks_file:
        lines.append("  bearer tokens:               .venv/bin/agentok token --subject default  (development key pair)")
    lines += ["", "Try:", f"  curl -s {base}/chats -H 'X-API-KEY: {key}'", ""]
    return "\n".join(lines)


def _printable(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _envoy(settings: Settings, upstreams: list[Upstream]) -> EnvoyProcess:
    return EnvoyProcess(
        work_dir=settings.data_dir / "envoy",
        listen_host=settings.http_host,
        listen_port=settings.http_port,
        admin_port=settings.envoy_admin_port,
        upstreams=upstreams,
        concurrency=settings.envoy_concurrency,
        jwt=jwt_config(settings),
    )


async def _prepare(settings: Settings) -> str | None:
    """The development launcher brings the schema up to date itself (`agentok serve` only checks it)."""
    before, after = await asyncio.to_thread(schema.upgrade, settings.usable_database_url())
    if before != after:
        print(f"database schema upgraded: {before or 'empty'} -> {after}", flush=True)
    return await ensure_first_key(settings)


class EdgeFailed(Exception):
    """Envoy would not start; the message is the reason from its log."""


_EDGE_HINT = " (AGENTOK_HTTP_PORT and AGENTOK_ENVOY_ADMIN_PORT move its ports)"


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), text)


async def _run(settings: Settings) -> None:
    """One replica: the server in this process, Envoy beside it."""
    secret = await _prepare(settings)
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve(settings, ready=ready, stop=stop))
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({server, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        ready_wait.cancel()
        server.result()  # raises why the server could not start
        return
    upstreams = [Upstream(settings.grpc_host, settings.grpc_port, settings.authz_port)]
    envoy = _envoy(settings, upstreams)
    try:
        try:
            await asyncio.to_thread(envoy.start)
        except RuntimeError as err:
            stop.set()  # the server shuts down as on Ctrl-C: nothing is left half-running
            await server
            raise EdgeFailed(f"Envoy could not start: {_last_line(str(err))}{_EDGE_HINT}") from None
        print(_banner(settings, secret, upstreams), flush=True)
        await server
    finally:
        envoy.stop()


async def _run_replicas(settings: Settings, replicas: int) -> None:
    """Several replicas, each an `agentok serve` process on its own ports, behind one Envoy."""
    secret = await _prepare(settings)
    upstreams = [
        Upstream(
            settings.grpc_host,
            settings.grpc_port + n * REPLICA_PORT_STEP,
            settings.authz_port + n * REPLICA_PORT_STEP,
        )
        for n in range(replicas)
    ]
    procs: list[asyncio.subprocess.Process] = []
    envoy = _envoy(settings, upstreams)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for upstream in upstreams:
            env = {
                **os.environ,
                "AGENTOK_GRPC_PORT": str(upstream.grpc_port),
                "AGENTOK_AUTHZ_PORT": str(upstream.authz_port),
            }
            procs.append(
                await asyncio.create_subprocess_exec(sys.executable, "-m", "agentok_server.cli", "serve", env=env)
            )
        for upstream, proc in zip(upstreams, procs, strict=True):
            await _wait_healthy(upstream, proc)
        try:
            await asyncio.to_thread(envoy.start)
        except RuntimeError as err:  # the replicas are stopped below
            raise EdgeFailed(f"Envoy could not start: {_last_line(str(err))}{_EDGE_HINT}") from None
        print(_banner(settings, secret, upstreams), flush=True)
        await _supervise(settings, upstreams, procs, stop)
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


async def _supervise(
    settings: Settings, upstreams: list[Upstream], procs: list[asyncio.subprocess.Process], stop: asyncio.Event
) -> None:
    """Until Ctrl-C / SIGTERM, or until no replica is left. A replica that exits leaves the others serving:
    that is the failover a cluster is for, and what `make run-cluster` lets one watch (kill a replica, and
    its runs go on elsewhere)."""
    exits = {
        asyncio.ensure_future(proc.wait()): (n, upstream)
        for n, (upstream, proc) in enumerate(zip(upstreams, procs, strict=True))
    }
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while exits:
            done, _ = await asyncio.wait({*exits, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():  # Ctrl-C also reaches the replicas (one process group): their exits are expected
                return
            for exited in done:
                n, upstream = exits.pop(exited)
                left = len(exits)
                code = exited.result()
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
        for waiting in exits:
            waiting.cancel()


async def _wait_healthy(upstream: Upstream, proc: asyncio.subprocess.Process) -> None:
    """Until the replica answers its health check; raises if it exits first or takes over a minute."""
    async with grpc.aio.insecure_channel(f"{upstream.host}:{upstream.grpc_port}") as channel:
        request = health_pb2.HealthCheckRequest()
        check = asyncio.ensure_future(
            health_pb2_grpc.HealthStub(channel).Check(request, timeout=60, wait_for_ready=True)
        )
        exited = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({check, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            check.cancel()
            raise RuntimeError(f"the replica on port {upstream.grpc_port} exited with code {proc.returncode}")
        exited.cancel()
        check.result()  # raises if it never became healthy


def run_stack(settings: Settings, replicas: int = 1) -> None:
    asyncio.run(_run(settings) if replicas == 1 else _run_replicas(settings, replicas))
