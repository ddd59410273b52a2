"""Database URLs as users write them, and as the drivers need them."""

from __future__ import annotations

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
