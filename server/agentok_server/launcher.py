"""`agentok run`: the gRPC server and Envoy together, with a first API key, as `make run` promises."""

from __future__ import annotations

import asyncio

from .app import open_repository, serve
from .devjwt import ensure_dev_keys
from .domain.keys import KeyService
from .edge.envoy_config import JwtConfig
from .edge.envoy_process import EnvoyProcess
from .settings import Settings

GEN_DESCRIPTOR = "gen/agentok_descriptor.pb"


def jwt_config(settings: Settings) -> JwtConfig | None:
    """Envoy's bearer-token settings; with no JWKS configured, the development key pair's (created once)."""
    if not settings.tokens_enabled:
        return None
    if settings.jwks_uri:
        return JwtConfig(settings.jwt_issuer, settings.jwt_audience, jwks_uri=settings.jwks_uri)
    jwks_file = settings.jwks_file or ensure_dev_keys(settings.dev_jwt_dir)
    return JwtConfig(settings.jwt_issuer, settings.jwt_audience, jwks_file=jwks_file)


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


def _banner(settings: Settings, secret: str | None) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    key = secret or "<your key>"
    lines = [
        "",
        "agentok-grpc is running (Ctrl-C stops it).",
        f"  REST (through Envoy):        {base}",
        f"  gRPC (through Envoy):        {settings.http_host}:{settings.http_port}"
        "  (metadata x-api-key or authorization: Bearer)",
        f"  gRPC server (direct, local): {settings.grpc_host}:{settings.grpc_port}",
        f"  database:                    {settings.effective_database_url}",
    ]
    if secret:
        lines.append(f"  first API key (shown once):  {secret}")
    else:
        lines.append("  API key: one exists already; create another with `.venv/bin/agentok keys create NAME`")
    if settings.tokens_enabled and not settings.jwks_uri and not settings.jwks_file:
        lines.append("  bearer tokens:               .venv/bin/agentok token --subject default  (development key pair)")
    lines += ["", "Try:", f"  curl -s {base}/chats -H 'X-API-KEY: {key}'", ""]
    return "\n".join(lines)


async def _run(settings: Settings) -> None:
    secret = await ensure_first_key(settings)
    ready = asyncio.Event()
    server = asyncio.create_task(serve(settings, ready=ready))
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({server, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        ready_wait.cancel()
        server.result()  # raises why the server could not start
        return
    jwt = jwt_config(settings)
    envoy = EnvoyProcess(
        work_dir=settings.data_dir / "envoy",
        listen_host=settings.http_host,
        listen_port=settings.http_port,
        admin_port=settings.envoy_admin_port,
        upstream_host=settings.grpc_host,
        upstream_port=settings.grpc_port,
        authz_port=settings.authz_port,
        concurrency=settings.envoy_concurrency,
        jwt=jwt,
    )
    try:
        await asyncio.to_thread(envoy.start)
        print(_banner(settings, secret), flush=True)
        await server
    finally:
        envoy.stop()


def run_stack(settings: Settings) -> None:
    asyncio.run(_run(settings))
