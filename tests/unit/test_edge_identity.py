"""The signed edge identity: minted once a second per identity and remembered once verified, which must never
let through what the MAC or the expiry refuses."""

from __future__ import annotations

import time

import pytest

from agentok_server.domain.errors import Unauthenticated
from agentok_server.domain.model import AuthMethod, Identity, KeyScope
from agentok_server.transport.edge_identity import EdgeIdentity

ALICE = Identity(owner="alice", method=AuthMethod.API_KEY, scope=KeyScope.CHAT, key_id="k1")
BOB = Identity(owner="bob", method=AuthMethod.BEARER, scope=KeyScope.ADMIN)


def reason(edge: EdgeIdentity, value: str, now: float | None = None) -> str:
    with pytest.raises(Unauthenticated) as err:
        edge.decode(value, now=now)
    return err.value.reason


def test_a_value_is_reused_for_its_identity_and_decodes_to_it() -> None:
    edge = EdgeIdentity(b"s" * 32)
    first = edge.encode(ALICE)
    assert edge.encode(ALICE) == first  # within REUSE_SECONDS: no new signature
    assert edge.encode(BOB) != first
    assert edge.decode(first) == ALICE
    assert edge.decode(first) == ALICE  # remembered
    assert edge.decode(edge.encode(BOB)) == BOB


def test_a_forged_or_tampered_value_is_refused_every_time() -> None:
    ours, theirs = EdgeIdentity(b"s" * 32), EdgeIdentity(b"x" * 32)
    forged = theirs.encode(BOB)
    for _ in range(2):  # a refusal is not remembered as anything else
        assert reason(ours, forged) == "EDGE_IDENTITY_INVALID"
    genuine = ours.encode(ALICE)
    assert ours.decode(genuine) == ALICE
    payload, _, mac = genuine.partition(".")
    assert reason(ours, forged.partition(".")[0] + "." + mac) == "EDGE_IDENTITY_INVALID"
    assert reason(ours, payload + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB")) == "EDGE_IDENTITY_INVALID"


def test_a_remembered_value_still_expires() -> None:
    edge = EdgeIdentity(b"s" * 32, ttl_seconds=5)
    value = edge.encode(ALICE)
    assert edge.decode(value) == ALICE
    assert reason(edge, value, now=time.time() + 6) == "EDGE_IDENTITY_EXPIRED"
    old = edge.encode(ALICE, now=time.time() - 10)  # an explicit time is never served from the reuse
    assert old != value
    assert reason(edge, old) == "EDGE_IDENTITY_EXPIRED"
