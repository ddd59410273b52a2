"""Database URLs as users write them, and as the drivers need them."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url


def async_url(url: str) -> str:
    """`postgresql://` (and `postgres://`, `postgresql+psycopg://`...) -> `postgresql+asyncpg://`: the server
    talks to PostgreSQL through asyncpg only. Other URLs are returned unchanged."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def libpq_dsn(url: str) -> str:
    """The plain `postgresql://` DSN asyncpg.connect() takes (for the LISTEN connection)."""
    return make_url(async_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def private_sqlite_file(url: str) -> None:
    """An SQLite URL's file is made mode 0600 before SQLite opens it (created empty if missing, chmodded if
    not): it holds the key hashes and the server's secrets, and SQLite creates a file with 0644 & ~umask.
    SQLite gives its -wal and -shm files the mode of the database file; existing ones are chmodded too.
    Other URLs (PostgreSQL, in-memory SQLite) are left alone."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    if parsed.database.startswith("file:") or parsed.query.get("mode") == "memory":
        return  # a URI filename: SQLite parses it, not a plain path
    path = Path(parsed.database)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            os.chmod(f"{path}{suffix}", 0o600)
        except FileNotFoundError:
            pass
