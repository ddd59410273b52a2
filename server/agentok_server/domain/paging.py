"""Opaque page tokens for keyset pagination, and page-size rules shared by every list call."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from .errors import invalid_field


def page_size(requested: int, *, default: int, maximum: int) -> int:
    if requested < 0:
        raise invalid_field("page_size", "must not be negative")
    return min(requested or default, maximum)


def encode(*parts: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def _decode(token: str) -> list[object]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parts = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_field("page_token", "is not a token this service issued") from None
    if not isinstance(parts, list):
        raise invalid_field("page_token", "is not a token this service issued")
    return parts


def decode_time_id(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    parts = _decode(token)
    try:
        when, row_id = parts
        return datetime.fromisoformat(str(when)), str(row_id)
    except ValueError:
        raise invalid_field("page_token", "is not a token this service issued") from None


def decode_seq(token: str) -> int:
    if not token:
        return 0
    parts = _decode(token)
    if len(parts) != 1 or not isinstance(parts[0], int) or parts[0] < 0:
        raise invalid_field("page_token", "is not a token this service issued")
    return parts[0]
