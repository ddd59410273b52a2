"""API keys: created and revoked offline (CLI) or online, stored hashed, checked on every call."""

from __future__ import annotations

import hashlib
import secrets
import time

from ..storage.repository import Repository
from .errors import NotFound, Unauthenticated, invalid_field
from .model import ApiKey

KEY_PREFIX = "atk_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    def __init__(self, repo: Repository, *, cache_seconds: float) -> None:
        self._repo = repo
        self._cache_seconds = cache_seconds
        # secret hash -> (owner or None, expiry). Bounded freshness: a revocation is seen within
        # cache_seconds, and the hot path costs a dict lookup instead of a query per call.
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def create(self, name: str, owner: str) -> tuple[ApiKey, str]:
        if not name.strip():
            raise invalid_field("name", "must not be empty")
        if not owner.strip():
            raise invalid_field("owner", "must not be empty")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = await self._repo.insert_key(
            name=name.strip(),
            owner=owner.strip(),
            prefix=secret[: len(KEY_PREFIX) + 6],
            secret_hash=hash_secret(secret),
        )
        return key, secret

    async def list_keys(self) -> list[ApiKey]:
        return await self._repo.list_keys()

    async def revoke(self, key_id: str) -> None:
        if not await self._repo.revoke_key(key_id):
            raise NotFound(f"no active API key with id {key_id!r}", reason="API_KEY_NOT_FOUND")

    async def authenticate(self, secret: str | None) -> str:
        """Returns the key's owner, or raises Unauthenticated saying whether the key was missing or wrong."""
        if not secret:
            raise Unauthenticated("missing API key: send it in the X-API-KEY header", reason="API_KEY_MISSING")
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            owner = cached[0]
        else:
            owner = await self._repo.owner_for_key_hash(digest)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (owner, now + self._cache_seconds)
        if owner is None:
            raise Unauthenticated("invalid API key: unknown or revoked", reason="API_KEY_INVALID")
        return owner
