"""Opaque page tokens for keyset pagination, and page-size rules shared by every list call."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from .errors import InvalidArgument, invalid_field
from .limits import check_page_token
from .text import is_clean_text

T = TypeVar("T")


class Listed(Protocol):
    """What a newest-first list pages by: its creation time, then its id."""

    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...


L = TypeVar("L", bound=Listed)
_MAX_SEQ = 2**63 - 1  # a BIGINT
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


# A page ends early once its items pass this many bytes: a page of large items (2 MB flows, long model
# answers) must still fit a gRPC client's 4 MiB default and Envoy's REST response buffer.
PAGE_BYTES = 1024 * 1024


def page_size(requested: int, *, default: int, maximum: int) -> int:
    if requested < 0:
        raise invalid_field("page_size", "must not be negative")
    return min(requested or default, maximum)


async def newest_first(
    fetch: Callable[[int, tuple[datetime, str] | None], Awaitable[Sequence[L]]],
    requested: int,
    token: str,
    size: Callable[[L], int],
) -> tuple[list[L], str]:
    """One page of a newest-first list (chats, flows, tools): `fetch(limit, after)` reads rows after the
    token's (created_at, id); returns the page and the next page's token ("" at the end)."""
    limit = page_size(requested, default=50, maximum=500)
    rows = await fetch(limit + 1, decode_time_id(token))
    items, more = fit(rows, limit, size)
    if not more:
        return items, ""
    last = items[-1]
    assert last.created_at is not None, "stored items have a creation time"
    return items, encode(last.created_at.isoformat(), last.id)


def fit(rows: Sequence[T], limit: int, size: Callable[[T], int]) -> tuple[list[T], bool]:
    """The page out of `rows` (fetched with one row to spare): at most `limit` rows, fewer when they pass
    PAGE_BYTES, never none. Also whether more rows follow it."""
    total, end = 0, 0
    for end, row in enumerate(rows[:limit], start=1):
        total += size(row)
        if total > PAGE_BYTES and end > 1:
            end -= 1
            break
    else:
        end = min(len(rows), limit)
    return list(rows[:end]), len(rows) > end


def encode(*parts: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def _decode(token: str) -> list[object]:
    check_page_token(token)  # before base64 and JSON spend anything on it
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parts = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _foreign() from None
    if not isinstance(parts, list):
        raise _foreign()
    return parts


def decode_time_id(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    parts = _decode(token)
    if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
        raise _foreign()
    when, row_id = str(parts[0]), str(parts[1])
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise _foreign() from None
    # Tokens are plain base64: anything a client edits must still be a value every database can compare.
    if moment.tzinfo is None or not _EARLIEST <= moment <= _LATEST or not is_clean_text(row_id):
        raise _foreign()
    return moment, row_id


def decode_seq(token: str) -> int:
    if not token:
        return 0
    parts = _decode(token)
    if len(parts) != 1 or not isinstance(parts[0], int) or not 0 <= parts[0] <= _MAX_SEQ:
        raise _foreign()
    return parts[0]


def _foreign() -> InvalidArgument:
    return invalid_field("page_token", "is not a token this service issued")
