"""Live model output and what it costs, end to end (a real server and Envoy; only the model is the fake, which
streams its replies word by word): watchers that ask for deltas see them in order and then the stored
message they add up to, other watchers see exactly the stored events, a reconnect gets the message once;
usage on messages and chats over REST and gRPC; the token budget; a restart mid-stream."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from httpx_sse import connect_sse

from agentok.v1 import chat_service_pb2

from ..conftest import Keys
from ..support.api import Grpc, Rest, two_agent_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm, FakeLlmServer, tokens
from ..support.stack import Stack, create_key

TEXT = "streams are rivers of words that arrive one at a time"
# One model reply: the user's message, the assistant's answer, the end.
ONE_REPLY = two_agent_flow(a={"human_input_mode": "NEVER"}, edge={"max_turns": 1})


def _chat(rest: Rest, model: str, flow: dict[str, Any] = ONE_REPLY, **create: Any) -> str:
    flow_id = rest.create_flow(with_model(flow, model))["id"]
    answer = rest.http.post("/v1/chats", json={"from_type": "flow", "from_flow": flow_id, **create})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["chat"]["id"])


@pytest.fixture()
def rest(stack: Stack, keys: Keys) -> Iterator[Rest]:
    yield Rest(stack.rest_url, keys.alice)


@pytest.fixture()
def grpc_client(stack: Stack, keys: Keys) -> Iterator[Grpc]:
    client = Grpc(stack.edge_target, keys.alice)
    yield client
    client.close()


def _watch(client: Grpc, chat_id: str, **request: Any) -> Any:
    req = chat_service_pb2.WatchChatRequest(chat_id=chat_id, until_finished=True, **request)
    return client.chats.WatchChat(req, metadata=client.metadata, timeout=60)


def _kind(event: Any) -> str:
    return str(event.WhichOneof("kind"))


def test_deltas_arrive_in_order_then_the_message_they_add_up_to(
    rest: Rest, grpc_client: Grpc, fake_llm: FakeLlm
) -> None:
    model = unique_model()
    fake_llm.script(model, [TEXT])
    fake_llm.hold(model)  # the first word, then nothing until the watcher has seen it
    chat_id = _chat(rest, model)
    with_deltas = _watch(grpc_client, chat_id, include_deltas=True)
    plain: list[Any] = []
    plain_stream = _watch(grpc_client, chat_id)
    reader = threading.Thread(
        target=lambda: plain.extend(r.event for r in plain_stream if _kind(r.event) != "keep_alive")
    )
    reader.start()
    next(with_deltas)  # the stream is open (a keep-alive or the first event) before the run starts
    rest.send(chat_id, "hello")
    seen: list[Any] = []
    for response in with_deltas:
        event = response.event
        if _kind(event) == "keep_alive":
            continue
        seen.append(event)
        if _kind(event) == "message_delta" and len([e for e in seen if _kind(e) == "message_delta"]) == 1:
            fake_llm.release(model)
    reader.join(timeout=60)

    deltas = [e.message_delta for e in seen if _kind(e) == "message_delta"]
    assert deltas and {d.sender for d in deltas} == {"Assistant"} and len({d.draft_id for d in deltas}) == 1
    stored = [e.message_added for e in seen if _kind(e) == "message_added"]
    assert [m.content for m in stored] == ["hello", TEXT]
    assert "".join(d.text for d in deltas) == TEXT
    # Every delta comes between the user's message and the reply it spells, carrying the latest stored seq.
    kinds = [_kind(e) for e in seen]
    first, last = kinds.index("message_delta"), len(kinds) - 1 - kinds[::-1].index("message_delta")
    reply_at = next(i for i, e in enumerate(seen) if _kind(e) == "message_added" and e.message_added.content == TEXT)
    assert first > 0 and last < reply_at
    assert all(e.seq == seen[first - 1].seq for e in seen[first:reply_at])

    # Without include_deltas: exactly the stored events, as a replay of the history gives them.
    replayed = [r.event for r in _watch(grpc_client, chat_id) if _kind(r.event) != "keep_alive"]
    assert [(e.seq, _kind(e)) for e in plain] == [(e.seq, _kind(e)) for e in replayed]
    assert "message_delta" not in {_kind(e) for e in plain}
    # Nor are deltas replayed to a watcher that asks for them after the fact.
    assert "message_delta" not in {_kind(r.event) for r in _watch(grpc_client, chat_id, include_deltas=True)}


def _sse(http: httpx.Client, chat_id: str, last_event_id: str | None = None) -> Any:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    params = {"include_deltas": "true", "until_finished": "true"}
    return connect_sse(http, "GET", f"/v1/chats/{chat_id}/watch", params=params, headers=headers)


def test_sse_deltas_have_no_id_and_a_reconnect_gets_the_message_once(
    stack: Stack, keys: Keys, rest: Rest, fake_llm: FakeLlm
) -> None:
    model = unique_model()
    fake_llm.script(model, [TEXT])
    fake_llm.hold(model)
    chat_id = _chat(rest, model)
    with httpx.Client(base_url=stack.rest_url, headers={"X-API-KEY": keys.alice}, timeout=60) as http:
        last_id = None
        with _sse(http, chat_id) as source:
            rest.send(chat_id, "hello")
            for sse in source.iter_sse():
                if sse.event == "message_delta":
                    assert sse.id in ("", last_id)  # no id line: Last-Event-ID stays the last stored event's
                    assert json.loads(sse.data)["event"]["message_delta"]["text"] == "streams "
                    break  # the client goes away mid-message
                if sse.event != "keep_alive":
                    last_id = sse.id
        assert last_id is not None
        fake_llm.release(model)
        with _sse(http, chat_id, last_event_id=last_id) as source:
            after = [(s.event, json.loads(s.data)["event"]) for s in source.iter_sse() if s.event != "keep_alive"]
    messages = [e["message_added"]["content"] for kind, e in after if kind == "message_added"]
    assert messages == [TEXT]  # the stored message, once; the deltas it was streamed in are not replayed
    assert after[-1][1]["status_changed"]["status"] == "completed"


def test_usage_on_the_message_and_the_chat_over_rest_and_grpc(rest: Rest, grpc_client: Grpc, fake_llm: FakeLlm) -> None:
    model = unique_model()
    fake_llm.script(model, [TEXT])
    chat_id = _chat(rest, model)
    sent = rest.send(chat_id, "hello there")
    rest.wait_status(chat_id, int(sent["last_seq"]), {"completed"})
    prompt = sum(tokens(m.get("content")) for m in fake_llm.requests_for(model)[0]["messages"])
    expected = {"prompt_tokens": prompt, "completion_tokens": tokens(TEXT), "total_tokens": prompt + tokens(TEXT)}

    user, reply = rest.messages(chat_id)
    assert "usage" not in user and reply["usage"] == expected
    chat = rest.chat(chat_id)
    assert chat["run_usage"] == chat["usage"] == expected and chat["max_tokens_per_run"] == 0

    got = grpc_client.chats.GetChat(chat_service_pb2.GetChatRequest(chat_id=chat_id), metadata=grpc_client.metadata)
    as_dict = MessageToDict(got.chat, preserving_proto_field_name=True)
    assert as_dict["usage"] == as_dict["run_usage"] == expected
    listed = grpc_client.chats.ListMessages(
        chat_service_pb2.ListMessagesRequest(chat_id=chat_id), metadata=grpc_client.metadata
    )
    assert not listed.messages[0].HasField("usage")
    assert MessageToDict(listed.messages[1].usage, preserving_proto_field_name=True) == expected


def test_a_token_budget_ends_the_run_saying_why(rest: Rest, fake_llm: FakeLlm) -> None:
    model = unique_model()
    flow = two_agent_flow(a={"human_input_mode": "NEVER"})  # would go on for many turns
    chat_id = _chat(rest, model, flow, max_tokens_per_run=5)
    sent = rest.send(chat_id, "hello")
    rest.wait_status(chat_id, int(sent["last_seq"]), {"completed"})
    messages = rest.messages(chat_id)
    used = rest.chat(chat_id)["run_usage"]["total_tokens"]
    assert used >= 5 and len(fake_llm.requests_for(model)) == 1  # the first reply passed the budget
    assert messages[-1]["sender"] == "agentok"
    assert messages[-1]["content"] == f"The run ended: its budget of 5 tokens was reached ({used} used)."
    assert rest.chat(chat_id)["max_tokens_per_run"] == 5


def test_a_negative_token_budget_is_refused(rest: Rest) -> None:
    flow_id = rest.create_flow(ONE_REPLY)["id"]
    answer = rest.http.post("/v1/chats", json={"from_type": "flow", "from_flow": flow_id, "max_tokens_per_run": -1})
    assert answer.status_code == 400
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in answer.json()["details"]}
    assert details["ErrorInfo"]["reason"] == "INVALID_ARGUMENT"
    assert details["BadRequest"]["field_violations"][0]["field"] == "max_tokens_per_run"


@pytest.fixture()
def own_stack(tmp_path: Path, llm_server: FakeLlmServer) -> Iterator[tuple[Stack, Rest]]:
    stack = Stack(tmp_path, llm_server.base_url).start()
    _, key = create_key(stack.env, "k", "dora")
    try:
        yield stack, Rest(stack.rest_url, key)
    finally:
        stack.stop()


def test_a_restart_mid_stream_replays_the_journal_and_repeats_only_the_streaming_call(
    own_stack: tuple[Stack, Rest], fake_llm: FakeLlm
) -> None:
    stack, rest = own_stack
    model = unique_model()
    fake_llm.script(model, ["first answer", TEXT, TEXT])
    fake_llm.hold(model, after=1)  # the first reply streams whole; the second stops after its first word
    flow = two_agent_flow(a={"human_input_mode": "NEVER"}, edge={"max_turns": 2})
    chat_id = _chat(rest, model, flow)
    rest.send(chat_id, "hello")
    fake_llm.wait_for_requests(model, 2)  # the second reply is streaming when the server dies
    stack.server.stop(signal.SIGKILL)
    fake_llm.release(model)
    fake_llm.wait_for_hangup(model)
    stack.server.start()

    rest.wait_status(chat_id, 0, {"completed"})
    assert [m["content"] for m in rest.messages(chat_id)] == ["hello", "first answer", "", TEXT]
    # The stored reply came from the journal; only the call cut off mid-stream was made again.
    requests = fake_llm.requests_for(model)
    assert len(requests) == 3 and requests[2]["messages"] == requests[1]["messages"]
