"""API keys: created and revoked offline (CLI) or online (ApiKeyService), stored hashed, checked on every call."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime

from . import paging
from .errors import NotFound, PermissionDenied, Unauthenticated, invalid_field
from .limits import check_id
from .metrics import NO_OBSERVER, Observer
from .model import ApiKey, AuthMethod, Identity, KeyScope
from .ports import KeyStore
from .text import check_text

KEY_PREFIX = "atk_"
TOUCH_INTERVAL = 60.0  # seconds between last-used updates of one key


def hash_secret(secret: str) -> str:
    # Keys are 256-bit random: a fast hash is enough, nobody can brute-force the preimage.
    return hashlib.sha256(secret.encode()).hexdigest()


def ambiguous_credentials() -> Unauthenticated:
    """A call carrying both an API key and a bearer token: refused rather than silently picking one, since
    they may name different owners and the client should learn which one it is really using."""
    return Unauthenticated(
        "send one credential: an API key (X-API-KEY) or a bearer token (Authorization: Bearer), not both",
        reason="CREDENTIALS_AMBIGUOUS",
    )


class KeyService:
    def __init__(self, repo: KeyStore, *, cache_seconds: float, observer: Observer = NO_OBSERVER) -> None:
        self._repo = repo
        self._cache_seconds = cache_seconds
        self._observer = observer
        # secret hash -> (key or None, expiry). Bounded freshness: a revocation is seen within
        # cache_seconds, and the hot path costs a dict lookup instead of a query per call.
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}
        self._touched: dict[str, float] = {}

    async def create(
        self,
        owner: str,
        name: str,
        *,
        scope: KeyScope = KeyScope.CHAT,
        expires_at: datetime | None = None,
        creator: Identity | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret. `creator` is who asks over the API (None: the offline CLI); a key it
        mints never outlives, nor outranks, an API key that minted it, or a stolen admin key could renew
        itself forever by minting successors."""
        if not name.strip():
            raise invalid_field("name", "must not be empty")
        if not owner.strip():
            raise invalid_field("owner", "must not be empty")
        check_text("name", name)
        check_text("owner", owner)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise invalid_field("expires_at", "must be in the future")
        if creator is not None and creator.method is AuthMethod.API_KEY:
            if scope is KeyScope.ADMIN and creator.scope is not KeyScope.ADMIN:
                raise PermissionDenied(
                    "an API key cannot create a key with a wider scope than its own", reason="SCOPE_TOO_WIDE"
                )
            parent = await self._repo.get_key(creator.key_id, owner) if creator.key_id else None
            if parent is not None and parent.expires_at is not None:
                expires_at = parent.expires_at if expires_at is None else min(expires_at, parent.expires_at)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = await self._repo.insert_key(
            name=name.strip(),
            owner=owner.strip(),
            prefix=secret[: len(KEY_PREFIX) + 6],
            secret_hash=hash_secret(secret),
            scope=scope,
            expires_at=expires_at,
        )
        return key, secret

    async def list_all(self) -> list[ApiKey]:
        return await self._repo.list_keys()

    async def list_for(self, owner: str, page_size: int, page_token: str) -> tuple[list[ApiKey], str]:
        limit = paging.page_size(page_size, default=50, maximum=500)
        keys = await self._repo.list_keys(owner, limit + 1, paging.decode_time_id(page_token))
        if len(keys) <= limit:
            return keys, ""
        last = keys[limit - 1]
        return keys[:limit], paging.encode(last.created_at.isoformat(), last.id)

    async def revoke(self, key_id: str, owner: str | None = None) -> None:
        check_id("key_id", key_id)
        if not await self._repo.revoke_key(key_id, owner):
            raise NotFound(
                f"no active API key with id {key_id!r}", reason="API_KEY_NOT_FOUND", metadata={"key_id": key_id}
            )

    @staticmethod
    def require_key_manager(identity: Identity) -> None:
        if not identity.may_manage_keys:
            raise PermissionDenied(
                "managing API keys needs a bearer token or an API key with the admin scope",
                reason="ADMIN_SCOPE_REQUIRED",
            )

    async def authenticate(self, secret: str | None) -> Identity:
        """The key's identity, or Unauthenticated saying whether the key was missing, unknown or expired."""
        if not secret:
            raise Unauthenticated(
                "missing credentials: send an API key in the X-API-KEY header (or a bearer token)",
                reason="API_KEY_MISSING",
            )
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        hit = cached is not None and cached[1] > now
        self._observer.key_looked_up(cached=hit)
        if cached is not None and hit:
            key = cached[0]
        else:
            key = await self._repo.key_for_hash(digest)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (key, now + self._cache_seconds)
        if key is None:
            raise Unauthenticated("invalid API key: unknown or revoked", reason="API_KEY_INVALID")
        wall = datetime.now(UTC)
        if key.expires_at is not None and key.expires_at <= wall:
            raise Unauthenticated(
                f"API key expired at {key.expires_at.isoformat()}",
                reason="API_KEY_EXPIRED",
                metadata={"key_id": key.id},
            )
        if now - self._touched.get(key.id, -TOUCH_INTERVAL) >= TOUCH_INTERVAL:
            self._touched[key.id] = now
            await self._repo.touch_key(key.id, wall)
        return Identity(owner=key.owner, method=AuthMethod.API_KEY, scope=key.scope, key_id=key.id)
