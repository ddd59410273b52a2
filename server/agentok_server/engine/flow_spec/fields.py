"""Readers of one value in a node's or an edge's data, each failing with the path to it."""

from __future__ import annotations

from typing import Any

from .errors import FlowError


def integer(value: Any, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < minimum:
        raise FlowError(path, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def optional_str(data: dict[str, Any], key: str, path: str) -> str | None:
    """`data[key]` if it is a non-empty string; None when missing or empty."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FlowError(f"{path}.{key}", "must be a string")
    return value or None
