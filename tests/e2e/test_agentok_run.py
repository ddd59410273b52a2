"""`agentok run` (what `make run` starts): server and Envoy together on a fresh data directory, a first API
key printed once, the development key pair created so `agentok token` works, and Ctrl-C stopping it all."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path

import grpc
import httpx
import pytest

from agentok.v1 import flow_service_pb2, flow_service_pb2_grpc

from ..support.api import Rest, real_flow, with_model
from ..support.fake_llm import FakeLlmServer
from ..support.stack import VENV_BIN, agentok_cli, edge_target, edge_url, free_port
from ..support.waiting import eventually

KEY_LINE = "first API key (shown once):"


def _lines(stream: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """stdout lines as they arrive (None at its end), read on a thread so waits can be bounded."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert stream.stdout is not None
        for line in stream.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str | None], prefix: str, seen: list[str]) -> str:
    """The first line that starts with `prefix` (after stripping), waiting at most a minute for each line."""
    while True:
        line = lines.get(timeout=60)
        if line is None:
            raise AssertionError("agentok run ended its output early:\n" + "\n".join(seen))
        seen.append(line)
        if line.strip().startswith(prefix):
            return line.strip()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_agentok_run_prints_a_working_key_and_agentok_token_works(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    data = tmp_path / "data"
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("AGENTOK_DATABASE_URL", "DATABASE_URL")}
    env.update(
        AGENTOK_DATA_DIR=str(data),
        AGENTOK_GRPC_PORT=str(free_port()),
        AGENTOK_AUTHZ_PORT=str(free_port()),
        AGENTOK_HTTP_PORT=str(http_port),
        AGENTOK_LLM_BASE_URL=llm_server.base_url,
        AGENTOK_LLM_MODEL="echo",
    )
    for name in ("AGENTOK_JWKS_FILE", "AGENTOK_JWKS_URI", "AGENTOK_JWT_ISSUER", "AGENTOK_JWT_AUDIENCE"):
        env.pop(name, None)  # the development key pair's defaults
    proc = subprocess.Popen(
        [str(VENV_BIN / "agentok"), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: a failed test can take Envoy down with it
    )
    try:
        lines, seen = _lines(proc), list[str]()
        key = _until(lines, KEY_LINE, seen).removeprefix(KEY_LINE).strip()
        _until(lines, "Try:", seen)  # the banner's end: Envoy is ready
        assert key.startswith("atk_"), seen

        base = edge_url(http_port)
        by_key = Rest(base, key)
        flow = by_key.create_flow(with_model(real_flow("14"), "m"))
        chat = by_key.create_chat(flow["id"])

        token = agentok_cli(env, "token", "--subject", "default").strip()
        listed = httpx.get(f"{base}/chats", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert listed.status_code == 200, listed.text
        assert [c["id"] for c in listed.json()] == [chat["id"]]

        # What holds secrets is private to the user running it.
        dev_jwt = data / "dev-jwt"
        assert _mode(data) == 0o700 and _mode(dev_jwt) == 0o700
        assert _mode(dev_jwt / "private.pem") == 0o600

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, seen
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the Envoy it started
            proc.wait()
    # Envoy went with it: nothing listens on its port any more.
    try:
        httpx.get(f"{base}/healthz", timeout=5)
        raise AssertionError("Envoy still answers after agentok run stopped")
    except httpx.TransportError:
        pass


@pytest.mark.parametrize("taken", ["AGENTOK_GRPC_PORT", "AGENTOK_AUTHZ_PORT", "AGENTOK_HTTP_PORT"])
def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path: Path, taken: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AGENTOK_DATABASE_URL", "DATABASE_URL")}
    ports = {name: free_port() for name in ("AGENTOK_GRPC_PORT", "AGENTOK_AUTHZ_PORT", "AGENTOK_HTTP_PORT")}
    env.update({name: str(port) for name, port in ports.items()})
    env.update(AGENTOK_DATA_DIR=str(tmp_path / "data"))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[taken]))
        squatter.listen()
        done = subprocess.run(
            [str(VENV_BIN / "agentok"), "run"], env=env, capture_output=True, text=True, timeout=90
        )
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    # Its last line says why (gRPC's C core logs a line of its own before it for the gRPC port).
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("agentok run: ") and str(ports[taken]) in line, done.stderr
    # The setting that moves it (Envoy's listener is AGENTOK_HTTP_PORT).
    assert taken in line, line
    # Nothing it started is left listening.
    for name, port in ports.items():
        if name != taken:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))


# What follows runs `agentok run` as `make run` does and looks at the processes it leaves: each waits on a
# condition (a line of output, a process exit, a port answering), bounded, never on time.


def _env(data: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AGENTOK_DATABASE_URL", "DATABASE_URL")}
    for name in ("AGENTOK_JWKS_FILE", "AGENTOK_JWKS_URI", "AGENTOK_JWT_ISSUER", "AGENTOK_JWT_AUDIENCE"):
        env.pop(name, None)
    env.update(
        AGENTOK_DATA_DIR=str(data),
        AGENTOK_GRPC_PORT=str(free_port()),
        AGENTOK_AUTHZ_PORT=str(free_port()),
        AGENTOK_HTTP_PORT=str(free_port()),
    )
    env.update(settings)
    return env


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the state on (state, ppid, pgrp, session, ...); None once it is gone
    (a zombie counts as gone: it runs nothing and holds no port)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields


def _in_session(sid: int) -> list[int]:
    """The live processes of session `sid` (`agentok run` started with start_new_session: it and all it
    started, Envoy in its own process group included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def _children_named(pid: int, name: str) -> list[int]:
    pids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == name:
                    pids.append(int(child))
            except FileNotFoundError:
                pass
    return pids


def _until_gone(pid: int, what: str, timeout: float = 30.0) -> None:
    eventually(lambda: _stat(pid) is None, f"{what} (pid {pid}) to exit", timeout=timeout)


def _port_free(port: int) -> bool:
    """Nothing listens there (SO_REUSEADDR, as servers bind: connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Launched:
    """One `agentok run` in its own session, its output read line by line."""

    def __init__(self, env: dict[str, str], umask: int = -1) -> None:
        self.env = env
        self.http_port = int(env["AGENTOK_HTTP_PORT"])
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "agentok"), "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            umask=umask,
        )
        self.lines, self.seen = _lines(self.proc), list[str]()
        self.key = ""

    def until(self, prefix: str) -> str:
        return _until(self.lines, prefix, self.seen)

    def ready(self) -> Launched:
        self.key = self.until(KEY_LINE).removeprefix(KEY_LINE).strip()
        self.until("Try:")
        return self

    def envoy_pid(self) -> int:
        (pid,) = _children_named(self.proc.pid, "envoy")
        return pid

    def rest(self) -> Rest:
        return Rest(edge_url(self.http_port), self.key)

    def flow_ids(self) -> list[str]:
        """GET /flows through Envoy with the first key (asserting it answers 200)."""
        listed = self.rest().http.get("/flows")
        assert listed.status_code == 200, listed.text
        return [f["id"] for f in listed.json()["flows"]]

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for pid in _in_session(self.proc.pid):  # whatever a failed test left, Envoy included
            os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def __enter__(self) -> Launched:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def _refused(env: dict[str, str]) -> str:
    """Runs a second `agentok run` that must refuse to start: its last line, once everything it started is
    gone (it is a session leader: nothing of it may be left in its session)."""
    done = subprocess.Popen(
        [str(VENV_BIN / "agentok"), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = done.communicate(timeout=90)
    finally:
        left = _in_session(done.pid)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert done.returncode == 1, err
    assert not left, f"a refused agentok run left processes behind: {left}\n{err}"
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("agentok run: "), err
    return line


def test_a_second_agentok_run_is_refused_in_one_line_and_the_first_keeps_serving(tmp_path: Path) -> None:
    first_env = _env(tmp_path / "data")
    with Launched(first_env) as first:
        first.ready()
        flow = first.rest().create_flow(with_model(real_flow("14"), "m"))

        # The same data directory (on other ports): refused before it touches anything there.
        line = _refused(_env(tmp_path / "data"))
        assert f"another agentok run (pid {first.proc.pid})" in line and "AGENTOK_DATA_DIR" in line, line

        # The same gRPC port: grpc's SO_REUSEPORT would let a second server share it; it is off.
        line = _refused(_env(tmp_path / "other", AGENTOK_GRPC_PORT=first_env["AGENTOK_GRPC_PORT"]))
        assert "AGENTOK_GRPC_PORT" in line and first_env["AGENTOK_GRPC_PORT"] in line, line

        # The same REST port: the second Envoy cannot bind it, and its readiness is its own (the first
        # Envoy answering on the port does not count).
        line = _refused(_env(tmp_path / "other", AGENTOK_HTTP_PORT=first_env["AGENTOK_HTTP_PORT"]))
        assert "AGENTOK_HTTP_PORT" in line and first_env["AGENTOK_HTTP_PORT"] in line, line

        # The first one never noticed.
        assert first.flow_ids() == [flow["id"]]


def test_envoy_killed_under_agentok_run_is_restarted_and_a_crash_loop_ends_it(tmp_path: Path) -> None:
    with Launched(_env(tmp_path / "data")) as run:
        run.ready()
        for restart in range(1, 4):
            os.kill(run.envoy_pid(), signal.SIGKILL)
            line = run.until("agentok run: Envoy exited unexpectedly")
            assert "killed by SIGKILL" in line and f"restarting it ({restart} of at most 3" in line, line
            run.until("agentok run: Envoy is serving again")
            assert run.flow_ids() == []  # REST works again, through the new Envoy
        # A fourth exit within the minute: it gives up, saying why, and stops everything.
        os.kill(run.envoy_pid(), signal.SIGKILL)
        line = run.until("agentok run: Envoy exited unexpectedly")
        assert "giving up" in line, line
        assert run.proc.wait(timeout=60) == 1, run.seen
        assert _in_session(run.proc.pid) == []
        for name in ("AGENTOK_GRPC_PORT", "AGENTOK_AUTHZ_PORT", "AGENTOK_HTTP_PORT"):
            assert _port_free(int(run.env[name])), name


def test_agentok_run_killed_takes_its_envoy_with_it(tmp_path: Path) -> None:
    with Launched(_env(tmp_path / "data")) as run:
        run.ready()
        envoy = run.envoy_pid()
        run.proc.kill()  # SIGKILL: no shutdown code runs in the launcher
        run.proc.wait()
        _until_gone(envoy, "Envoy orphaned by agentok run")
        assert _port_free(run.http_port)


SECRET_HEADER_LINE = re.compile(
    r"(?i)'(x-api-key|authorization|x-agentok-identity|x-jwt-payload|x-agentok-check-secret)', '(.*)$"
)


def test_envoy_at_trace_level_logs_no_credentials_and_secret_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # whatever the umask made of it: an existing, readable directory
    env = _env(data, AGENTOK_ENVOY_LOG_LEVEL="trace")
    with Launched(env, umask=0o022) as run:
        run.ready()
        by_key = run.rest()
        by_key.create_flow(with_model(real_flow("14"), "m"))
        token = agentok_cli(env, "token", "--subject", "default").strip()
        by_token = httpx.get(
            f"{edge_url(run.http_port)}/flows", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert by_token.status_code == 200, by_token.text
        with grpc.insecure_channel(edge_target(run.http_port)) as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            flows.ListFlows(flow_service_pb2.ListFlowsRequest(), metadata=(("x-api-key", run.key),), timeout=30)
        # Under umask 022, in a 0755 directory, the files holding secrets are the user's only (-wal and -shm
        # exist while the server runs).
        for name in ("agentok.db", "agentok.db-wal", "agentok.db-shm", "agentok.lock", "envoy/envoy.log"):
            assert _mode(data / name) == 0o600, name
        assert _mode(data / "envoy" / "envoy.yaml") == 0o600  # it holds the edge's check secret
        run.finish()  # Envoy stopped: its whole log is written
    log = (data / "envoy" / "envoy.log").read_text(errors="replace")
    assert run.key not in log and run.key.removeprefix("atk_") not in log
    assert token not in log
    for part in token.split("."):
        assert part not in log, "a part of the bearer token is in Envoy's log"
    # Trace level did print the requests' headers: each credential header is there, its value redacted.
    headers = [m.groups() for m in map(SECRET_HEADER_LINE.match, log.splitlines()) if m]
    names = {name.lower() for name, _ in headers}
    assert {"x-api-key", "authorization", "x-agentok-identity"} <= names, names
    assert all(value.startswith("[redacted]") for _, value in headers), [v for _, v in headers]
