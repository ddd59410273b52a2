"""The web console in a real browser: Debian's chromium (tools/chromium.sh installs it) driven by playwright-core
(console/e2e/hitl.mjs) through a whole human-in-the-loop chat against a real server + Envoy, which serves the
console at /console/. A screenshot is kept under tests/artifacts/ for a person to look at."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.seed import ECHO_FLOW  # a person (ALWAYS) talks with a fixed-reply agent; no model

from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, create_key

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_DIR = ROOT / "console"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[Stack]:
    npm = shutil.which("npm")
    assert npm, "npm is required (make install uses it)"
    # Built first: Envoy reads the console's files when it loads its config.
    build = subprocess.run([npm, "run", "--silent", "build"], cwd=CONSOLE_DIR, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    s = Stack(tmp_path_factory.mktemp("console"), llm_server.base_url)
    s.start()
    yield s
    s.stop()


def test_console_is_served_without_a_key_and_locked_down(console_stack: Stack) -> None:
    page = httpx.get(f"{console_stack.rest_url}/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert httpx.get(f"{console_stack.rest_url}/console").headers["location"].endswith("/console/")
    assert httpx.get(f"{console_stack.rest_url}/console/no-such-file.js").status_code == 404
    # The API next to it still wants a key.
    assert httpx.get(f"{console_stack.rest_url}/chats").status_code == 401


def test_a_person_completes_a_chat_in_the_browser(console_stack: Stack) -> None:
    assert CHROMIUM.exists(), "tools/chromium.sh installs Debian's chromium (make test runs it)"
    _, key = create_key(console_stack.env, "browser", "browser-owner")
    made = httpx.post(
        f"{console_stack.rest_url}/flows", json={"name": "echo", "flow": ECHO_FLOW}, headers={"X-API-KEY": key}
    )
    assert made.status_code == 200, made.text
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "console-hitl.png"
    screenshot.unlink(missing_ok=True)
    env = {
        **os.environ,
        "CONSOLE_URL": f"{console_stack.rest_url}/console/",
        "AGENTOK_KEY": key,
        "FLOW_NAME": "echo",
        "SCREENSHOT": str(screenshot),
    }
    run = subprocess.run(
        ["node", "e2e/hitl.mjs"], cwd=CONSOLE_DIR, env=env, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert screenshot.stat().st_size > 0
