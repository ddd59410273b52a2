"""What one replica tells the others it committed to a chat (PostgreSQL NOTIFY), as one typed value.

Only `encode` and `decode` know the wire format. It keeps the short keys replicas have always sent
(`c` chat, `o` origin, `f`/`s` first and last seq, `st` status, `d` deleted), so replicas of the previous
version and this one understand each other during a rolling upgrade, and a payload stays far below
PostgreSQL's 8000-byte limit on NOTIFY.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from .model import ChatStatus

# PostgreSQL refuses a longer NOTIFY payload (and with it the transaction that sends it).
MAX_PAYLOAD_BYTES = 7999

T = TypeVar("T")


@dataclass(frozen=True)
class ChatChanged:
    """A chat changed: a step committed events `first_seq..last_seq` (leaving it in `status`), or the chat
    was deleted after `last_seq`. A replica catching up after a lost connection makes one with no
    `last_seq` (everything after `first_seq - 1`) and no `origin`."""

    chat_id: str
    origin: str | None = None  # the replica that committed it; None when not known
    first_seq: int | None = None  # the first event the change committed; None for a deletion
    last_seq: int | None = None  # the last event committed (a deletion: the chat's last before it went)
    status: ChatStatus | None = None  # the chat's status after the step, when it says
    deleted: bool = False

    def __post_init__(self) -> None:
        # What PeerEvents relies on, so a malformed change is refused where it enters, not mid-apply.
        if not self.chat_id:
            raise ValueError("a chat change names no chat")
        if self.deleted:
            if self.last_seq is None:
                raise ValueError("a deletion must say the chat's last seq")
        elif self.first_seq is None:
            raise ValueError("a change must say its first seq")
        if self.first_seq is not None and self.first_seq < 1:
            raise ValueError(f"first seq {self.first_seq} is not positive")
        if self.last_seq is not None and self.last_seq < 0:
            raise ValueError(f"last seq {self.last_seq} is negative")
        if self.first_seq is not None and self.last_seq is not None and self.first_seq > self.last_seq:
            raise ValueError(f"first seq {self.first_seq} is after last seq {self.last_seq}")

    def encode(self) -> str:
        """The NOTIFY payload: compact JSON with only the fields that are set."""
        wire: dict[str, Any] = {"c": self.chat_id}
        if self.first_seq is not None:
            wire["f"] = self.first_seq
        if self.last_seq is not None:
            wire["s"] = self.last_seq
        if self.status is not None:
            wire["st"] = self.status.value
        if self.deleted:
            wire["d"] = True
        if self.origin is not None:
            wire["o"] = self.origin
        payload = _json(wire)
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"a chat change encodes to more than {MAX_PAYLOAD_BYTES} bytes")
        return payload

    @classmethod
    def decode(cls, payload: str) -> ChatChanged:
        """Reads a NOTIFY payload; raises ValueError, saying what is wrong, for anything else. Keys it does
        not know are ignored: a newer replica may say more than this one needs."""
        wire = _object(payload, "a chat change")
        try:
            status = _field(wire, "st", str)
            return cls(
                chat_id=_required(wire, "c", str),
                origin=_field(wire, "o", str),
                first_seq=_field(wire, "f", int),
                last_seq=_field(wire, "s", int),
                status=ChatStatus(status) if status is not None else None,
                deleted=bool(_field(wire, "d", bool)),
            )
        except ValueError as exc:
            raise ValueError(f"a chat change is malformed: {exc}") from None


def _object(payload: str, what: str) -> dict[str, Any]:
    """The payload's JSON object; ValueError naming `what` it should have been."""
    try:
        wire = json.loads(payload)
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None
    if not isinstance(wire, dict):
        raise ValueError(f"{what} is a JSON object, not {type(wire).__name__}")
    return wire


def _field(wire: dict[str, Any], key: str, kind: type[T]) -> T | None:
    """The value under `key` (None when absent or null), refused unless it is a `kind`."""
    value = wire.get(key)
    # bool is an int in Python; a seq of `true` is as wrong as one of "3".
    if value is None or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
        return value
    raise ValueError(f"{key!r} is {value!r}, not of type {kind.__name__}")


def _required(wire: dict[str, Any], key: str, kind: type[T]) -> T:
    value = _field(wire, key, kind)
    if value is None:
        raise ValueError(f"{key!r} is missing")
    return value


# The longest agent name a delta notification carries whole (names are a flow's; text is split, not cut).
MAX_SENDER_CHARS = 200


@dataclass(frozen=True)
class ChatDelta:
    """A piece of a model reply one replica streamed, for the others' watchers (NOTIFY on a channel of its
    own, so replicas that know no deltas never see one). Keys: `c` chat, `o` origin, `d` draft, `n` sender,
    `t` text."""

    chat_id: str
    origin: str
    draft_id: str
    sender: str
    text: str

    def encode(self) -> list[str]:
        """The payloads, in order: the text split so that each one stays under MAX_PAYLOAD_BYTES however it
        escapes (a character takes at most 6 bytes in JSON: `\\u001f`), never inside a character."""
        head = {"c": self.chat_id, "o": self.origin, "d": self.draft_id, "n": self.sender[:MAX_SENDER_CHARS]}
        room = (MAX_PAYLOAD_BYTES - len(_json(head | {"t": ""}).encode())) // 6
        if room < 1:
            raise ValueError("a chat delta's ids leave no room for its text")
        pieces = [self.text[i : i + room] for i in range(0, len(self.text), room)] or [""]
        return [_json(head | {"t": piece}) for piece in pieces]

    @classmethod
    def decode(cls, payload: str) -> ChatDelta:
        """Raises ValueError, saying what is wrong, for anything but a delta payload."""
        wire = _object(payload, "a chat delta")
        try:
            return cls(
                chat_id=_required(wire, "c", str),
                origin=_required(wire, "o", str),
                draft_id=_required(wire, "d", str),
                sender=_field(wire, "n", str) or "",
                text=_field(wire, "t", str) or "",
            )
        except ValueError as exc:
            raise ValueError(f"a chat delta is malformed: {exc}") from None


def _json(wire: dict[str, Any]) -> str:
    return json.dumps(wire, separators=(",", ":"), ensure_ascii=False)
