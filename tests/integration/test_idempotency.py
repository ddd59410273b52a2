"""Idempotent writes on both databases: a request_id's write runs once, even when a retry races the first
attempt (as it does when a client retries through another replica), and a failed attempt can be retried."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from agentok_server.domain.errors import Aborted
from agentok_server.domain.idempotency import ABANDONED_AFTER, Idempotency
from agentok_server.storage.repository import Repository


async def test_a_retry_gets_the_first_response_and_the_work_runs_once(repo: Repository) -> None:
    runs: list[int] = []

    async def work() -> bytes:
        runs.append(1)
        return f"response {len(runs)}".encode()

    once = Idempotency(repo)
    assert await once.once("alice", "CreateChat", "r-1", work) == b"response 1"
    assert await once.once("alice", "CreateChat", "r-1", work) == b"response 1"
    assert len(runs) == 1
    # Another owner or method with the same id is another request.
    assert await once.once("bob", "CreateChat", "r-1", work) == b"response 2"
    assert await once.once("alice", "SendMessage", "r-1", work) == b"response 3"


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
    first = asyncio.create_task(once.once("alice", "SendMessage", "r-2", slow_work))
    await started.wait()
    with pytest.raises(Aborted) as err:
        await once.once("alice", "SendMessage", "r-2", slow_work)
    assert err.value.reason == "REQUEST_IN_PROGRESS" and "still in progress" in err.value.message
    finish.set()
    assert await first == b"first"
    assert await once.once("alice", "SendMessage", "r-2", slow_work) == b"first"
    assert runs == 1


async def test_a_failed_attempt_leaves_nothing_so_its_retry_runs(repo: Repository) -> None:
    async def failing() -> bytes:
        raise RuntimeError("the write failed")

    async def working() -> bytes:
        return b"done"

    once = Idempotency(repo)
    with pytest.raises(RuntimeError):
        await once.once("alice", "SendInput", "r-3", failing)
    assert await once.once("alice", "SendInput", "r-3", working) == b"done"


async def test_an_abandoned_claim_is_taken_over(repo: Repository) -> None:
    claimed_at = datetime.now(UTC)
    recent = claimed_at - ABANDONED_AFTER
    assert await repo.claim_request("alice", "CreateChat", "r-4", stale_before=recent) == (True, None)
    assert await repo.claim_request("alice", "CreateChat", "r-4", stale_before=recent) == (False, None)
    # Judged abandoned (its process died mid-write), the claim is taken over and renewed, so that the
    # next retry sees an attempt in progress again rather than taking it over too.
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await repo.claim_request("alice", "CreateChat", "r-4", stale_before=later) == (True, None)
    assert await repo.claim_request("alice", "CreateChat", "r-4", stale_before=claimed_at) == (False, None)
