"""Idempotent writes (AIP-155): the first response to a request_id is kept, and a retry gets it back."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from .errors import Aborted, InvalidArgument, invalid_field
from .limits import MAX_REQUEST_ID_LENGTH, check_id
from .ports import IdempotencyStore
from .text import check_text

MAX_REQUEST_ID = MAX_REQUEST_ID_LENGTH
# A claim with no response after this long belongs to an attempt whose process died: a retry redoes it.
ABANDONED_AFTER = timedelta(minutes=2)


def fingerprint(body: bytes) -> str:
    """What a retry is compared by: a SHA-256 of the request's canonical bytes, its request_id left out."""
    return hashlib.sha256(body).hexdigest()


class Idempotency:
    def __init__(self, repo: IdempotencyStore) -> None:
        self._repo = repo

    async def once(
        self,
        owner: str,
        method: str,
        request_id: str,
        work: Callable[[], Awaitable[bytes]],
        *,
        body: bytes,
        scope: str = "",
    ) -> bytes:
        """`work` runs at most once per (owner, method, scope, request_id); its serialized response is kept.
        `body` is the request's canonical serialization without its request_id: a retry must send the same
        request, and the same id with another request is INVALID_ARGUMENT (REQUEST_ID_REUSED), doing nothing.
        `scope` is the chat id the request is for: the same id may be reused on another chat.
        A retry while the first attempt still runs (on any replica) gets ABORTED, to retry a little later.
        A failed call keeps nothing, so its retry runs again. No request_id: no protection, just work."""
        if not request_id:
            return await work()
        # The id is a key in the database: NUL cannot be stored on PostgreSQL, so it is refused on both.
        check_text("request_id", request_id)
        if len(request_id) > MAX_REQUEST_ID:
            raise invalid_field("request_id", f"must be at most {MAX_REQUEST_ID} characters")
        key = request_id
        if scope:
            # Checked here too, so an oversize chat id is refused before the claim is written.
            key = f"{check_id('chat_id', scope)}/{request_id}"
        stale_before = datetime.now(UTC) - ABANDONED_AFTER
        claim = await self._repo.claim_request(owner, method, key, stale_before, fingerprint=fingerprint(body))
        if claim.reused:
            raise InvalidArgument(
                f"request_id {request_id!r} was already used for a different {method} request: a retry must "
                "repeat the request exactly, and a new request needs a new request_id",
                reason="REQUEST_ID_REUSED",
                metadata={"request_id": request_id},
                field_violations=[("request_id", "was already used for a different request")],
            )
        if claim.response is not None:
            return claim.response
        if not claim.claimed:
            raise Aborted(
                f"a {method} with request_id {request_id!r} is still in progress: retry it in a moment",
                reason="REQUEST_IN_PROGRESS",
                metadata={"request_id": request_id},
            )
        try:
            response = await work()
        except BaseException:
            await self._repo.release_claim(owner, method, key)
            raise
        await self._repo.record_response(owner, method, key, response)
        return response
