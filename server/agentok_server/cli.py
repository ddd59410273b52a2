"""The `agentok` command: run the service, and manage API keys offline (bootstrap)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from .settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="agentok-grpc: Agentok's chat API over gRPC + REST.")
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys (works with the server down).")
app.add_typer(keys_app, name="keys")


def _key_service(settings: Settings):  # type: ignore[no-untyped-def]
    from .app import open_repository
    from .domain.keys import KeyService

    return KeyService(open_repository(settings), cache_seconds=0)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A label such as 'production'.")],
    owner: Annotated[str, typer.Option(help="Who the key's chats and flows belong to.")] = "default",
) -> None:
    """Creates a key; the secret is printed once, alone on the last line."""
    key, secret = asyncio.run(_key_service(Settings()).create(name, owner))
    typer.echo(f"created API key {key.id} ({key.name}, owner {key.owner}); store it now, it is not shown again:")
    typer.echo(secret)


@keys_app.command("list")
def keys_list() -> None:
    """One key per line: id, name, owner, prefix, created, status. Never the secret."""
    for key in asyncio.run(_key_service(Settings()).list_keys()):
        status = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        typer.echo(f"{key.id}\t{key.name}\t{key.owner}\t{key.prefix}…\t{key.created_at.isoformat()}\t{status}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (first column of `keys list`).")],
) -> None:
    """Revokes a key; servers stop accepting it within a second."""
    from .domain.errors import NotFound

    try:
        asyncio.run(_key_service(Settings()).revoke(key_id))
    except NotFound as err:
        typer.echo(err.message, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {key_id}")


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
