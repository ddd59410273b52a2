"""The `agentok` command: run the service, and manage API keys offline (bootstrap)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from .settings import Settings

if TYPE_CHECKING:
    from .domain.keys import KeyService

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="agentok-grpc: Agentok's chat API over gRPC + REST.",
)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys (works with the server down).")
app.add_typer(keys_app, name="keys")
db_app = typer.Typer(no_args_is_help=True, help="The database schema: upgrade it, or see where it is.")
app.add_typer(db_app, name="db")
edge_app = typer.Typer(no_args_is_help=True, help="What an Envoy in front of the servers needs to know.")
app.add_typer(edge_app, name="edge")


def _with_keys(settings: Settings, use: Callable[[KeyService], Awaitable[T]]) -> T:
    """Runs `use` with a key service on the configured database, then closes the database."""
    from .app import open_repository
    from .domain.errors import DomainError
    from .domain.keys import KeyService
    from .storage.schema import SchemaOutOfDate

    async def main() -> T:
        try:
            repo = await open_repository(settings)
        except SchemaOutOfDate as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(1) from None
        try:
            return await use(KeyService(repo, cache_seconds=0))
        except DomainError as err:  # the operator's mistake: one line, not a traceback
            typer.echo(err.message, err=True)
            raise typer.Exit(1) from None
        finally:
            await repo.dispose()

    return asyncio.run(main())


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise typer.BadParameter("use a number and a unit, e.g. 90s, 30m, 12h, 7d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A label such as 'production'.")],
    owner: Annotated[str, typer.Option(help="Who the key's chats and flows belong to.")] = "default",
    admin: Annotated[bool, typer.Option("--admin", help="The key may also manage its owner's API keys.")] = False,
    expires_in: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d or 12h; default: never expires.")] = None,
) -> None:
    """Creates a key; the secret is printed once, alone on the last line."""
    from .domain.model import KeyScope

    expires_at = datetime.now(UTC) + _duration(expires_in) if expires_in else None
    scope = KeyScope.ADMIN if admin else KeyScope.CHAT
    key, secret = _with_keys(Settings(), lambda keys: keys.create(owner, name, scope=scope, expires_at=expires_at))
    typer.echo(
        f"created API key {key.id} ({key.name}, owner {key.owner}, scope {key.scope.value}); "
        "store it now, it is not shown again:"
    )
    typer.echo(secret)


@keys_app.command("list")
def keys_list() -> None:
    """One key per line: id, name, owner, scope, prefix, created, status. Never the secret."""
    for key in _with_keys(Settings(), lambda keys: keys.list_all()):
        if key.revoked_at:
            status = f"revoked {key.revoked_at.isoformat()}"
        elif key.expires_at:
            status = f"expires {key.expires_at.isoformat()}"
        else:
            status = "active"
        typer.echo(
            f"{key.id}\t{key.name}\t{key.owner}\t{key.scope.value}\t{key.prefix}…\t"
            f"{key.created_at.isoformat()}\t{status}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (first column of `keys list`).")],
) -> None:
    """Revokes a key; servers stop accepting it within a second."""
    from .domain.errors import NotFound

    try:
        _with_keys(Settings(), lambda keys: keys.revoke(key_id))
    except NotFound as err:
        typer.echo(err.message, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {key_id}")


@contextmanager
def _database_errors() -> Iterator[None]:
    """A database that can't be reached or migrated: one clear line and exit code 1, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from .storage.schema import SchemaOutOfDate

    try:
        yield
    except SchemaOutOfDate as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    except (SQLAlchemyError, OSError) as err:
        typer.echo(f"cannot use the database: {str(err).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrates the database (DATABASE_URL, or the SQLite file in AGENTOK_DATA_DIR) to this build's schema."""
    from .storage import schema

    with _database_errors():
        before, after = schema.upgrade(Settings().usable_database_url())
    if before == after:
        typer.echo(f"the schema is up to date (revision {after})")
    elif before == schema.PRE_MIGRATIONS:
        typer.echo(f"adopted a database made before migrations (its data kept) and upgraded it to revision {after}")
    else:
        typer.echo(f"upgraded the schema from {before or 'empty'} to revision {after}")


@db_app.command("current")
def db_current() -> None:
    """Prints the database's schema revision; exit code 1 when it is not this build's."""
    from .storage import schema

    with _database_errors():
        revision = schema.current_revision(Settings().usable_database_url())
    head = schema.head_revision()
    if revision == head:
        typer.echo(f"{revision} (up to date)")
        return
    typer.echo(f"{revision or 'no schema'} (this build needs {head}: run `agentok db upgrade`)")
    raise typer.Exit(1)


@edge_app.command("check-secret")
def edge_check_secret() -> None:
    """Prints the deployment's key-check secret (created if none exists): Envoy adds it to every check
    request (render_envoy_config(check_secret=...)), and the key check mints no identity without it.
    Treat it like a key: whoever has it can obtain an identity from a reachable check port."""
    from .app import open_repository
    from .transport.authz_http import CHECK_SECRET_NAME, new_check_secret

    async def main() -> str:
        repo = await open_repository(Settings())
        try:
            return await repo.server_secret(CHECK_SECRET_NAME, new_check_secret)
        finally:
            await repo.dispose()

    with _database_errors():
        typer.echo(asyncio.run(main()))


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="The owner the token acts as (its sub claim).")] = "default",
    ttl: Annotated[
        str, typer.Option(help="Lifetime, e.g. 15m or 1h; at most AGENTOK_JWT_MAX_LIFETIME_SECONDS (24h).")
    ] = "15m",
) -> None:
    """Signs a short-lived bearer token with the development key pair (`make run` creates it)."""
    from .devjwt import sign_dev_token

    settings = Settings()
    lifetime = int(_duration(ttl).total_seconds())
    # The edge refuses tokens that expire further ahead than this: better to say so now than to print a
    # token that gets 401 on first use.
    if not 0 < lifetime <= settings.jwt_max_lifetime_seconds:
        raise typer.BadParameter(
            f"must be between 1s and {settings.jwt_max_lifetime_seconds}s "
            "(AGENTOK_JWT_MAX_LIFETIME_SECONDS), the longest lifetime the edge accepts",
            param_hint="--ttl",
        )
    try:
        signed = sign_dev_token(
            settings.dev_jwt_dir,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            subject=subject,
            ttl_seconds=lifetime,
        )
    except FileNotFoundError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(signed)


@app.command()
def serve() -> None:
    """Runs the gRPC server alone (Envoy not included)."""
    from .app import PortInUse
    from .app import serve as serve_app
    from .storage.schema import SchemaOutOfDate

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve_app(Settings()))
    except (SchemaOutOfDate, PortInUse) as err:
        typer.echo(f"agentok serve: {err}", err=True)
        raise typer.Exit(1) from None


@app.command()
def run(
    replicas: Annotated[
        int, typer.Option(min=1, help="Server processes behind Envoy; more than one needs PostgreSQL.")
    ] = 1,
) -> None:
    """Runs the gRPC server (or several replicas) and Envoy together; Ctrl-C stops them all."""
    from .launcher import run_stack

    settings = Settings()
    if replicas > 1 and settings.effective_database_url.startswith("sqlite"):
        typer.echo(
            "several replicas need a shared PostgreSQL: set AGENTOK_DATABASE_URL (see make run-cluster)", err=True
        )
        raise typer.Exit(2)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .app import PortInUse
    from .launcher import LaunchFailed
    from .storage.schema import SchemaOutOfDate

    try:
        run_stack(settings, replicas)
    except (SchemaOutOfDate, PortInUse, LaunchFailed) as err:  # why it cannot start, not a traceback
        typer.echo(f"agentok run: {err}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
