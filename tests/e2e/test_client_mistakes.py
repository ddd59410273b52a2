"""Client mistakes that once reached the database or the decoder: each is a 400 / INVALID_ARGUMENT that says
what was wrong, never a 500, and nothing is stored. Through the real Envoy and server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from agentok.v1 import chat_service_pb2

from ..conftest import Keys
from ..support.api import NEXT_PAGE_TOKEN, Grpc, Rest, error_reason, real_flow, two_agent_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm, FakeLlmServer
from ..support.postgres import create_database, drop_database
from ..support.stack import Stack, create_key


@pytest.fixture()
def rest(stack: Stack, keys: Keys) -> Rest:
    return Rest(stack.rest_url, keys.alice)


@pytest.fixture()
def client(stack: Stack, keys: Keys) -> Iterator[Grpc]:
    c = Grpc(stack.edge_target, keys.alice)
    yield c
    c.close()


def _token(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def _chat_count(rest: Rest) -> int:
    return len(rest.chats())


def _fixed_reply_flow() -> dict[str, Any]:
    return two_agent_flow(
        a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": "ok"}, b_type="conversable"
    )


def test_unknown_enum_number_is_a_400_and_creates_nothing(rest: Rest, client: Grpc) -> None:
    flow = rest.create_flow(_fixed_reply_flow())
    before = _chat_count(rest)
    body = {"from_type": "flow", "from_flow": flow["id"], "human_input_timeout_action": 7}
    r = rest.http.post("/chats", json=body)
    assert r.status_code == 400, r.text
    assert "human_input_timeout_action" in r.json()["message"] and "7" in r.json()["message"]
    req = chat_service_pb2.CreateChatRequest(from_type="flow", from_flow=flow["id"], human_input_timeout_action=7)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as err:
        client.chats.CreateChat(req, metadata=client.metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _chat_count(rest) == before


def test_requests_that_do_not_decode_are_invalid_argument(rest: Rest, client: Grpc) -> None:
    # Bad UTF-8 in a path or query parameter reaches the server as a string field that does not decode.
    r = rest.http.get("/chats/%ff%fe")
    assert r.status_code == 400, r.text
    assert error_reason(r.json()) == "MALFORMED_REQUEST" and "decoded" in r.json()["message"]
    r = rest.http.get("/chats", params={"page_token": b"\xff".decode("latin-1")})
    assert r.status_code in (400,), r.text
    # Native gRPC: bytes that are no protobuf at all.
    raw = client.channel.unary_unary("/agentok.v1.ChatService/GetChat")
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff", metadata=client.metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be decoded" in (err.value.details() or "")


def test_a_flow_nested_too_deep_for_protobuf_is_a_400(rest: Rest) -> None:
    before = len(rest.http.get("/flows", params={"page_size": 500}).json()["flows"])
    flow = _fixed_reply_flow()
    deep: dict[str, Any] = {}
    for _ in range(60):  # protobuf's decoder stops at 100 nested messages (a Struct level costs two)
        deep = {"x": deep}
    flow["nodes"][1]["data"]["extra"] = deep
    r = rest.http.post("/flows", json={"name": "deep", "flow": flow})
    assert r.status_code == 400, r.text
    assert len(rest.http.get("/flows", params={"page_size": 500}).json()["flows"]) == before


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/chats", _token("0001-01-01T00:00:00+00:00", "x")),  # a date some databases cannot hold
        ("/chats", _token("2026-01-01T00:00:00", "x")),  # no time zone
        ("/chats", _token("2026-01-01T00:00:00+00:00", "a\x00b")),  # NUL
        ("/chats", _token("2026-01-01T00:00:00+00:00", ["x"])),  # not a string
        ("/chats/{chat}/messages", _token(2**63)),  # beyond a BIGINT
        ("/chats/{chat}/messages", _token(-1)),
        ("/flows", _token(5)),
    ],
)
def test_forged_page_tokens_are_a_400(rest: Rest, path: str, token: str) -> None:
    chat = rest.create_chat(rest.create_flow(_fixed_reply_flow())["id"])
    r = rest.http.get(path.format(chat=chat["id"]), params={"page_token": token})
    assert r.status_code == 400, r.text
    assert "page_token" in r.json()["message"]


def test_nul_characters_are_refused_and_nothing_is_stored(rest: Rest, client: Grpc) -> None:
    flow = rest.create_flow(_fixed_reply_flow())
    before = _chat_count(rest)
    r = rest.http.post("/chats", json={"name": "a\u0000b", "from_type": "flow", "from_flow": flow["id"]})
    assert r.status_code == 400 and "NUL" in r.json()["message"] and "name" in r.json()["message"]
    assert _chat_count(rest) == before

    bad_flow = _fixed_reply_flow()
    bad_flow["nodes"][2]["data"]["default_auto_reply"] = "o\u0000k"
    r = rest.http.post("/flows", json={"name": "nul", "flow": bad_flow})
    assert r.status_code == 400 and "NUL" in r.json()["message"]

    chat = rest.create_chat(flow["id"])
    r = rest.http.post(f"/chats/{chat['id']}/messages", json={"message": "hi\u0000there"})
    assert r.status_code == 400 and "message" in r.json()["message"]
    assert rest.messages(chat["id"]) == [] and rest.chat(chat["id"])["status"] == "ready"

    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})
    before_input = rest.messages(chat["id"])
    r = rest.http.post(f"/chats/{chat['id']}/input", json={"message": "\u0000"})
    assert r.status_code == 400 and "NUL" in r.json()["message"]
    assert rest.messages(chat["id"]) == before_input
    assert rest.chat(chat["id"])["status"] == "wait_for_human_input"

    with pytest.raises(grpc.RpcError) as err:
        client.chats.GetChat(chat_service_pb2.GetChatRequest(chat_id="a\x00b"), metadata=client.metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("timeout", "says"), [("315576000000s", "at most"), ("0.000000001s", "at least 1ms"), ("-1s", "negative")]
)
def test_human_input_timeouts_out_of_range_are_a_400(rest: Rest, timeout: str, says: str) -> None:
    flow = rest.create_flow(_fixed_reply_flow())
    before = _chat_count(rest)
    r = rest.http.post("/chats", json={"from_type": "flow", "from_flow": flow["id"], "human_input_timeout": timeout})
    assert r.status_code == 400, r.text
    assert "human_input_timeout" in r.json()["message"] and says in r.json()["message"]
    assert _chat_count(rest) == before


def test_pages_of_large_items_end_early_and_every_item_is_reached(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    # Its own stack and owner: the listing must see only these flows.
    stack = Stack(tmp_path, llm_server.base_url).start()
    try:
        _, key = create_key(stack.env, "big", "big-owner")
        rest = Rest(stack.rest_url, key)
        big_flow = _fixed_reply_flow()
        big_flow["nodes"][0]["data"]["notes"] = "n" * 700_000
        ids = {rest.create_flow(big_flow, name=f"big {i}")["id"] for i in range(3)}
        seen: list[str] = []
        token, pages = "", 0
        while True:
            page = rest.http.get("/flows", params={"page_size": 50, "page_token": token}).json()
            seen += [f["id"] for f in page["flows"]]
            pages += 1
            assert 1 <= len(page["flows"]) < 3
            token = page["next_page_token"]
            if not token:
                break
        assert sorted(seen) == sorted(ids) and pages >= 2

        # Messages too: a long history of long messages comes back in pages a client can receive.
        chat = rest.create_chat(next(iter(ids)))
        sent = rest.send(chat["id"], "a" * 600_000)
        rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})
        answered = rest.input(chat["id"], "b" * 600_000)
        rest.wait_status(chat["id"], int(answered["last_seq"]), {"wait_for_human_input"})
        # (The unversioned path: a bare array per page, the next token in a header.)
        first = rest.http.get(f"/chats/{chat['id']}/messages", params={"page_size": 1000})
        token = first.headers.get(NEXT_PAGE_TOKEN, "")
        assert token and len(first.json()) < 4
        rest_of = rest.http.get(f"/chats/{chat['id']}/messages", params={"page_token": token})
        assert NEXT_PAGE_TOKEN not in rest_of.headers
        contents = [m["content"] for m in first.json() + rest_of.json()]
        assert [c[:1] + str(len(c)) for c in contents] == ["a600000", "o2", "b600000", "o2"]
    finally:
        stack.stop()


def test_watch_answers_its_headers_before_the_first_event(tmp_path: Path, llm_server: FakeLlmServer) -> None:
    # A keep-alive period far beyond the client's read timeout: only headers sent at once get through.
    stack = Stack(tmp_path, llm_server.base_url, extra_env={"AGENTOK_WATCH_KEEPALIVE_SECONDS": "600"}).start()
    try:
        _, key = create_key(stack.env, "watcher", "watcher")
        rest = Rest(stack.rest_url, key)
        chat = rest.create_chat(rest.create_flow(with_model(real_flow("14"), "m"))["id"])
        timeout = httpx.Timeout(30, read=10)
        with rest.http.stream("GET", f"/chats/{chat['id']}/watch", timeout=timeout) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        client = Grpc(stack.edge_target, key)
        try:
            call = client.watch(chat["id"], timeout=10)
            assert call.initial_metadata() is not None  # raises DEADLINE_EXCEEDED if the headers never come
            call.cancel()
        finally:
            client.close()
    finally:
        stack.stop()


def test_request_ids_up_to_128_characters_are_accepted_on_every_write(rest: Rest) -> None:
    chat = rest.create_chat(rest.create_flow(_fixed_reply_flow())["id"])
    longest, too_long = "r" * 128, "r" * 129
    r = rest.http.post(f"/chats/{chat['id']}/messages", json={"message": "hi", "request_id": too_long})
    assert r.status_code == 400 and "request_id" in r.json()["message"]
    assert rest.messages(chat["id"]) == []
    r = rest.http.post(f"/chats/{chat['id']}/messages", json={"message": "hi", "request_id": longest})
    assert r.status_code == 200, r.text
    rest.wait_status(chat["id"], int(r.json()["last_seq"]), {"wait_for_human_input"})
    r = rest.http.post(f"/chats/{chat['id']}/input", json={"message": "exit", "request_id": longest})
    assert r.status_code == 200, r.text
    flow = {"name": "long-request-id", "flow": _fixed_reply_flow()}
    r = rest.http.post("/flows", json={**flow, "request_id": too_long})
    assert r.status_code == 400 and "request_id" in r.json()["message"]
    r = rest.http.post("/flows", json={**flow, "request_id": longest})
    assert r.status_code == 200, r.text
    names = [f["name"] for f in rest.http.get("/flows", params={"page_size": 500}).json()["flows"]]
    assert names.count("long-request-id") == 1


@pytest.fixture(scope="module")
def postgres_rest(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[Rest]:
    """The same mistakes on PostgreSQL, where NUL and out-of-range dates used to be database errors (500s)."""
    url = create_database()
    stack = Stack(tmp_path_factory.mktemp("pg-stack"), llm_server.base_url, extra_env={"AGENTOK_DATABASE_URL": url})
    try:
        stack.start()
        _, key = create_key(stack.env, "pg", "pg-owner")
        yield Rest(stack.rest_url, key)
    finally:
        stack.stop()
        drop_database(url)


def test_on_postgres_nul_and_forged_tokens_are_400s_and_nothing_is_stored(postgres_rest: Rest) -> None:
    rest = postgres_rest
    flow = rest.create_flow(_fixed_reply_flow())
    r = rest.http.post("/chats", json={"name": "a\u0000b", "from_type": "flow", "from_flow": flow["id"]})
    assert r.status_code == 400 and "NUL" in r.json()["message"]
    r = rest.http.post("/flows", json={"name": "n\u0000", "flow": _fixed_reply_flow()})
    assert r.status_code == 400 and "NUL" in r.json()["message"]
    chat = rest.create_chat(flow["id"])
    r = rest.http.post(f"/chats/{chat['id']}/messages", json={"message": "a\u0000b"})
    assert r.status_code == 400 and rest.messages(chat["id"]) == []
    for path, token in (
        ("/chats", _token("0001-01-01T00:00:00+00:00", "x")),
        ("/chats", _token("2026-01-01T00:00:00+00:00", "a\x00b")),
        (f"/chats/{chat['id']}/messages", _token(2**63)),
    ):
        r = rest.http.get(path, params={"page_token": token})
        assert r.status_code == 400 and "page_token" in r.json()["message"], (path, r.text)
    assert [c["id"] for c in rest.chats()] == [chat["id"]]


def test_on_postgres_a_model_answer_with_nul_is_stored_with_a_replacement(
    postgres_rest: Rest, fake_llm: FakeLlm
) -> None:
    model = unique_model()
    fake_llm.script(model, ["before\u0000after"])
    chat = postgres_rest.create_chat(postgres_rest.create_flow(with_model(real_flow("13"), model))["id"])
    sent = postgres_rest.send(chat["id"], "hello")
    postgres_rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input", "error"})
    assert postgres_rest.chat(chat["id"])["status"] == "wait_for_human_input"
    assert [m["content"] for m in postgres_rest.messages(chat["id"])] == ["hello", "before\ufffdafter"]
