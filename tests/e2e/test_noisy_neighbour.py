"""No tenant can stall the others, through the real Envoy: a long run of fixed-reply agents shares the
server with another tenant's calls, and the server's caps (the turn limit, runs in progress per owner)
refuse what would go past them with a clear status and nothing stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentok.v1 import chat_service_pb2 as cs

from ..support.api import Grpc, Rest, error_reason, two_agent_flow
from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, create_key

TURN_LIMIT = 20_000
RUN_CAP = 1

# Two fixed-reply agents and nobody to ask: only the turn budget ends the run (20,000 turns, many seconds).
ENDLESS = two_agent_flow(
    a={"human_input_mode": "NEVER", "default_auto_reply": "ping", "max_consecutive_auto_reply": 1_000_000},
    b={"disable_llm": True, "default_auto_reply": "pong", "max_consecutive_auto_reply": 1_000_000},
)
# The README's Hello flow: the run waits for a person after the agent's first reply.
WAITING = two_agent_flow(a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": "hi"})


@dataclass(frozen=True)
class Tenants:
    a: str
    b: str
    c: str


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("limited")
    env = {"AGENTOK_MAX_AGENT_TURNS_LIMIT": str(TURN_LIMIT), "AGENTOK_MAX_CONCURRENT_RUNS_PER_OWNER": str(RUN_CAP)}
    s = Stack(root, llm_server.base_url, extra_env=env)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tenants(limited: Stack) -> Tenants:
    return Tenants(
        *(create_key(limited.env, f"{owner}-key", owner)[1] for owner in ("tenant-a", "tenant-b", "tenant-c"))
    )


def _chat(rest: Rest, flow: dict[str, Any], **body: object) -> dict[str, Any]:
    flow_id = rest.create_flow(flow)["id"]
    r = rest.http.post("/chats", json={"name": "c", "from_type": "flow", "from_flow": flow_id, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _detail(body: dict[str, Any], kind: str) -> dict[str, Any]:
    (detail,) = [d for d in body["details"] if d["@type"] == f"type.googleapis.com/google.rpc.{kind}"]
    return dict(detail)


def test_another_tenant_is_served_while_a_long_run_goes_on(limited: Stack, tenants: Tenants) -> None:
    a, b = Rest(limited.rest_url, tenants.a), Rest(limited.rest_url, tenants.b)
    long_run = _chat(a, ENDLESS, max_agent_turns=TURN_LIMIT)["id"]
    a.send(long_run, "go")
    b_chat = _chat(b, WAITING)
    b_calls: list[Callable[[], httpx.Response]] = [
        lambda: b.http.get(f"/chats/{b_chat['id']}"),
        lambda: b.http.get("/chats"),
        lambda: b.http.post("/chats", json={"name": "n", "from_type": "flow", "from_flow": b_chat["from_flow"]}),
        lambda: b.http.get(f"/chats/{b_chat['id']}/messages"),
    ]
    before = a.chat(long_run)
    assert before["status"] == "running"
    for call in b_calls * 3:
        r = call()
        assert r.status_code == 200, r.text
        # B was served during A's run, not after it: A's run is still going, and went on meanwhile (every
        # event after its first is one more message).
        now = a.chat(long_run)
        assert now["status"] == "running", now
        assert int(now["last_seq"]) > int(before["last_seq"]), (before, now)
        before = now
    assert b.http.get(f"/chats/{long_run}").status_code == 404  # and B still sees only its own chats
    assert a.http.post(f"/chats/{long_run}:cancel", json={}).status_code == 200


def test_a_turn_budget_above_the_limit_is_refused(limited: Stack, tenants: Tenants) -> None:
    rest = Rest(limited.rest_url, tenants.a)
    flow_id = rest.create_flow(WAITING)["id"]
    body = {"name": "c", "from_type": "flow", "from_flow": flow_id, "max_agent_turns": TURN_LIMIT + 1}
    r = rest.http.post("/chats", json=body)
    assert r.status_code == 400, r.text
    assert "max_agent_turns" in r.json()["message"] and f"at most {TURN_LIMIT}" in r.json()["message"]
    assert _detail(r.json(), "BadRequest")["field_violations"][0]["field"] == "max_agent_turns"
    assert all(c["from_flow"] != flow_id for c in rest.chats())


def test_the_run_past_the_cap_is_refused_with_retry_info_until_one_ends(limited: Stack, tenants: Tenants) -> None:
    c = Rest(limited.rest_url, tenants.c)
    first, second = _chat(c, WAITING)["id"], _chat(c, WAITING)["id"]
    sent = c.send(first, "hello")
    c.wait_status(first, int(sent["last_seq"]), {"wait_for_human_input"})

    r = c.http.post(f"/chats/{second}/messages", json={"message": "one run too many"})
    assert r.status_code == 429, r.text
    assert r.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert error_reason(r.json()) == "TOO_MANY_RUNS"
    assert _detail(r.json(), "ErrorInfo")["metadata"] == {"limit": str(RUN_CAP)}
    assert _detail(r.json(), "RetryInfo")["retry_delay"] == "5s"
    assert c.chat(second)["status"] == "ready" and c.messages(second) == []

    native = Grpc(limited.edge_target, tenants.c)
    try:
        with pytest.raises(grpc.RpcError) as err:
            native.chats.SendMessage(cs.SendMessageRequest(chat_id=second, message="again"), metadata=native.metadata)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert any(d.Unpack(retry) for d in status.details) and retry.retry_delay.seconds == 5
    finally:
        native.close()

    # Answering the waiting run is never refused; once that run ends, its slot is free.
    answered = c.input(first, "exit")
    c.wait_status(first, int(answered["last_seq"]), {"completed"})
    assert c.send(second, "now there is room")["status"] == "running"
