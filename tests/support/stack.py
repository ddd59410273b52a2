"""Real processes for end-to-end tests: the gRPC server (`agentok serve`) and Envoy in front of it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentok_server.edge.envoy_config import JwtConfig, Upstream
from agentok_server.edge.envoy_process import EnvoyProcess
from agentok_server.storage.repository import Repository, make_engine
from agentok_server.transport.authz_http import CHECK_SECRET_NAME, new_check_secret

from .waiting import eventually

VENV_BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"  # every test process listens here, Envoy included


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def edge_url(port: int) -> str:
    """The REST base URL of an Envoy listening on `port`."""
    return f"http://{LOOPBACK}:{port}"


def edge_target(port: int) -> str:
    """The native gRPC target of the same listener: Envoy serves both on one port."""
    return f"{LOOPBACK}:{port}"


def agentok_cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [str(VENV_BIN / "agentok"), *args], env=env, check=True, capture_output=True, text=True, timeout=60
    )
    return out.stdout


def check_secret(env: dict[str, str]) -> str:
    """The deployment's key-check secret (in its database, made if missing), which Envoy must send with every
    check: what `agentok edge check-secret` prints, read in-process (a CLI process per stack costs a second)."""
    url = env.get("AGENTOK_DATABASE_URL") or env.get("DATABASE_URL")
    if not url:
        url = f"sqlite:///{(Path(env['AGENTOK_DATA_DIR']) / 'agentok.db').resolve()}"

    async def read() -> str:
        repo = Repository(make_engine(url))
        try:
            return await repo.server_secret(CHECK_SECRET_NAME, new_check_secret)
        finally:
            await repo.dispose()

    result: list[str] = []
    # Its own thread and loop: fixtures call this from inside pytest-asyncio's running loop too.
    worker = threading.Thread(target=lambda: result.append(asyncio.run(read())))
    worker.start()
    worker.join(60)
    return result[0]


def create_key(env: dict[str, str], name: str, owner: str) -> tuple[str, str]:
    """Returns (key id, secret) using the real CLI: the secret is the last line of stdout."""
    out = agentok_cli(env, "keys", "create", name, "--owner", owner).strip().splitlines()
    key_id = out[0].split()[3]
    return key_id, out[-1]


class ServerProcess:
    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = env
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def authz_port(self) -> int:
        """The port of its key-check endpoint (Envoy's ext_authz upstream)."""
        return int(self.env["AGENTOK_AUTHZ_PORT"])

    @property
    def authz_url(self) -> str:
        return f"http://{LOOPBACK}:{self.authz_port}"

    @property
    def upstream(self) -> Upstream:
        """Its two ports as an Envoy in front of it is configured with."""
        return Upstream(LOOPBACK, self.port, self.authz_port)

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        proc = self.proc = subprocess.Popen([str(VENV_BIN / "agentok"), "serve"], env=self.env, stdout=log, stderr=log)
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            def health() -> object:
                """SERVING once it is; until then the status or the call's error code."""
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
                try:
                    return stub.Check(health_pb2.HealthCheckRequest(), timeout=1, wait_for_ready=True).status
                except grpc.RpcError as err:
                    return err.code()

            serving = health_pb2.HealthCheckResponse.SERVING
            eventually(health, "the server to report SERVING", timeout=timeout, accept=lambda s: s == serving)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class BehindEnvoy:
    """Addresses of a deployment's Envoy (`envoy` set by the subclass)."""

    envoy: EnvoyProcess

    @property
    def rest_url(self) -> str:
        return edge_url(self.envoy.listen_port)

    @property
    def edge_target(self) -> str:
        return edge_target(self.envoy.listen_port)


class Stack(BehindEnvoy):
    """One server + one Envoy on free loopback ports, over a fresh SQLite file in `root`."""

    def __init__(
        self,
        root: Path,
        llm_base_url: str,
        extra_env: dict[str, str] | None = None,
        jwt: JwtConfig | None = None,
        envoy_options: dict[str, Any] | None = None,
    ) -> None:
        """`envoy_options` go to EnvoyProcess (rate_limit, request_headers_timeout, ...)."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "AGENTOK_DATA_DIR": str(root / "data"),
            "AGENTOK_GRPC_PORT": str(free_port()),
            "AGENTOK_AUTHZ_PORT": str(free_port()),
            "AGENTOK_LLM_BASE_URL": llm_base_url,
            "AGENTOK_LLM_MODEL": "echo",
            "AGENTOK_LLM_ATTEMPTS": "2",
            "AGENTOK_WATCH_KEEPALIVE_SECONDS": "1",
            **(extra_env or {}),
        }
        self.server = ServerProcess(self.env, int(self.env["AGENTOK_GRPC_PORT"]), root / "server.log")
        agentok_cli(self.env, "db", "upgrade")  # as a deployment does: the server only checks the schema
        self.check_secret = check_secret(self.env)
        self.envoy = EnvoyProcess(
            work_dir=root / "envoy",
            listen_host=LOOPBACK,
            listen_port=free_port(),
            upstream_host=LOOPBACK,
            upstream_port=self.server.port,
            authz_port=self.server.authz_port,
            jwt=jwt,
            check_secret=self.check_secret,
            **(envoy_options or {}),
        )

    def start(self) -> Stack:
        try:
            self.server.start()
            self.envoy.start()
        except BaseException:
            self.stop()  # no process outlives a stack that failed to start
            raise
        return self

    def stop(self) -> None:
        self.envoy.stop()
        if self.server.proc is not None and self.server.proc.poll() is None:
            self.server.stop()
