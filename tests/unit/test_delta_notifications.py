"""Message deltas between replicas (PostgreSQL NOTIFY, at most 7999 bytes a payload): a long piece of text is
split into payloads that each fit however the text escapes, in order, never inside a character."""

from __future__ import annotations

import pytest

from agentok_server.domain.notifications import MAX_PAYLOAD_BYTES, ChatDelta


@pytest.mark.parametrize("text", ["short", "é" * 20_000, "\x01" * 20_000, "🦊 fox " * 3000, ""])
def test_a_delta_splits_into_payloads_that_fit_and_add_up(text: str) -> None:
    delta = ChatDelta("chat-1", "replica-a", "1.3", "assistant", text)
    payloads = delta.encode()
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in payloads)
    decoded = [ChatDelta.decode(p) for p in payloads]
    assert "".join(d.text for d in decoded) == text
    assert {(d.chat_id, d.origin, d.draft_id, d.sender) for d in decoded} == {
        ("chat-1", "replica-a", "1.3", "assistant")
    }


def test_a_long_sender_is_cut_not_refused() -> None:
    (payload,) = ChatDelta("c", "r", "1.1", "x" * 10_000, "hi").encode()
    assert ChatDelta.decode(payload).sender == "x" * 200


@pytest.mark.parametrize("payload", ["nope", "[]", '{"c": "x"}', '{"c": "x", "o": "r", "d": 3}'])
def test_what_is_no_delta_is_refused(payload: str) -> None:
    with pytest.raises(ValueError, match="chat delta"):
        ChatDelta.decode(payload)
