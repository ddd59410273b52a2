"""Files that hold secrets are created private: the data directory and the SQLite database in it (the key
hashes, the edge identity's signing secret), the development key pair, and Envoy's config and log."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import Engine, text

from agentok_server.devjwt import ensure_dev_keys
from agentok_server.edge.envoy_process import EnvoyProcess, open_private
from agentok_server.settings import Settings
from agentok_server.storage.repository import make_engine


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


def test_the_sqlite_database_and_its_wal_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # an existing directory others may read
    old = os.umask(0o022)
    try:
        url = Settings(data_dir=data, database_url=None).usable_database_url()
        engine = make_engine(url)
        assert isinstance(engine, Engine)
        with engine.begin() as conn:  # WAL mode: SQLite creates -wal and -shm beside the file
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            for name in ("agentok.db", "agentok.db-wal", "agentok.db-shm"):
                assert _mode(data / name) == 0o600, name
        engine.dispose()
    finally:
        os.umask(old)


def test_an_existing_database_file_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("agentok.db", "agentok.db-wal"):
        (data / name).write_bytes(b"")
        (data / name).chmod(0o644)
    Settings(data_dir=data, database_url=None).usable_database_url()
    assert _mode(data / "agentok.db") == 0o600 and _mode(data / "agentok.db-wal") == 0o600


def test_a_configured_sqlite_url_is_private_too_and_postgres_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.db"
    Settings(database_url=f"sqlite:///{path}").usable_database_url()
    assert _mode(path) == 0o600
    Settings(database_url="postgresql://u@127.0.0.1:1/x").usable_database_url()  # no file, no error


def test_envoy_config_and_log_are_private_whatever_the_umask(tmp_path: Path) -> None:
    work = tmp_path / "envoy"
    envoy = EnvoyProcess(
        work_dir=work, listen_host="127.0.0.1", listen_port=8080, upstream_host="127.0.0.1",
        upstream_port=50051, authz_port=50052, auth=False,
    )
    old = os.umask(0o022)
    try:
        envoy.write_config()
        (work / "envoy.log").write_bytes(b"")
        (work / "envoy.log").chmod(0o644)
        os.close(open_private(envoy.log_path, os.O_WRONLY | os.O_APPEND))  # what spawn opens the log with
    finally:
        os.umask(old)
    assert _mode(work) == 0o700 and _mode(work / "envoy.yaml") == 0o600 and _mode(work / "envoy.log") == 0o600
