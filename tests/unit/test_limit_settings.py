"""The server's caps are settings with sane defaults, and no setting makes a run unlimited."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentok_server.settings import Settings

CAPS = ["AGENTOK_DEFAULT_MAX_AGENT_TURNS", "AGENTOK_MAX_AGENT_TURNS_LIMIT", "AGENTOK_MAX_CONCURRENT_RUNS_PER_OWNER"]


def test_the_caps_have_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in CAPS:
        monkeypatch.delenv(variable, raising=False)
    settings = Settings()
    assert (settings.default_max_agent_turns, settings.max_agent_turns_limit) == (200, 1000)
    assert settings.max_concurrent_runs_per_owner == 100


def test_the_default_turn_budget_must_be_within_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTOK_MAX_AGENT_TURNS_LIMIT", "100")
    monkeypatch.setenv("AGENTOK_DEFAULT_MAX_AGENT_TURNS", "101")
    with pytest.raises(ValidationError, match="AGENTOK_DEFAULT_MAX_AGENT_TURNS .* must be at most"):
        Settings()
    monkeypatch.setenv("AGENTOK_DEFAULT_MAX_AGENT_TURNS", "100")
    assert Settings().default_max_agent_turns == 100


@pytest.mark.parametrize(
    "variable",
    ["AGENTOK_DEFAULT_MAX_AGENT_TURNS", "AGENTOK_MAX_AGENT_TURNS_LIMIT", "AGENTOK_MAX_CONCURRENT_RUNS_PER_OWNER"],
)
def test_zero_is_no_way_to_switch_a_cap_off(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "0")
    with pytest.raises(ValidationError):
        Settings()
