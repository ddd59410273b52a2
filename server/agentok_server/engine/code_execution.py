"""Running the code blocks in a message, as AutoGen's code-execution reply does: off unless the server
turns it on (AGENTOK_CODE_EXECUTION_ENABLED), because it runs model-written code on the server.

Each run gets a fresh scratch directory, a time limit and an output cap; the reply is AutoGen's
`exitcode: N (execution succeeded|failed)\\nCode output: ...`. The sandbox itself (`run_sandboxed`,
`scratch_directory`) is shared with python tools (python_tool.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PYTHON = {"python", "py", "python3", "Python"}
SHELL = {"bash", "shell", "sh"}
_BLOCK = re.compile(r"```[ \t]*(\w+)?[ \t]*\r?\n(.*?)\r?\n[ \t]*```", re.DOTALL)


@dataclass(frozen=True)
class CodeBlock:
    lang: str
    code: str


def extract_code_blocks(text: str) -> list[CodeBlock]:
    """The fenced code blocks of a message; a block without a language is taken as Python (or shell,
    when it reads like a command line), as AutoGen infers it."""
    blocks = []
    for lang, code in _BLOCK.findall(text):
        if not lang:
            lang = "sh" if re.match(r"\s*(pip|python3?|apt|bash|sh|ls|cd|echo)\b", code) else "python"
        blocks.append(CodeBlock(lang=lang, code=code))
    return blocks


class CodeExecutor:
    def __init__(self, *, timeout_seconds: float, output_limit: int) -> None:
        self._timeout = timeout_seconds
        self._limit = output_limit

    async def run(self, blocks: list[CodeBlock]) -> str:
        """Runs the blocks in order, stopping at the first failure; returns AutoGen's reply text."""
        logs_all = ""
        exitcode = 0
        with scratch_directory("agentok-code-") as scratch:
            for block in blocks:
                exitcode, logs = await self._run_one(block, scratch)
                logs_all += "\n" + logs
                if exitcode != 0:
                    break
        outcome = "execution succeeded" if exitcode == 0 else "execution failed"
        return f"exitcode: {exitcode} ({outcome})\nCode output: {logs_all}"

    async def _run_one(self, block: CodeBlock, scratch: Path) -> tuple[int, str]:
        if block.lang in PYTHON:
            script, argv = scratch / "main.py", [sys.executable, "-I", "main.py"]
        elif block.lang in SHELL:
            script, argv = scratch / "main.sh", ["/bin/sh", "main.sh"]
        else:
            return 1, f"unknown language {block.lang}"
        script.write_text(block.code)
        done = await run_sandboxed(argv, scratch, time_limit=self._timeout, output_limit=self._limit)
        if done.timed_out:
            return 1, f"Timeout: the code ran longer than {self._timeout:g} seconds"
        text = done.output.decode(errors="replace")
        if done.truncated:
            text += f"\n[output truncated at {self._limit} bytes]"
        return done.exitcode, text


# The sandbox: what code blocks and python tools (python_tool.py) share.


@dataclass(frozen=True)
class Sandboxed:
    """How a sandboxed process ended: its exit code and what it wrote to stdout and stderr (at most the cap).
    `truncated`: it wrote more and was killed for it; `timed_out`: it was killed at the time limit."""

    exitcode: int
    output: bytes
    truncated: bool = False
    timed_out: bool = False


@contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A fresh directory for one run, removed with everything in it afterwards (also on cancellation)."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def run_sandboxed(
    argv: Sequence[str], scratch: Path, *, time_limit: float, output_limit: int, stdin: bytes | None = None
) -> Sandboxed:
    """Runs `argv` in `scratch` with a minimal environment, in a session of its own (so killing it kills what it
    started), fed `stdin` (else /dev/null), its stdout and stderr read together up to `output_limit` bytes.
    Cancelling the caller kills the process group at once."""
    # A minimal environment: the server's own settings and secrets are not the code's business.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch), "LANG": "C.UTF-8"}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=scratch,
        env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if stdin is None:
            output, truncated = await asyncio.wait_for(_read_capped(proc, output_limit), time_limit)
        else:
            _, (output, truncated) = await asyncio.wait_for(
                asyncio.gather(_feed(proc, stdin), _read_capped(proc, output_limit)), time_limit
            )
    except TimeoutError:
        await _stopped(proc)
        return Sandboxed(exitcode=1, output=b"", timed_out=True)
    except asyncio.CancelledError:
        _kill(proc)
        raise
    return Sandboxed(exitcode=proc.returncode or 0, output=output, truncated=truncated)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # it exited, or closed stdin, without reading it all: what it did is in its output
    finally:
        proc.stdin.close()


async def _read_capped(proc: asyncio.subprocess.Process, limit: int) -> tuple[bytes, bool]:
    assert proc.stdout is not None
    data = b""
    while len(data) <= limit:
        chunk = await proc.stdout.read(limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    truncated = len(data) > limit
    if truncated:
        await _stopped(proc)  # it may print forever: stop it, the reply has what it can hold
    await proc.wait()
    return data[:limit], truncated


async def _stopped(proc: asyncio.subprocess.Process) -> None:
    """Kills the process group and reads what is left of the output to its end. Without that, a reader that paused
    (over 128 KiB buffered, unread) never sees the pipe close, and wait() (which, in Python 3.11, waits for the
    pipes too) would never return."""
    _kill(proc)
    if proc.stdout is not None:
        while await proc.stdout.read(1 << 16):
            pass
    await proc.wait()


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
