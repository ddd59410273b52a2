"""Idempotent writes on both databases: a request_id's write runs once, even when a retry races the first
attempt (as it does when a client retries through another replica), and a failed attempt can be retried.
A retry must repeat its request: the same id with another request is refused and does nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from agentok_server.domain.errors import Aborted, InvalidArgument
from agentok_server.domain.idempotency import ABANDONED_AFTER, Idempotency, fingerprint
from agentok_server.domain.ports import Claim
from agentok_server.storage import schema
from agentok_server.storage.repository import Repository, make_engine
from agentok_server.storage.repository.base import IDEMPOTENCY

from ..support.postgres import create_database, drop_database

BODY = b"the request"


async def test_a_retry_gets_the_first_response_and_the_work_runs_once(repo: Repository) -> None:
    runs: list[int] = []

    async def work() -> bytes:
        runs.append(1)
        return f"response {len(runs)}".encode()

    once = Idempotency(repo)
    assert await once.once("alice", "CreateChat", "r-1", work, body=BODY) == b"response 1"
    assert await once.once("alice", "CreateChat", "r-1", work, body=BODY) == b"response 1"
    assert len(runs) == 1
    # Another owner or method with the same id is another request.
    assert await once.once("bob", "CreateChat", "r-1", work, body=BODY) == b"response 2"
    assert await once.once("alice", "SendMessage", "r-1", work, body=BODY) == b"response 3"


async def test_a_retry_racing_the_first_attempt_is_told_to_wait_not_run_again(repo: Repository) -> None:
    started, finish = asyncio.Event(), asyncio.Event()
    runs = 0

    async def slow_work() -> bytes:
        nonlocal runs
        runs += 1
        started.set()
        await finish.wait()
        return b"first"

    once = Idempotency(repo)
    first = asyncio.create_task(once.once("alice", "SendMessage", "r-2", slow_work, body=BODY))
    await started.wait()
    with pytest.raises(Aborted) as err:
        await once.once("alice", "SendMessage", "r-2", slow_work, body=BODY)
    assert err.value.reason == "REQUEST_IN_PROGRESS" and "still in progress" in err.value.message
    finish.set()
    assert await first == b"first"
    assert await once.once("alice", "SendMessage", "r-2", slow_work, body=BODY) == b"first"
    assert runs == 1


async def test_a_failed_attempt_leaves_nothing_so_its_retry_runs(repo: Repository) -> None:
    async def failing() -> bytes:
        raise RuntimeError("the write failed")

    async def working() -> bytes:
        return b"done"

    once = Idempotency(repo)
    with pytest.raises(RuntimeError):
        await once.once("alice", "SendInput", "r-3", failing, body=BODY)
    assert await once.once("alice", "SendInput", "r-3", working, body=BODY) == b"done"


async def test_an_abandoned_claim_is_taken_over(repo: Repository) -> None:
    claimed_at = datetime.now(UTC)
    recent = claimed_at - ABANDONED_AFTER
    assert await repo.claim_request("alice", "CreateChat", "r-4", stale_before=recent) == Claim(claimed=True)
    assert await repo.claim_request("alice", "CreateChat", "r-4", stale_before=recent) == Claim(claimed=False)
    # Judged abandoned (its process died mid-write), the claim is taken over and renewed, so that the
    # next retry sees an attempt in progress again rather than taking it over too.
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await repo.claim_request("alice", "CreateChat", "r-4", stale_before=later) == Claim(claimed=True)
    assert await repo.claim_request("alice", "CreateChat", "r-4", stale_before=claimed_at) == Claim(claimed=False)


# --------------------------------------------------------------------------------------------------
# the same request_id with another request (AIP-155)


async def _execute(engine: Engine | AsyncEngine, statement: Executable) -> Any:
    """One statement in its own transaction, on either kind of engine the repository uses."""
    if isinstance(engine, Engine):
        with engine.begin() as conn:
            result = conn.execute(statement)
            return result.all() if result.returns_rows else None
    async with engine.begin() as aconn:
        result = await aconn.execute(statement)
        return result.all() if result.returns_rows else None


async def _rows(repo: Repository) -> int:
    ((count,),) = await _execute(repo.engine, select(func.count()).select_from(IDEMPOTENCY))
    return int(count)


async def test_the_same_id_with_another_request_is_refused_and_does_nothing(repo: Repository) -> None:
    runs: list[bytes] = []

    def work_for(body: bytes) -> Callable[[], Awaitable[bytes]]:
        async def work() -> bytes:
            runs.append(body)
            return b"response to " + body

        return work

    once = Idempotency(repo)
    assert await once.once("alice", "CreateChat", "r-5", work_for(b"A"), body=b"A") == b"response to A"
    with pytest.raises(InvalidArgument) as err:
        await once.once("alice", "CreateChat", "r-5", work_for(b"B"), body=b"B")
    assert err.value.reason == "REQUEST_ID_REUSED"
    assert err.value.metadata == {"request_id": "r-5"}
    assert [f for f, _ in err.value.field_violations] == ["request_id"]
    assert runs == [b"A"]
    # The first response is kept: the genuine retry still gets it, and the refused request left no trace.
    assert await once.once("alice", "CreateChat", "r-5", work_for(b"A"), body=b"A") == b"response to A"
    assert runs == [b"A"] and await _rows(repo) == 1


async def test_another_request_under_an_id_in_progress_is_refused_not_told_to_wait(repo: Repository) -> None:
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow() -> bytes:
        started.set()
        await finish.wait()
        return b"first"

    async def never() -> bytes:
        raise AssertionError("a reused request_id must not run its work")

    once = Idempotency(repo)
    first = asyncio.create_task(once.once("alice", "SendMessage", "r-6", slow, body=b"A", scope="chat-1"))
    await started.wait()
    with pytest.raises(InvalidArgument) as err:
        await once.once("alice", "SendMessage", "r-6", never, body=b"B", scope="chat-1")
    assert err.value.reason == "REQUEST_ID_REUSED"
    # The same id on another chat is another request_id altogether.
    assert await once.once("alice", "SendMessage", "r-6", _const(b"second"), body=b"B", scope="chat-2") == b"second"
    finish.set()
    assert await first == b"first"


async def test_an_abandoned_claim_is_not_taken_over_by_another_request(repo: Repository) -> None:
    await repo.claim_request("alice", "CreateChat", "r-7", datetime.now(UTC), fingerprint=fingerprint(b"A"))
    later = datetime.now(UTC) + timedelta(seconds=1)
    other = await repo.claim_request("alice", "CreateChat", "r-7", later, fingerprint=fingerprint(b"B"))
    assert other == Claim(claimed=False, reused=True)
    same = await repo.claim_request("alice", "CreateChat", "r-7", later, fingerprint=fingerprint(b"A"))
    assert same == Claim(claimed=True)


async def test_a_row_without_a_fingerprint_matches_any_request(repo: Repository) -> None:
    # What a build from before fingerprints left: the retry after the upgrade gets its response back.
    assert await repo.claim_request("alice", "CreateChat", "r-8", datetime.now(UTC)) == Claim(claimed=True)
    await repo.record_response("alice", "CreateChat", "r-8", b"old response")

    async def never() -> bytes:
        raise AssertionError("the recorded response must be returned")

    assert await Idempotency(repo).once("alice", "CreateChat", "r-8", never, body=b"anything") == b"old response"


async def test_nul_in_a_request_id_is_refused_and_nothing_is_stored(repo: Repository) -> None:
    async def never() -> bytes:
        raise AssertionError("a refused request must not run")

    with pytest.raises(InvalidArgument) as err:
        await Idempotency(repo).once("alice", "CreateChat", "r\x009", never, body=BODY)
    assert err.value.field_violations == [("request_id", "must not contain the NUL character (U+0000)")]
    assert await _rows(repo) == 0


async def test_an_oversize_chat_id_is_refused_before_the_claim(repo: Repository) -> None:
    async def never() -> bytes:
        raise AssertionError("a refused request must not run")

    with pytest.raises(InvalidArgument) as err:
        await Idempotency(repo).once("alice", "SendInput", "r-9", never, body=BODY, scope="c" * 129)
    assert err.value.field_violations == [("chat_id", "must be at most 128 characters")]
    assert await _rows(repo) == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'agentok.db'}"
        return
    created = create_database()
    yield created
    drop_database(created)


async def test_a_response_recorded_before_migration_0003_is_returned_after_it(url: str) -> None:
    await asyncio.to_thread(schema.upgrade, url)
    await asyncio.to_thread(schema.downgrade, url, "0002")
    # Written as a build at revision 0002 wrote it: no fingerprint column yet.
    before = make_engine(url)
    try:
        insert = text(
            "INSERT INTO idempotency (owner, method, request_id, response, created_at) "
            "VALUES ('alice', 'CreateChat', 'r-10', :response, :at)"
        ).bindparams(response=b"first", at=datetime.now(UTC))
        await _execute(before, insert)
    finally:
        if isinstance(before, Engine):
            before.dispose()
        else:
            await before.dispose()
    await asyncio.to_thread(schema.upgrade, url)
    after = Repository(make_engine(url), replica_id="after")
    try:

        async def never() -> bytes:
            raise AssertionError("the recorded response must be returned")

        assert await Idempotency(after).once("alice", "CreateChat", "r-10", never, body=b"A") == b"first"
        # New rows carry a fingerprint: another request under a new id is told apart.
        assert await Idempotency(after).once("alice", "CreateChat", "r-11", _const(b"x"), body=b"A") == b"x"
        with pytest.raises(InvalidArgument):
            await Idempotency(after).once("alice", "CreateChat", "r-11", never, body=b"B")
    finally:
        await after.dispose()


def _const(value: bytes) -> Callable[[], Awaitable[bytes]]:
    async def work() -> bytes:
        return value

    return work
