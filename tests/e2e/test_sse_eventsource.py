"""The REST watch stream as a browser's EventSource reads it: each event has an `id:` line (its seq) and an
`event:` line (its kind), and a reconnect carrying Last-Event-ID resumes right after that event, whatever
after_seq the URL still says. Read with a real SSE client (httpx-sse) through the real Envoy and server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from ..conftest import Keys
from ..support.api import two_agent_flow
from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, create_key

KINDS = {"message_added", "status_changed", "keep_alive", "chat_deleted", "server_shutdown"}


@pytest.fixture()
def http(stack: Stack, keys: Keys) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.rest_url, headers={"X-API-KEY": keys.alice}, timeout=30) as client:
        yield client


def _chat(http: httpx.Client) -> str:
    flow = two_agent_flow(
        a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": "ok"}, b_type="conversable"
    )
    flow_id = http.post("/v1/flows", json={"name": "sse", "flow": flow}).json()["flow"]["id"]
    return str(http.post("/v1/chats", json={"from_type": "flow", "from_flow": flow_id}).json()["chat"]["id"])


def _checked(sse: ServerSentEvent) -> dict[str, Any]:
    """The event's JSON, after checking its id and event lines say what its data does."""
    event = json.loads(sse.data)["event"]
    (kind,) = KINDS & set(event)
    assert (sse.event, sse.id) == (kind, event["seq"]), (sse.event, sse.id, event)
    return dict(event)


def _until(
    http: httpx.Client, chat_id: str, status: str, last_event_id: str | None = None, **params: Any
) -> list[ServerSentEvent]:
    """The stream's events (keep-alives left out) up to the chat reaching `status`, as EventSource sends the request."""
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    seen: list[ServerSentEvent] = []
    with connect_sse(http, "GET", f"/v1/chats/{chat_id}/watch", params=params, headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            event = _checked(sse)
            if sse.event == "keep_alive":
                continue
            seen.append(sse)
            if event.get("status_changed", {}).get("status") == status:
                return seen
    raise AssertionError(f"the stream ended before {status}: {[s.event for s in seen]}")


def test_each_event_has_its_seq_as_id_and_its_kind_as_event(http: httpx.Client) -> None:
    chat_id = _chat(http)
    assert http.post(f"/v1/chats/{chat_id}/messages", json={"message": "hello"}).status_code == 200
    events = _until(http, chat_id, "wait_for_human_input", after_seq=0)
    assert [s.event for s in events] == ["status_changed", "message_added", "message_added", "status_changed"]
    assert [int(s.id) for s in events] == [1, 2, 3, 4]
    # The raw lines, in the order EventSource reads them; a keep-alive repeats the last id (it moves nothing).
    with http.stream("GET", f"/v1/chats/{chat_id}/watch", params={"after_seq": 3}) as r:
        lines = r.iter_lines()
        assert [next(lines) for _ in range(3)][:2] == ["id: 4", "event: status_changed"]
        assert next(lines) == ""
        assert [next(lines) for _ in range(2)] == ["id: 4", "event: keep_alive"]


def test_a_reconnect_with_last_event_id_resumes_after_it_with_no_gap_and_no_repeat(http: httpx.Client) -> None:
    chat_id = _chat(http)
    assert http.post(f"/v1/chats/{chat_id}/messages", json={"message": "hello"}).status_code == 200
    first = _until(http, chat_id, "wait_for_human_input", after_seq=0)
    last = first[-1].id
    # While nobody watches, the run goes on.
    assert http.post(f"/v1/chats/{chat_id}/input", json={"message": "more"}).status_code == 200
    # EventSource reconnects to the URL it was given (after_seq=0) and says where it got to: the header wins.
    again = _until(http, chat_id, "wait_for_human_input", last_event_id=last, after_seq=0)
    ids = [int(s.id) for s in first + again]
    assert ids == list(range(1, ids[-1] + 1)), ids
    assert [json.loads(s.data)["event"]["message_added"]["content"] for s in again if s.event == "message_added"] == [
        "more",
        "ok",
    ]


def test_chat_deleted_is_an_event_of_its_own(http: httpx.Client) -> None:
    chat_id = _chat(http)
    with connect_sse(http, "GET", f"/v1/chats/{chat_id}/watch") as source:
        assert http.delete(f"/v1/chats/{chat_id}").status_code == 200
        kinds = [_checked(sse) and sse.event for sse in source.iter_sse()]
    assert kinds[-1] == "chat_deleted" and set(kinds) <= {"keep_alive", "chat_deleted"}, kinds


def test_a_last_event_id_that_is_no_seq_is_a_400_with_a_reason(http: httpx.Client) -> None:
    r = http.get("/v1/chats/any/watch", headers={"Last-Event-ID": "not-a-seq"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 3 and body["details"][0]["reason"] == "INVALID_LAST_EVENT_ID"


def test_server_shutdown_is_an_event_whose_id_is_where_to_resume(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    # A short grace period: the open stream is ended by the shutdown event, not by the grace running out.
    stack = Stack(tmp_path, llm_server.base_url, extra_env={"AGENTOK_SHUTDOWN_GRACE_SECONDS": "1"}).start()
    try:
        _, key = create_key(stack.env, "shutdown", "shutdown")
        with httpx.Client(base_url=stack.rest_url, headers={"X-API-KEY": key}, timeout=30) as http:
            chat_id = _chat(http)
            assert http.post(f"/v1/chats/{chat_id}/messages", json={"message": "hello"}).status_code == 200
            seen = _until(http, chat_id, "wait_for_human_input")
            with connect_sse(http, "GET", f"/v1/chats/{chat_id}/watch", params={"after_seq": seen[-1].id}) as source:
                events = source.iter_sse()
                first = next(events)  # the stream is open (a keep-alive)
                assert _checked(first) and first.event == "keep_alive"
                stack.server.stop()
                last = [sse for sse in events if _checked(sse) and sse.event != "keep_alive"]
        assert [(s.event, s.id) for s in last] == [("server_shutdown", seen[-1].id)]
    finally:
        stack.stop()
