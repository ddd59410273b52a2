"""Running the code blocks in a message, as AutoGen's code-execution reply does: off unless the server
turns it on (AGENTOK_CODE_EXECUTION_ENABLED), because it runs model-written code on the server.

Each run gets a fresh scratch directory, a time limit and an output cap; the reply is AutoGen's
`exitcode: N (execution succeeded|failed)\\nCode output: ...`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
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
        scratch = Path(tempfile.mkdtemp(prefix="agentok-code-"))
        logs_all = ""
        exitcode = 0
        try:
            for block in blocks:
                exitcode, logs = await self._run_one(block, scratch)
                logs_all += "\n" + logs
                if exitcode != 0:
                    break
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
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
        # A minimal environment: the server's own settings and secrets are not the code's business.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch), "LANG": "C.UTF-8"}
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=scratch,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = await asyncio.wait_for(self._read_capped(proc), self._timeout)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            return 1, f"Timeout: the code ran longer than {self._timeout:g} seconds"
        except asyncio.CancelledError:
            _kill(proc)
            raise
        return proc.returncode or 0, output

    async def _read_capped(self, proc: asyncio.subprocess.Process) -> tuple[str, int]:
        assert proc.stdout is not None
        data = b""
        while len(data) <= self._limit:
            chunk = await proc.stdout.read(self._limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
        truncated = len(data) > self._limit
        if truncated:
            _kill(proc)  # it may print forever: stop it, the reply has what it can hold
        await proc.wait()
        text = data[: self._limit].decode(errors="replace")
        if truncated:
            text += f"\n[output truncated at {self._limit} bytes]"
        return text, proc.returncode or 0


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
