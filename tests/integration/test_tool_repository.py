"""Tool storage (storage/repository/tools.py) on a real SQLite file and a real PostgreSQL database: ids per
owner, a taken id reported as None, keyset pages, updates that keep created_at, and errors that never quote
a tool's secrets."""

from __future__ import annotations

import logging
import traceback

import pytest

from agentok_server.domain.model import Tool, ToolKind
from agentok_server.storage.repository import Repository
from agentok_server.storage.repository.tools import ToolStorageFailed

SECRET = "Bearer s3cr3t-storage-91d0"
SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def _tool(tool_id: str = "", owner: str = "alice", **changes: object) -> Tool:
    base = {
        "id": tool_id,
        "owner": owner,
        "name": "search",
        "description": "Searches.",
        "parameters": SCHEMA,
        "kind": ToolKind.HTTP,
        "url": "https://tools.example.com/search",
        "secrets": {"Authorization": SECRET},
    }
    return Tool(**{**base, **changes})  # type: ignore[arg-type]


async def test_a_tool_round_trips_whole(repo: Repository) -> None:
    stored = await repo.insert_tool(_tool("172278707085517"))
    assert stored is not None and stored.id == "172278707085517"
    assert stored.created_at is not None and stored.created_at == stored.updated_at
    got = await repo.get_tool("alice", "172278707085517")
    assert got == stored
    assert (got.parameters, got.secrets, got.kind, got.url) == (
        SCHEMA,
        {"Authorization": SECRET},
        ToolKind.HTTP,
        "https://tools.example.com/search",
    )
    python = await repo.insert_tool(_tool(kind=ToolKind.PYTHON, url="", code="def f() -> int:\n    return 1\n"))
    assert python is not None and python.id and python.id != stored.id  # generated
    assert await repo.get_tool("alice", python.id) == python


async def test_ids_are_per_owner_and_a_taken_id_repos_nothing(repo: Repository) -> None:
    assert await repo.insert_tool(_tool("t1")) is not None
    assert await repo.insert_tool(_tool("t1", name="second")) is None
    assert (await repo.get_tool("alice", "t1")).name == "search"  # type: ignore[union-attr]
    bobs = await repo.insert_tool(_tool("t1", owner="bob", name="bobs"))
    assert bobs is not None and bobs.owner == "bob"
    assert await repo.get_tool("bob", "t1") == bobs and (await repo.get_tool("alice", "t1")) != bobs
    assert await repo.get_tool("carol", "t1") is None


async def test_get_tools_finds_the_owners_among_the_ids(repo: Repository) -> None:
    a = await repo.insert_tool(_tool("a"))
    b = await repo.insert_tool(_tool("b"))
    await repo.insert_tool(_tool("c", owner="bob"))
    assert await repo.get_tools("alice", ["a", "b", "c", "missing", "a"]) == {"a": a, "b": b}
    assert await repo.get_tools("alice", []) == {}
    assert list(await repo.get_tools("bob", ["a", "c"])) == ["c"]


async def test_tools_page_newest_first_per_owner(repo: Repository) -> None:
    ids = [(await repo.insert_tool(_tool())).id for _ in range(5)]  # type: ignore[union-attr]
    await repo.insert_tool(_tool(owner="bob"))
    first = await repo.list_tools("alice", 3, None)
    assert [t.id for t in first] == ids[::-1][:3]
    last = first[-1]
    assert last.created_at is not None
    assert [t.id for t in await repo.list_tools("alice", 3, (last.created_at, last.id))] == ids[::-1][3:]


async def test_an_update_replaces_the_fields_and_keeps_created_at(repo: Repository) -> None:
    created = await repo.insert_tool(_tool("t"))
    assert created is not None and created.updated_at is not None
    changed = _tool("t", name="client", kind=ToolKind.CLIENT, url="", secrets={}, parameters={"type": "object"})
    updated = await repo.update_tool(changed)
    assert updated is not None and updated.created_at == created.created_at
    assert updated.updated_at is not None and updated.updated_at > created.updated_at
    assert (updated.name, updated.kind, updated.url, updated.secrets) == ("client", ToolKind.CLIENT, "", {})
    assert await repo.get_tool("alice", "t") == updated
    assert await repo.update_tool(_tool("t", owner="bob")) is None  # another owner's id names nothing
    assert await repo.update_tool(_tool("gone")) is None
    assert await repo.get_tool("bob", "t") is None


async def test_delete_is_per_owner(repo: Repository) -> None:
    await repo.insert_tool(_tool("t"))
    assert not await repo.delete_tool("bob", "t")
    assert await repo.delete_tool("alice", "t")
    assert await repo.get_tool("alice", "t") is None and not await repo.delete_tool("alice", "t")


async def test_a_failed_write_never_quotes_the_tools_secrets(
    repo: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLAlchemy's errors carry the statement's parameters; ToolStorageFailed names only what failed, so the
    server's log of an unexpected error (transport/rpc.py) holds no secret."""
    unstorable = _tool("t", parameters={"type": "object", "default": {1, 2}})  # a set is no JSON
    for write in (repo.insert_tool, repo.update_tool):
        with pytest.raises(ToolStorageFailed) as info:
            await write(unstorable)
        logging.getLogger("test").error("failed", exc_info=info.value)
        assert SECRET not in "".join(traceback.format_exception(info.value))
    assert SECRET not in caplog.text and "ToolStorageFailed" in caplog.text
    assert await repo.get_tool("alice", "t") is None
