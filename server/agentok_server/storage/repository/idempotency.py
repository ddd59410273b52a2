"""Idempotency claims: a request_id recorded with the first attempt's response (AIP-155)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ...domain.ports import Claim
from .. import convert
from .base import IDEMPOTENCY, Database, now


class IdempotencyQueries(Database):
    async def claim_request(
        self, owner: str, method: str, request_id: str, stale_before: datetime, *, fingerprint: str | None = None
    ) -> Claim:
        """Claims a request_id for a write about to run, for the request whose `fingerprint` is given (None:
        any). Claimed when this caller must do it; else the recorded response, or none while another caller's
        attempt is in progress. A claim older than `stale_before` with no response (its process died
        mid-write) is taken over. An id first used for a request with another fingerprint is `reused`, in any
        state, and nothing changes; a row from before fingerprints (NULL) matches any request."""
        key = (
            (IDEMPOTENCY.c.owner == owner) & (IDEMPOTENCY.c.method == method) & (IDEMPOTENCY.c.request_id == request_id)
        )
        claim = IDEMPOTENCY.insert().values(
            owner=owner, method=method, request_id=request_id, response=None, created_at=now(), fingerprint=fingerprint
        )
        try:
            async with self._write() as conn:
                await conn.execute(claim)
            return Claim(claimed=True)
        except IntegrityError:
            pass  # claimed before: by a finished attempt, one in progress, or an abandoned one
        async with self._write() as conn:
            columns = (IDEMPOTENCY.c.response, IDEMPOTENCY.c.created_at, IDEMPOTENCY.c.fingerprint)
            row = (await conn.execute(select(*columns).where(key))).first()
            if row is None:  # released meanwhile (that attempt failed): claim it afresh
                await conn.execute(claim)
                return Claim(claimed=True)
            if None not in (row.fingerprint, fingerprint) and row.fingerprint != fingerprint:
                return Claim(claimed=False, reused=True)
            if row.response is not None:
                return Claim(claimed=False, response=bytes(row.response))
            if convert.utc(row.created_at) < stale_before:
                taken = await conn.execute(
                    update(IDEMPOTENCY)
                    .where(key, IDEMPOTENCY.c.response.is_(None), IDEMPOTENCY.c.created_at == row.created_at)
                    .values(created_at=now(), fingerprint=fingerprint or row.fingerprint)
                )
                return Claim(claimed=bool(taken.rowcount))
        return Claim(claimed=False)

    async def record_response(self, owner: str, method: str, request_id: str, response: bytes) -> None:
        async with self._write() as conn:
            await conn.execute(
                update(IDEMPOTENCY)
                .where(
                    IDEMPOTENCY.c.owner == owner, IDEMPOTENCY.c.method == method, IDEMPOTENCY.c.request_id == request_id
                )
                .values(response=response)
            )

    async def release_claim(self, owner: str, method: str, request_id: str) -> None:
        """The write failed: a retry may run it again."""
        async with self._write() as conn:
            await conn.execute(
                delete(IDEMPOTENCY).where(
                    IDEMPOTENCY.c.owner == owner,
                    IDEMPOTENCY.c.method == method,
                    IDEMPOTENCY.c.request_id == request_id,
                    IDEMPOTENCY.c.response.is_(None),
                )
            )
