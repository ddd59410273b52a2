"""Rules for the text clients send: what every supported database can store as it was sent."""

from __future__ import annotations

from typing import Any

from .errors import invalid_field

# PostgreSQL text and JSON cannot hold U+0000 (SQLite can): refusing it everywhere keeps both backends alike
# and turns what would be a database error into the client's 400.
_NUL = "\x00"


def is_clean_text(value: str) -> bool:
    return _NUL not in value


def check_text(field: str, value: str) -> str:
    if not is_clean_text(value):
        raise invalid_field(field, "must not contain the NUL character (U+0000)")
    return value


def storable(value: str) -> str:
    """Text the server did not get from a client (a model's answer, code output): stored with U+FFFD in
    place of NUL, since refusing it would end a run over one character."""
    return value.replace(_NUL, "\ufffd")


def check_json_text(field: str, value: Any) -> None:
    """Every string of a JSON document, keys included; iterative, so a deep document cannot overflow the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(field, item)
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(field, key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
