"""The `agentok` command: run the service, and manage API keys offline (bootstrap)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from .settings import Settings

if TYPE_CHECKING:
    from .domain.keys import KeyService

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help="agentok-grpc: Agentok's chat API over gRPC + REST.")
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys (works with the server down).")
app.add_typer(keys_app, name="keys")


def _with_keys(settings: Settings, use: Callable[[KeyService], Awaitable[T]]) -> T:
    """Runs `use` with a key service on the configured database, then closes the database."""
    from .app import open_repository
    from .domain.keys import KeyService

    async def main() -> T:
        repo = await open_repository(settings)
        try:
            return await use(KeyService(repo, cache_seconds=0))
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


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="The owner the token acts as (its sub claim).")] = "default",
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 15m or 1h.")] = "15m",
) -> None:
    """Signs a short-lived bearer token with the development key pair (`make run` creates it)."""
    from .devjwt import sign_dev_token

    settings = Settings()
    lifetime = int(_duration(ttl).total_seconds())
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
    from .app import serve as serve_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve_app(Settings()))


@app.command()
def run() -> None:
    """Runs the gRPC server and Envoy together; Ctrl-C stops both."""
    from .launcher import run_stack

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_stack(Settings())


if __name__ == "__main__":
    app()
