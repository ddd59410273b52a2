"""Storage on a real SQLite file and a real PostgreSQL database: one transaction per step, conditional
transitions, keyset paging."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from agentok_server.domain.model import ChatStatus, KeyScope, MessageType, NewMessage, StatusChange
from agentok_server.storage.repository import Repository


async def _chat(repo: Repository, owner: str = "alice") -> str:
    chat = await repo.insert_chat(owner=owner, name="c", from_type="flow", from_flow="f", graph={"nodes": []})
    return chat.id


def _msg(content: str) -> NewMessage:
    return NewMessage(type=MessageType.USER, sender="User", receiver="Agent", content=content)


async def test_step_allocates_contiguous_seqs_and_updates_the_chat(repo: Repository) -> None:
    chat_id = await _chat(repo)
    result = await repo.apply_step(chat_id, [StatusChange(ChatStatus.RUNNING), _msg("a"), _msg("b")])
    assert result is not None
    assert [e.seq for e in result.events] == [1, 2, 3]
    assert result.chat.status is ChatStatus.RUNNING and result.chat.last_seq == 3
    stored = await repo.get_chat("alice", chat_id)
    assert stored is not None and stored.status is ChatStatus.RUNNING and stored.last_seq == 3
    assert [m.content for m in await repo.list_messages(chat_id, 10, 0)] == ["a", "b"]
    assert [e.seq for e in await repo.events_after(chat_id, 1)] == [2, 3]


async def test_step_refused_by_status_or_owner_writes_nothing(repo: Repository) -> None:
    chat_id = await _chat(repo)
    assert await repo.apply_step(chat_id, [_msg("x")], require=[ChatStatus.WAITING]) is None
    assert await repo.apply_step(chat_id, [_msg("x")], owner="mallory") is None
    assert await repo.apply_step("no-such-chat", [_msg("x")]) is None
    chat = await repo.get_chat("alice", chat_id)
    assert chat is not None and chat.last_seq == 0 and chat.status is ChatStatus.READY
    assert await repo.list_messages(chat_id, 10, 0) == []


async def test_a_failing_step_rolls_back_whole(repo: Repository) -> None:
    chat_id = await _chat(repo)
    broken = NewMessage(type=MessageType.USER, sender="User", receiver="Agent", content=None)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        await repo.apply_step(chat_id, [StatusChange(ChatStatus.RUNNING), _msg("kept?"), broken])
    chat = await repo.get_chat("alice", chat_id)
    assert chat is not None and chat.status is ChatStatus.READY and chat.last_seq == 0
    assert await repo.list_messages(chat_id, 10, 0) == [] and await repo.events_after(chat_id, 0) == []


async def test_delete_removes_chat_and_history(repo: Repository) -> None:
    chat_id = await _chat(repo)
    await repo.apply_step(chat_id, [StatusChange(ChatStatus.RUNNING), _msg("a")])
    assert await repo.delete_chat("mallory", chat_id) is None
    deleted = await repo.delete_chat("alice", chat_id)
    assert deleted is not None and deleted.last_seq == 2
    assert await repo.get_chat("alice", chat_id) is None
    assert await repo.list_messages(chat_id, 10, 0) == [] and await repo.events_after(chat_id, 0) == []


async def test_chats_page_newest_first_per_owner(repo: Repository) -> None:
    ids = [await _chat(repo) for _ in range(5)]
    await _chat(repo, owner="bob")
    first = await repo.list_chats("alice", 3, None)
    assert [c.id for c in first] == ids[::-1][:3]
    after = (first[-1].created_at, first[-1].id)
    assert [c.id for c in await repo.list_chats("alice", 3, after)] == ids[::-1][3:]


async def test_keys_are_stored_hashed_and_revocable(repo: Repository) -> None:
    key = await repo.insert_key(name="k", owner="alice", prefix="atk_abc", secret_hash="h1", scope=KeyScope.ADMIN)
    found = await repo.key_for_hash("h1")
    assert found is not None and found.owner == "alice" and found.scope is KeyScope.ADMIN and found.id == key.id
    assert not await repo.revoke_key(key.id, owner="mallory")  # only the owner's own keys
    assert await repo.revoke_key(key.id, owner="alice") and not await repo.revoke_key(key.id)
    assert await repo.key_for_hash("h1") is None
    assert await repo.count_active_keys() == 0
    assert await repo.list_keys("alice", 10) == []  # an owner's list hides revoked keys
    assert [k.id for k in await repo.list_keys()] == [key.id]  # the operator's list keeps them


async def test_server_secret_is_created_once(repo: Repository) -> None:
    first = await repo.server_secret("edge", lambda: "one")
    assert first == "one" and await repo.server_secret("edge", lambda: "two") == "one"
