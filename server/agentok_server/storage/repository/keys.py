"""API keys, and the server's own secrets (created once, shared by every replica)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from ...domain.model import ApiKey, KeyScope
from .. import convert
from ..tables import ApiKeyRow
from .base import API_KEY, SECRET, Database, before, new_id, now

# Every call authenticates: built once.
_KEY_FOR_HASH = select(API_KEY).where(API_KEY.c.secret_hash == bindparam("secret_hash"), API_KEY.c.revoked_at.is_(None))


class KeyQueries(Database):
    async def insert_key(
        self,
        *,
        name: str,
        owner: str,
        prefix: str,
        secret_hash: str,
        scope: KeyScope = KeyScope.CHAT,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        row: dict[str, Any] = {
            "id": new_id(),
            "name": name,
            "owner": owner,
            "prefix": prefix,
            "secret_hash": secret_hash,
            "scope": scope.value,
            "created_at": now(),
            "expires_at": expires_at,
            "last_used_at": None,
            "revoked_at": None,
        }
        async with self._write() as conn:
            await conn.execute(API_KEY.insert().values(**row))
        return convert.api_key(ApiKeyRow(**row))

    async def list_keys(
        self, owner: str | None = None, limit: int | None = None, after: tuple[datetime, str] | None = None
    ) -> list[ApiKey]:
        """All keys, revoked ones too, oldest first (the CLI); or one owner's active keys, newest first."""
        if owner is None:
            query = select(API_KEY).order_by(API_KEY.c.created_at, API_KEY.c.id)
        else:
            query = select(API_KEY).where(API_KEY.c.owner == owner, API_KEY.c.revoked_at.is_(None))
            if after:
                query = query.where(before(API_KEY, after))
            query = query.order_by(API_KEY.c.created_at.desc(), API_KEY.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [convert.api_key(r) for r in (await conn.execute(query)).all()]

    async def count_active_keys(self) -> int:
        async with self._read() as conn:
            return len((await conn.execute(select(API_KEY.c.id).where(API_KEY.c.revoked_at.is_(None)))).all())

    async def revoke_key(self, key_id: str, owner: str | None = None) -> bool:
        query = update(API_KEY).where(API_KEY.c.id == key_id, API_KEY.c.revoked_at.is_(None))
        if owner is not None:
            query = query.where(API_KEY.c.owner == owner)
        async with self._write() as conn:
            res = await conn.execute(query.values(revoked_at=now()))
        return bool(res.rowcount)

    async def get_key(self, key_id: str, owner: str) -> ApiKey | None:
        query = select(API_KEY).where(API_KEY.c.id == key_id, API_KEY.c.owner == owner)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return convert.api_key(row) if row else None

    async def key_for_hash(self, secret_hash: str) -> ApiKey | None:
        """The active (not revoked) key with this secret hash; expiry is the caller's to judge."""
        async with self._read() as conn:
            row = (await conn.execute(_KEY_FOR_HASH, {"secret_hash": secret_hash})).first()
        return convert.api_key(row) if row else None

    async def touch_key(self, key_id: str, when: datetime) -> None:
        async with self._write() as conn:
            await conn.execute(update(API_KEY).where(API_KEY.c.id == key_id).values(last_used_at=when))

    async def server_secret(self, name: str, make: Callable[[], str]) -> str:
        """The named secret, created with `make()` by whichever process asks first."""
        async with self._read() as conn:
            row = (await conn.execute(select(SECRET.c.value).where(SECRET.c.name == name))).first()
        if row is not None:
            return str(row.value)
        try:
            async with self._write() as conn:
                await conn.execute(SECRET.insert().values(name=name, value=make()))
        except IntegrityError:
            pass  # another process created it first: use theirs
        async with self._read() as conn:
            return str((await conn.execute(select(SECRET.c.value).where(SECRET.c.name == name))).scalar_one())
