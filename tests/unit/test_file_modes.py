"""Files that hold secrets are created private: the data directory (its database holds the edge identity's
signing secret) and the development key pair."""

from __future__ import annotations

import stat
from pathlib import Path

from agentok_server.devjwt import ensure_dev_keys
from agentok_server.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_is_created_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    Settings(data_dir=data, database_url=None).usable_database_url()
    assert _mode(data) == 0o700


def test_the_development_key_pair_is_private(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "dev-jwt"
    jwks = ensure_dev_keys(directory)
    assert _mode(tmp_path / "data") == 0o700 and _mode(directory) == 0o700
    assert _mode(directory / "private.pem") == 0o600
    assert jwks.read_text().startswith("{")
    assert sorted(p.name for p in directory.iterdir()) == ["jwks.json", "private.pem"]  # no temporary files left
    # Created once: a second call keeps the pair.
    before = (directory / "private.pem").read_bytes()
    assert ensure_dev_keys(directory) == jwks and (directory / "private.pem").read_bytes() == before
