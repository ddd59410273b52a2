"""Idempotent writes (AIP-155): the first response to a request_id is kept, and a retry gets it back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..storage.repository import Repository
from .errors import invalid_field

MAX_REQUEST_ID = 128


class Idempotency:
    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    async def once(self, owner: str, method: str, request_id: str, work: Callable[[], Awaitable[bytes]]) -> bytes:
        """`work` runs at most once per (owner, method, request_id); its serialized response is kept.
        A failed call keeps nothing, so its retry runs again. No request_id: no protection, just work."""
        if not request_id:
            return await work()
        if len(request_id) > MAX_REQUEST_ID:
            raise invalid_field("request_id", f"must be at most {MAX_REQUEST_ID} characters")
        recorded = await self._repo.recorded_response(owner, method, request_id)
        if recorded is not None:
            return recorded
        response = await work()
        await self._repo.record_response(owner, method, request_id, response)
        return response
