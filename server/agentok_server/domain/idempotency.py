"""Idempotent writes (AIP-155): the first response to a request_id is kept, and a retry gets it back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from ..storage.repository import Repository
from .errors import Aborted, invalid_field

MAX_REQUEST_ID = 128
# A claim with no response after this long belongs to an attempt whose process died: a retry redoes it.
ABANDONED_AFTER = timedelta(minutes=2)


class Idempotency:
    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    async def once(
        self, owner: str, method: str, request_id: str, work: Callable[[], Awaitable[bytes]], *, scope: str = ""
    ) -> bytes:
        """`work` runs at most once per (owner, method, scope, request_id); its serialized response is kept.
        `scope` narrows the id to one resource (a chat): the same id may be reused on another chat.
        A retry while the first attempt still runs (on any replica) gets ABORTED, to retry a little later.
        A failed call keeps nothing, so its retry runs again. No request_id: no protection, just work."""
        if not request_id:
            return await work()
        if len(request_id) > MAX_REQUEST_ID:
            raise invalid_field("request_id", f"must be at most {MAX_REQUEST_ID} characters")
        if scope:
            request_id = f"{scope}/{request_id}"
        stale_before = datetime.now(UTC) - ABANDONED_AFTER
        claimed, recorded = await self._repo.claim_request(owner, method, request_id, stale_before)
        if recorded is not None:
            return recorded
        if not claimed:
            raise Aborted(
                f"a {method} with request_id {request_id!r} is still in progress: retry it in a moment",
                reason="REQUEST_IN_PROGRESS",
                metadata={"request_id": request_id},
            )
        try:
            response = await work()
        except BaseException:
            await self._repo.release_claim(owner, method, request_id)
            raise
        await self._repo.record_response(owner, method, request_id, response)
        return response
