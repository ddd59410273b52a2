"""ChatChanged, the NOTIFY payload replicas exchange: every kind survives encode/decode, the payloads
replicas sent before it existed still decode, and anything malformed is refused with a ValueError."""

from __future__ import annotations

import json

import pytest

from agentok_server.domain.model import ChatStatus
from agentok_server.domain.notifications import MAX_PAYLOAD_BYTES, ChatChanged

CHAT = "0b0e3c5e-2f4a-4c1e-9d59-6f1f0c3a7b21"

KINDS = {
    "new events": ChatChanged(CHAT, "replica-a:50051", first_seq=3, last_seq=5, status=ChatStatus.RUNNING),
    "status change": ChatChanged(CHAT, "replica-a:50051", first_seq=6, last_seq=6, status=ChatStatus.WAITING),
    "deletion": ChatChanged(CHAT, "replica-b:50051", last_seq=7, deleted=True),
    "reconnect catch-up": ChatChanged(CHAT, first_seq=8),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_survives_a_round_trip(kind: str) -> None:
    change = KINDS[kind]
    payload = change.encode()
    assert ChatChanged.decode(payload) == change
    assert len(payload.encode()) < 200  # a uuid and a replica name: far below NOTIFY's 8000 bytes


def test_the_wire_keeps_the_short_keys_older_replicas_read() -> None:
    assert json.loads(KINDS["new events"].encode()) == {
        "c": CHAT,
        "f": 3,
        "s": 5,
        "st": "running",
        "o": "replica-a:50051",
    }
    assert json.loads(KINDS["deletion"].encode()) == {"c": CHAT, "s": 7, "d": True, "o": "replica-b:50051"}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # What Repository.apply_step sent (json.dumps of {"c", "f", "s", "st"} plus "o").
        (
            f'{{"c": "{CHAT}", "f": 3, "s": 5, "st": "wait_for_human_input", "o": "host-1:50051"}}',
            ChatChanged(CHAT, "host-1:50051", first_seq=3, last_seq=5, status=ChatStatus.WAITING),
        ),
        # What Repository.delete_chat sent.
        (
            f'{{"c": "{CHAT}", "s": 12, "d": true, "o": "host-1:50051"}}',
            ChatChanged(CHAT, "host-1:50051", last_seq=12, deleted=True),
        ),
        # What PeerEvents queued for itself after a reconnect.
        (f'{{"c": "{CHAT}", "f": 1, "s": null}}', ChatChanged(CHAT, first_seq=1)),
        # A newer replica may say more: keys this one does not know are ignored.
        (
            f'{{"c": "{CHAT}", "f": 1, "s": 1, "st": "completed", "x": [1]}}',
            ChatChanged(CHAT, first_seq=1, last_seq=1, status=ChatStatus.COMPLETED),
        ),
    ],
)
def test_todays_payloads_decode(payload: str, expected: ChatChanged) -> None:
    assert ChatChanged.decode(payload) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "not JSON"),
        ("chat changed", "not JSON"),
        ("[1, 2]", "JSON object, not list"),
        ('"c"', "JSON object, not str"),
        ("{}", "'c' is missing"),
        ('{"c": ""}', "names no chat"),
        ('{"c": 7, "f": 1}', "'c' is 7, not of type str"),
        ('{"c": "x"}', "must say its first seq"),
        ('{"c": "x", "d": true}', "deletion must say the chat's last seq"),
        ('{"c": "x", "f": "3"}', "'f' is '3', not of type int"),
        ('{"c": "x", "f": true}', "'f' is True, not of type int"),
        ('{"c": "x", "f": 1.5}', "'f' is 1.5, not of type int"),
        ('{"c": "x", "f": 0}', "first seq 0 is not positive"),
        ('{"c": "x", "f": 1, "s": -1}', "last seq -1 is negative"),
        ('{"c": "x", "f": 5, "s": 3}', "first seq 5 is after last seq 3"),
        ('{"c": "x", "f": 1, "st": "paused"}', "'paused' is not a valid ChatStatus"),
        ('{"c": "x", "f": 1, "st": 2}', "'st' is 2, not of type str"),
        ('{"c": "x", "s": 1, "d": "yes"}', "'d' is 'yes', not of type bool"),
        ('{"c": "x", "f": 1, "o": 5}', "'o' is 5, not of type str"),
    ],
)
def test_garbage_is_refused_saying_why(payload: str, reason: str) -> None:
    with pytest.raises(ValueError, match="chat change") as refused:
        ChatChanged.decode(payload)
    assert reason in str(refused.value)


def test_a_change_too_long_for_notify_is_refused_before_it_is_sent() -> None:
    with pytest.raises(ValueError, match=f"more than {MAX_PAYLOAD_BYTES} bytes"):
        ChatChanged(CHAT, "r" * MAX_PAYLOAD_BYTES, first_seq=1).encode()
