"""`agentok run` (what `make run` starts): server and Envoy together on a fresh data directory, a first API
key printed once, the development key pair created so `agentok token` works, and Ctrl-C stopping it all."""

from __future__ import annotations

import os
import queue
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from ..support.api import Rest, real_flow, with_model
from ..support.fake_llm import FakeLlmServer
from ..support.stack import VENV_BIN, agentok_cli, free_port

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
        # Envoy's --base-id is its admin port: a free one keeps it apart from any other Envoy on this host.
        AGENTOK_ENVOY_ADMIN_PORT=str(free_port()),
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
        lines, seen = _lines(proc), []
        key = _until(lines, KEY_LINE, seen).removeprefix(KEY_LINE).strip()
        _until(lines, "Try:", seen)  # the banner's end: Envoy is ready
        assert key.startswith("atk_"), seen

        base = f"http://127.0.0.1:{http_port}"
        by_key = Rest(base, key)
        flow = by_key.create_flow(with_model(real_flow("14"), "m"))
        chat = by_key.create_chat(flow["id"])

        token = agentok_cli(env, "token", "--subject", "default").strip()
        listed = httpx.get(f"{base}/chats", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert listed.status_code == 200, listed.text
        assert [c["id"] for c in listed.json()["chats"]] == [chat["id"]]

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
    env.update(AGENTOK_DATA_DIR=str(tmp_path / "data"), AGENTOK_ENVOY_ADMIN_PORT=str(free_port()))
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
