"""The offline key commands on a real SQLite file: an operator's mistake is one line on stderr and exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AGENTOK = str(Path(sys.executable).parent / "agentok")


def _agentok(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTOK_DATA_DIR": str(data_dir)}
    env.pop("AGENTOK_DATABASE_URL", None)
    env.pop("DATABASE_URL", None)
    return subprocess.run([AGENTOK, *args], env=env, capture_output=True, text=True, timeout=60)


def test_bad_key_arguments_are_one_line_errors_and_create_nothing(tmp_path: Path) -> None:
    assert _agentok(tmp_path, "db", "upgrade").returncode == 0
    for args, says in ((("keys", "create", ""), "name"), (("keys", "create", "x", "--owner", " "), "owner")):
        done = _agentok(tmp_path, *args)
        assert done.returncode == 1, done
        assert done.stderr.strip().splitlines() == [f"{says}: must not be empty"]
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert _agentok(tmp_path, "keys", "list").stdout == ""
