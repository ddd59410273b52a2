"""What one run's model calls cost: the tokens they used against the run's budget, and each agent's usage
until it goes on a stored message of that agent's. Fed live and while replaying alike (a reply's usage is
journaled with it), so a resumed run counts exactly what the live one did."""

from __future__ import annotations

from .model import Usage


class TokenMeter:
    def __init__(self, max_tokens: int) -> None:
        self._limit = max_tokens  # 0: no limit
        self._used = 0
        self._unsaid: dict[str, Usage] = {}

    def exhausted(self) -> str | None:
        """Before each model call: why the run may make no more, once it used its budget (the reply that
        passed it was paid for, and is kept); None while it may."""
        if self._limit and self._used >= self._limit:
            return f"The run ended: its budget of {self._limit} tokens was reached ({self._used} used)."
        return None

    def spent(self, agent: str, used: Usage | None) -> None:
        if used is None:
            return
        self._used += used.tokens
        self._unsaid[agent] = self._unsaid.get(agent, Usage()) + used

    def take(self, agent: str) -> Usage | None:
        """The usage of the agent's calls since its last message, for the message it says now."""
        return self._unsaid.pop(agent, None)
