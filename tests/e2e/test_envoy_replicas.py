"""One real Envoy in front of two real `agentok serve` replicas sharing ONE SQLite data directory.

Envoy spreads requests over both replicas, health-checks each (grpc.health.v1 on the gRPC port, the check
endpoint's health path on the authz port), and after a replica is SIGKILLed routes around it. The check
endpoint's health route answers without a key, so a test also proves that no client request can reach it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentok_server.edge.envoy_config import Upstream, render_envoy_config
from agentok_server.edge.envoy_process import EnvoyProcess, validate_config
from agentok_server.transport.authz_http import CHECK_PREFIX, CHECK_SECRET_HEADER, HEALTH_PATH

from ..support.api import two_agent_flow
from ..support.envoy_admin import AUTHZ_CLUSTER as AUTHZ
from ..support.envoy_admin import GRPC_CLUSTER as GRPC
from ..support.envoy_admin import cluster_hosts, out_of_rotation, served
from ..support.fake_llm import FakeLlmServer
from ..support.stack import LOOPBACK, BehindEnvoy, ServerProcess, agentok_cli, check_secret, create_key, free_port
from ..support.waiting import eventually


@dataclass
class Replicas(BehindEnvoy):
    servers: list[ServerProcess]
    envoy: EnvoyProcess
    key: str
    check_secret: str

    def hosts(self, cluster: str) -> dict[int, dict[str, str]]:
        return cluster_hosts(self.envoy, cluster)

    def served(self, cluster: str) -> dict[int, int]:
        return served(self.envoy, cluster)


@pytest.fixture()
def replicas(tmp_path: Path, llm_server: FakeLlmServer) -> Iterator[Replicas]:
    base_env = {
        **os.environ,
        "AGENTOK_DATA_DIR": str(tmp_path / "data"),  # one SQLite file for both replicas
        "AGENTOK_LLM_BASE_URL": llm_server.base_url,
        "AGENTOK_LLM_MODEL": "echo",
    }
    base_env.pop("DATABASE_URL", None)
    base_env.pop("AGENTOK_DATABASE_URL", None)
    agentok_cli(base_env, "db", "upgrade")
    servers = []
    for n in (1, 2):
        env = {**base_env, "AGENTOK_GRPC_PORT": str(free_port()), "AGENTOK_AUTHZ_PORT": str(free_port())}
        env["AGENTOK_REPLICA_ID"] = f"replica-{n}"
        servers.append(ServerProcess(env, int(env["AGENTOK_GRPC_PORT"]), tmp_path / f"replica-{n}.log"))
    secret = check_secret(base_env)
    envoy = EnvoyProcess(
        work_dir=tmp_path / "envoy",
        listen_host=LOOPBACK,
        listen_port=free_port(),
        upstreams=[s.upstream for s in servers],
        check_secret=secret,
    )
    try:
        for s in servers:
            s.start()
        envoy.start()
        yield Replicas(servers, envoy, create_key(base_env, "replicas", "rita")[1], secret)
    finally:
        envoy.stop()
        for s in servers:
            if s.proc is not None and s.proc.poll() is None:
                s.stop(signal.SIGTERM)


def test_requests_spread_over_both_replicas_and_survive_one_being_killed(replicas: Replicas) -> None:
    http = httpx.Client(base_url=replicas.rest_url, headers={"X-API-KEY": replicas.key}, timeout=10)
    one, two = replicas.servers
    # Envoy is ready before its first health checks have answered: start once both replicas are in rotation.
    eventually(
        lambda: all(h.get("health_flags") == "healthy" for c in (GRPC, AUTHZ) for h in replicas.hosts(c).values()),
        "both replicas healthy in Envoy",
    )
    for _ in range(20):
        r = http.get("/chats")
        assert r.status_code == 200, r.text
    # Envoy's per-host counters: both gRPC ports and both check endpoints answered requests.
    for cluster, ports in ((GRPC, {one.port, two.port}), (AUTHZ, {s.authz_port for s in (one, two)})):
        served = replicas.served(cluster)
        assert set(served) == ports and all(n > 0 for n in served.values()), (cluster, served)

    two.stop(signal.SIGKILL)
    # At once, before any health check noticed: a request Envoy sends to the dead replica fails to connect and
    # is retried on the other one (safe even for writes: it never reached a server), so none fails.
    window = [http.get("/chats").status_code for _ in range(20)]
    window += [http.post("/flows", json={"name": "during", "flow": two_agent_flow()}).status_code for _ in range(5)]
    assert window == [200] * 25

    eventually(lambda: out_of_rotation(replicas.envoy, two), "Envoy to mark the killed replica unhealthy")
    before = replicas.served(GRPC)
    statuses = [http.get("/chats").status_code for _ in range(30)]
    assert statuses == [200] * 30
    after = replicas.served(GRPC)
    assert after[one.port] - before[one.port] == 30 and after[two.port] == before[two.port]
    # A write goes through the replica left, and a read sees it.
    created = http.post("/flows", json={"name": "after the kill", "flow": two_agent_flow()})
    assert created.status_code == 200, created.text
    assert http.get(f"/flows/{created.json()['flow']['id']}").status_code == 200
    http.close()


def test_no_client_request_reaches_the_check_endpoints_health_route(replicas: Replicas) -> None:
    url = replicas.rest_url
    # Envoy's own liveness route answers /healthz itself (its body, not the check endpoint's): no replica sees it.
    r = httpx.get(f"{url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "SERVING"}
    # Every other path is checked, and the check endpoint refuses a keyless one, whatever it looks like.
    for path in ("/healthz/", "/healthz/x", "/check/healthz", "/check", "/HEALTHZ", "/chats", "/x/../healthz/"):
        r = httpx.get(f"{url}{path}")
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.json()["code"] == 16, path
    # Straight at a replica's check port: the health path answers without a key (Envoy's health checker asks
    # it), while what Envoy would send for a client's /healthz is an ordinary, refused check.
    authz = replicas.servers[0].authz_url
    assert httpx.get(f"{authz}{HEALTH_PATH.decode()}").status_code == 200
    # Without the deployment's check secret nothing is even looked at (403); with it, an ordinary refused check.
    assert httpx.get(f"{authz}{CHECK_PREFIX}{HEALTH_PATH.decode()}").status_code == 403
    edge = {CHECK_SECRET_HEADER: replicas.check_secret}
    assert httpx.get(f"{authz}{CHECK_PREFIX}{HEALTH_PATH.decode()}", headers=edge).status_code == 401


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in check endpoint that records what Envoy asks: health path -> 200, anything else -> 401."""

    seen: list[tuple[str, str]]  # (path, user-agent), set per test
    # The check secret and content type each check request carried, in order.
    secrets: list[tuple[str | None, str | None]]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append((self.path, self.headers.get("user-agent", "")))
        if self.path != HEALTH_PATH.decode():
            self.secrets.append((self.headers.get(CHECK_SECRET_HEADER), self.headers.get("content-type")))
        status = 200 if self.path == HEALTH_PATH.decode() else 401
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    do_POST = do_GET  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep pytest's output clean


def test_every_check_request_envoy_sends_starts_with_the_check_prefix(tmp_path: Path) -> None:
    """Only Envoy's health checker ever asks the health path; client requests arrive as CHECK_PREFIX + path."""
    seen: list[tuple[str, str]] = []

    class Recorder(_Recorder):
        pass

    Recorder.seen = seen  # this test's own list
    secrets: list[tuple[str | None, str | None]] = []
    Recorder.secrets = secrets
    recorder = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    # No gRPC server at all: every request is refused by the check before it could be routed.
    upstream = Upstream("127.0.0.1", free_port(), recorder.server_address[1])
    envoy = EnvoyProcess(
        work_dir=tmp_path,
        listen_host="127.0.0.1",
        listen_port=free_port(),
        upstreams=[upstream],
        check_secret="recorded-check-secret",
    )
    try:
        envoy.start()
        client_paths = ["/healthz/", "/check/healthz", "/chats", "/healthz/?x=1"]
        for path in client_paths:
            assert httpx.get(f"{envoy.url}{path}").status_code == 401, path
        eventually(lambda: any(p == HEALTH_PATH.decode() for p, _ in seen), "Envoy's first health check")
    finally:
        envoy.stop()
        recorder.shutdown()
        recorder.server_close()
    checks = [p for p, _ in seen if p != HEALTH_PATH.decode()]
    assert checks == [CHECK_PREFIX + p for p in client_paths]
    # Every check proves it comes from this edge, and never says application/grpc (Envoy would then answer a
    # timed-out check with a gRPC-style 200, which ext_authz reads as an allow).
    assert secrets == [("recorded-check-secret", None)] * len(client_paths)
    assert {agent for p, agent in seen if p == HEALTH_PATH.decode()} == {"Envoy/HC"}


def test_the_single_upstream_keywords_mean_one_upstream(tmp_path: Path) -> None:
    common: dict[str, Any] = {
        "listen_host": "127.0.0.1",
        "listen_port": 8080,
        "admin_socket": Path("/run/agentok-envoy/admin.sock"),
        "check_secret": "render-test-check-secret",
    }
    one = render_envoy_config(**common, upstream_host="127.0.0.1", upstream_port=50051, authz_port=50052)
    assert one == render_envoy_config(**common, upstreams=[Upstream("127.0.0.1", 50051, 50052)])
    with pytest.raises(ValueError):
        render_envoy_config(**common, upstream_host="127.0.0.1", upstream_port=50051)
    with pytest.raises(ValueError):
        render_envoy_config(**common, upstreams=[])
    three = [Upstream("127.0.0.1", 50061 + 10 * n, 50062 + 10 * n) for n in range(3)]
    config = render_envoy_config(**common, upstreams=three)
    for u in three:
        assert f"port_value: {u.grpc_port}}}" in config and f"port_value: {u.authz_port}}}" in config
    path = tmp_path / "envoy.yaml"
    path.write_text(config)
    validate_config(path)  # Envoy itself accepts the field names and values
