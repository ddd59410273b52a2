"""A key minted by an admin API key never outlives it (on a real SQLite file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentok_server.domain.keys import KeyService
from agentok_server.domain.model import AuthMethod, Identity, KeyScope
from agentok_server.storage.repository import Repository, make_engine


@pytest.fixture()
async def keys(tmp_path: Path) -> AsyncIterator[KeyService]:
    repo = Repository(make_engine(f"sqlite:///{tmp_path / 'keys.db'}"))
    await repo.create_schema()
    yield KeyService(repo, cache_seconds=0)
    await repo.dispose()


async def test_an_admin_key_cannot_mint_a_key_that_outlives_it(keys: KeyService) -> None:
    soon = datetime.now(UTC) + timedelta(days=1)
    admin, secret = await keys.create("quinn", "ops", scope=KeyScope.ADMIN, expires_at=soon)
    creator = await keys.authenticate(secret)
    assert creator.method is AuthMethod.API_KEY and creator.key_id == admin.id

    forever, _ = await keys.create("quinn", "child", creator=creator)
    later, _ = await keys.create("quinn", "child", expires_at=soon + timedelta(days=30), creator=creator)
    sooner, _ = await keys.create("quinn", "child", expires_at=soon - timedelta(hours=1), creator=creator)
    assert admin.expires_at is not None
    assert forever.expires_at == later.expires_at == admin.expires_at
    assert sooner.expires_at is not None and sooner.expires_at < admin.expires_at


async def test_tokens_and_the_cli_are_not_capped(keys: KeyService) -> None:
    token = Identity(owner="quinn", method=AuthMethod.BEARER, scope=KeyScope.ADMIN)
    by_token, _ = await keys.create("quinn", "k", creator=token)
    offline, _ = await keys.create("quinn", "k", scope=KeyScope.ADMIN)
    assert by_token.expires_at is None and offline.expires_at is None
