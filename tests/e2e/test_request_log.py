"""The server's request log, read from its stderr as an operator would: one JSON line per request with the
time, the x-request-id Envoy made (the client gets the same id back), the method, the code, the latency and
the owner; and never a credential: an API key, a bearer token or a model's key appear nowhere in it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import grpc
import httpx

from agentok.v1 import chat_enums_pb2, chat_service_pb2, chat_service_pb2_grpc

from ..conftest import Keys
from ..support.api import Grpc, two_agent_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm
from ..support.stack import Stack
from ..support.tokens import TokenFactory
from ..support.waiting import eventually


def _lines(stack: Stack) -> list[dict[str, Any]]:
    """The request log's lines so far (the server's other log lines are not JSON objects with a method)."""
    found = []
    for line in stack.server.log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "method" in entry:
            found.append(entry)
    return found


def _line_for(stack: Stack, request_id: str) -> dict[str, Any]:
    (line,) = eventually(
        lambda: [e for e in _lines(stack) if e["request_id"] == request_id],
        f"the log line of request {request_id}",
    )
    return line


def test_each_request_is_one_line_with_envoys_request_id(stack: Stack, keys: Keys) -> None:
    with httpx.Client(base_url=stack.rest_url, headers={"X-API-KEY": keys.alice}, timeout=10) as http:
        listed = http.get("/v1/chats")
        missing = http.get("/v1/chats/no-such-chat")
    assert (listed.status_code, missing.status_code) == (200, 404)
    with grpc.insecure_channel(stack.edge_target) as channel:
        _, call = chat_service_pb2_grpc.ChatServiceStub(channel).ListChats.with_call(
            chat_service_pb2.ListChatsRequest(), metadata=(("x-api-key", keys.bob),), timeout=10
        )
        grpc_id = dict(call.initial_metadata())["x-request-id"]

    line = _line_for(stack, listed.headers["x-request-id"])
    assert set(line) == {"time", "request_id", "method", "code", "latency_ms", "owner"}
    assert (line["method"], line["code"], line["owner"]) == ("/agentok.v1.ChatService/ListChats", "OK", "alice")
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    line = _line_for(stack, missing.headers["x-request-id"])
    assert (line["method"], line["code"], line["owner"]) == ("/agentok.v1.ChatService/GetChat", "NOT_FOUND", "alice")
    line = _line_for(stack, grpc_id)
    assert (line["method"], line["code"], line["owner"]) == ("/agentok.v1.ChatService/ListChats", "OK", "bob")
    # Envoy's health checks (one a second) are counted in the metrics, not logged.
    assert not [e for e in _lines(stack) if e["method"].startswith("/grpc.health.v1.")]


def test_a_client_cannot_choose_the_request_id_through_envoy(stack: Stack, keys: Keys) -> None:
    chosen = "11111111-2222-3333-4444-555555555555"
    r = httpx.get(f"{stack.rest_url}/v1/chats", headers={"X-API-KEY": keys.alice, "x-request-id": chosen}, timeout=10)
    assert r.status_code == 200 and r.headers["x-request-id"] != chosen
    assert _line_for(stack, r.headers["x-request-id"])["owner"] == "alice"


def test_a_refused_call_is_logged_without_an_owner(stack: Stack) -> None:
    with grpc.insecure_channel(stack.server.target) as channel:  # straight to the server: no Envoy, no request id
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        try:
            stub.GetChat(
                chat_service_pb2.GetChatRequest(chat_id="x"), metadata=(("x-api-key", "atk_wrong"),), timeout=10
            )
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    line = eventually(
        lambda: [e for e in _lines(stack) if e["code"] == "UNAUTHENTICATED" and e["method"].endswith("/GetChat")],
        "the refused call's line",
    )[-1]
    assert line["owner"] is None and line["request_id"] is None


def test_no_key_token_or_model_key_reaches_the_log(
    stack: Stack, keys: Keys, tokens: TokenFactory, fake_llm: FakeLlm
) -> None:
    model_key = "sk-model-key-that-must-stay-secret-0123456789"
    token = tokens.token("erin")
    client = Grpc(stack.edge_target, keys.alice)
    try:
        # A model that refuses, quoting the key it was sent (as OpenAI does): the run ends in error.
        model = unique_model("fail-401")
        flow = with_model(two_agent_flow(), model)
        flow["llm_config"]["api_key"] = model_key
        chat = client.create_chat(client.create_flow(flow))
        client.chats.SendMessage(
            chat_service_pb2.SendMessageRequest(chat_id=chat.id, message="hi"), metadata=client.metadata, timeout=10
        )
        fake_llm.wait_for_requests(model, 1)
        eventually(
            lambda: (
                client.chats.GetChat(
                    chat_service_pb2.GetChatRequest(chat_id=chat.id), metadata=client.metadata, timeout=10
                ).chat.status
            ),
            "the run to fail",
            accept=lambda status: status == chat_enums_pb2.ChatStatus.Value.Value("error"),
        )
    finally:
        client.close()
    with httpx.Client(base_url=stack.rest_url, timeout=10) as http:
        assert http.get("/v1/chats", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert http.get("/v1/chats", headers={"X-API-KEY": keys.bob}).status_code == 200
        assert http.get("/v1/chats", headers={"X-API-KEY": keys.alice + "x"}).status_code == 401
    eventually(lambda: [e for e in _lines(stack) if e["owner"] == "erin"], "the bearer call's line")
    log = stack.server.log_path.read_text()
    for secret in (keys.alice, keys.bob, token, model_key):
        assert secret not in log
    assert "atk_" not in log and "eyJ" not in log
