"""The unit tests' services fixture: ChatService and RunManager on an in-memory store, stopped after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ..support.memory_services import MakeServices, Services, make_services


@pytest.fixture
async def services() -> AsyncIterator[MakeServices]:
    """make_services(), with every run manager it made shut down when the test ends."""
    made: list[Services] = []

    def make(*args: Any, **kwargs: Any) -> Services:
        made.append(make_services(*args, **kwargs))
        return made[-1]

    yield make
    for s in made:
        await s.runs.shutdown()
