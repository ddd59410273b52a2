"""Waiting for what another process makes true: one bounded poll of an observable condition, instead of a
copy per test file and instead of a fixed sleep standing in for the condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.02


def eventually(
    condition: Callable[[], T], what: str, *, timeout: float = 20.0, accept: Callable[[T], object] = bool
) -> T:
    """Polls `condition` until `accept` takes what it returns (truthy, by default), and returns that. Fails
    after `timeout` seconds, saying what never happened and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last seen: {value!r})")
        time.sleep(POLL_SECONDS)
