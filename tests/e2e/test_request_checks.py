"""What the server checks in a request before it does anything: values JSON cannot hold, NUL in a request_id,
a request_id reused for another request, and oversize ids and page tokens. Each is INVALID_ARGUMENT naming
the field, and nothing is stored. Native gRPC straight to the server port (what Envoy's own checks cannot
cover), and REST through the real Envoy where the seed's clients would meet it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

from agentok.v1 import api_key_service_pb2 as ks
from agentok.v1 import api_key_service_pb2_grpc, flow_service_pb2
from agentok.v1 import chat_service_pb2 as cs
from agentok_server.domain.limits import MAX_ID_LENGTH, MAX_PAGE_TOKEN_LENGTH

from ..conftest import Keys
from ..support.api import Grpc, Rest, error_reason, two_agent_flow
from ..support.stack import Stack, agentok_cli


@pytest.fixture()
def direct(stack: Stack, keys: Keys) -> Iterator[Grpc]:
    c = Grpc(stack.server.target, keys.alice)
    yield c
    c.close()


@pytest.fixture()
def rest(stack: Stack, keys: Keys) -> Rest:
    return Rest(stack.rest_url, keys.alice)


def _details(err: grpc.RpcError) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    """(ErrorInfo reason, its metadata, BadRequest field violations) of a failed call."""
    reason, metadata, violations = "", {}, []
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [(v.field, v.description) for v in bad.field_violations]
    return reason, metadata, violations


def _flow_names(client: Grpc) -> list[str]:
    req = flow_service_pb2.ListFlowsRequest(page_size=500)
    return [f.name for f in client.flows.ListFlows(req, metadata=client.metadata, timeout=10).flows]


def _fixed_reply_flow() -> dict[str, Any]:
    return two_agent_flow(
        a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": "ok"}, b_type="conversable"
    )


# --------------------------------------------------------------------------------------------------
# NaN and ±Infinity in a flow


@pytest.mark.parametrize(
    ("value", "word"), [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")], ids=str
)
def test_a_non_finite_number_in_a_flow_is_invalid_argument_naming_where_it_is(
    direct: Grpc, value: float, word: str
) -> None:
    flow = _fixed_reply_flow()
    graph = struct_pb2.Struct()
    graph.update(flow)
    graph["nodes"][2]["data"]["temperature"] = value
    name = f"non-finite {word}"
    with pytest.raises(grpc.RpcError) as err:
        direct.flows.CreateFlow(
            flow_service_pb2.CreateFlowRequest(name=name, flow=graph), metadata=direct.metadata, timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    field = "flow.nodes[2].data.temperature"
    assert err.value.details() == f"{field}: {word} is not a JSON number"
    assert _details(err.value)[2] == [(field, f"{word} is not a JSON number")]
    assert name not in _flow_names(direct)


def test_a_non_finite_number_deep_in_a_list_is_named_by_its_index(direct: Grpc) -> None:
    graph = struct_pb2.Struct()
    graph.update(_fixed_reply_flow())
    graph["nodes"][1]["data"]["extra"] = {"weights": [1.0, 2.0]}
    graph["nodes"][1]["data"]["extra"]["weights"][1] = math.nan
    with pytest.raises(grpc.RpcError) as err:
        direct.flows.CreateFlow(
            flow_service_pb2.CreateFlowRequest(name="deep nan", flow=graph), metadata=direct.metadata, timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("flow.nodes[1].data.extra.weights[1]: NaN")
    assert "deep nan" not in _flow_names(direct)


def test_finite_numbers_in_a_flow_still_round_trip(direct: Grpc) -> None:
    flow = _fixed_reply_flow()
    flow["nodes"][2]["data"]["temperature"] = 0.5
    flow["nodes"][2]["data"]["extra"] = {"n": 3, "nothing": None, "ok": True, "list": [1, "x", {"y": -2.5}]}
    flow_id = direct.create_flow(flow, name="finite")
    got = direct.flows.GetFlow(flow_service_pb2.GetFlowRequest(flow_id=flow_id), metadata=direct.metadata, timeout=10)
    data = got.flow.flow["nodes"][2]["data"]
    assert data["temperature"] == 0.5
    extra = data["extra"]
    assert (extra["n"], extra["nothing"], extra["ok"]) == (3, None, True)
    assert extra["list"][2]["y"] == -2.5 and extra["list"][1] == "x"


# --------------------------------------------------------------------------------------------------
# request_id: NUL, and reuse with another request


def test_nul_in_a_request_id_is_invalid_argument_and_nothing_is_stored(direct: Grpc, rest: Rest) -> None:
    flow_id = direct.create_flow(_fixed_reply_flow())
    md = direct.metadata
    before = _chat_ids(direct)
    with pytest.raises(grpc.RpcError) as err:
        direct.chats.CreateChat(
            cs.CreateChatRequest(from_type="flow", from_flow=flow_id, request_id="c\x001"), metadata=md, timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(err.value)[2] == [("request_id", "must not contain the NUL character (U+0000)")]
    assert _chat_ids(direct) == before

    chat = direct.create_chat(flow_id)
    with pytest.raises(grpc.RpcError) as err:
        direct.chats.SendMessage(
            cs.SendMessageRequest(chat_id=chat.id, message="hello", request_id="m\x001"), metadata=md, timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in (err.value.details() or "")
    assert rest.messages(chat.id) == [] and rest.chat(chat.id)["status"] == "ready"

    sent = rest.send(chat.id, "hello")
    rest.wait_status(chat.id, int(sent["last_seq"]), {"wait_for_human_input"})
    waiting = rest.messages(chat.id)
    with pytest.raises(grpc.RpcError) as err:
        direct.chats.SendInput(
            cs.SendInputRequest(chat_id=chat.id, message="typed", request_id="i\x001"), metadata=md, timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in (err.value.details() or "")
    assert rest.messages(chat.id) == waiting and rest.chat(chat.id)["status"] == "wait_for_human_input"


def test_a_request_id_reused_for_another_request_is_refused_through_rest(rest: Rest) -> None:
    flow_id = rest.create_flow(_fixed_reply_flow())["id"]
    body = {"name": "first", "from_type": "flow", "from_flow": flow_id, "request_id": "reuse-create-1"}
    first = rest.http.post("/chats", json=body)
    assert first.status_code == 200, first.text
    chats_before = _rest_chat_ids(rest)

    r = rest.http.post("/chats", json={**body, "name": "second"})
    assert r.status_code == 400, r.text
    assert error_reason(r.json()) == "REQUEST_ID_REUSED"
    info = next(d for d in r.json()["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["metadata"] == {"request_id": "reuse-create-1"}
    assert "request_id" in r.json()["message"]
    assert _rest_chat_ids(rest) == chats_before
    # The genuine retry still gets the first result.
    again = rest.http.post("/chats", json=body)
    assert again.status_code == 200 and again.json() == first.json()

    chat_id = first.json()["id"]
    msg = {"message": "hello", "request_id": "reuse-send-1"}
    sent = rest.http.post(f"/chats/{chat_id}/messages", json=msg)
    assert sent.status_code == 200, sent.text
    rest.wait_status(chat_id, int(sent.json()["last_seq"]), {"wait_for_human_input"})
    said = rest.messages(chat_id)
    r = rest.http.post(f"/chats/{chat_id}/messages", json={**msg, "message": "something else"})
    assert r.status_code == 400 and error_reason(r.json()) == "REQUEST_ID_REUSED", r.text
    r = rest.http.post(f"/chats/{chat_id}/input", json={"message": "a", "request_id": "reuse-input-1"})
    assert r.status_code == 200, r.text
    rest.wait_status(chat_id, int(r.json()["last_seq"]), {"wait_for_human_input"})
    said = rest.messages(chat_id)
    # An answer versus no answer (skip) is another request too.
    r = rest.http.post(f"/chats/{chat_id}/input", json={"request_id": "reuse-input-1"})
    assert r.status_code == 400 and error_reason(r.json()) == "REQUEST_ID_REUSED", r.text
    assert rest.messages(chat_id) == said and rest.chat(chat_id)["status"] == "wait_for_human_input"


def test_a_request_id_reused_for_another_flow_is_refused_and_stores_nothing(rest: Rest) -> None:
    body = {"name": "reuse-flow", "flow": _fixed_reply_flow(), "request_id": "reuse-flow-1"}
    first = rest.http.post("/flows", json=body)
    assert first.status_code == 200, first.text
    other_graph = _fixed_reply_flow()
    other_graph["nodes"][2]["data"]["default_auto_reply"] = "something else"
    for changed in ({**body, "name": "reuse-flow-2"}, {**body, "flow": other_graph}):
        r = rest.http.post("/flows", json=changed)
        assert r.status_code == 400 and error_reason(r.json()) == "REQUEST_ID_REUSED", r.text
        assert "request_id" in r.json()["message"]
    names = [f["name"] for f in rest.http.get("/flows", params={"page_size": 500}).json()["flows"]]
    assert names.count("reuse-flow") == 1 and "reuse-flow-2" not in names
    # The genuine retry still gets the first result.
    again = rest.http.post("/flows", json=body)
    assert again.status_code == 200 and again.json()["flow"] == first.json()["flow"]


# --------------------------------------------------------------------------------------------------
# ids and page tokens: length limits (native gRPC; Envoy refuses the same lengths on REST)


def _refused(call: Any, request: Any, client: Grpc, md: Any = None) -> tuple[str, list[tuple[str, str]]]:
    with pytest.raises(grpc.RpcError) as err:
        call(request, metadata=client.metadata if md is None else md, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or "", _details(err.value)[2]


def test_ids_longer_than_the_limit_are_invalid_argument_naming_field_and_limit(direct: Grpc, stack: Stack) -> None:
    long_id = "x" * (MAX_ID_LENGTH + 1)
    want = [("chat_id", f"must be at most {MAX_ID_LENGTH} characters")]
    chats = direct.chats
    for call, request in [
        (chats.GetChat, cs.GetChatRequest(chat_id=long_id)),
        (chats.DeleteChat, cs.DeleteChatRequest(chat_id=long_id)),
        (chats.SendMessage, cs.SendMessageRequest(chat_id=long_id, message="hi")),
        (chats.SendMessage, cs.SendMessageRequest(chat_id=long_id, message="hi", request_id="long-1")),
        (chats.SendInput, cs.SendInputRequest(chat_id=long_id, message="hi", request_id="long-2")),
        (chats.CancelChat, cs.CancelChatRequest(chat_id=long_id)),
        (chats.ListMessages, cs.ListMessagesRequest(chat_id=long_id)),
    ]:
        assert _refused(call, request, direct)[1] == want, request
    with pytest.raises(grpc.RpcError) as err:
        next(iter(direct.watch(long_id, timeout=10)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "chat_id" in (err.value.details() or "")
    details, violations = _refused(chats.CreateChat, cs.CreateChatRequest(from_type="flow", from_flow=long_id), direct)
    assert violations == [("from_flow", f"must be at most {MAX_ID_LENGTH} characters")]

    flows = direct.flows
    for call, request in [
        (flows.GetFlow, flow_service_pb2.GetFlowRequest(flow_id=long_id)),
        (flows.DeleteFlow, flow_service_pb2.DeleteFlowRequest(flow_id=long_id)),
    ]:
        assert _refused(call, request, direct)[1] == [("flow_id", f"must be at most {MAX_ID_LENGTH} characters")]

    admin = (
        agentok_cli(stack.env, "keys", "create", "limits-admin", "--owner", "lim", "--admin").strip().splitlines()[-1]
    )
    keys = api_key_service_pb2_grpc.ApiKeyServiceStub(direct.channel)
    refused = _refused(keys.DeleteApiKey, ks.DeleteApiKeyRequest(key_id=long_id), direct, (("x-api-key", admin),))
    assert refused[1] == [("key_id", f"must be at most {MAX_ID_LENGTH} characters")]

    # At the limit an id is looked up as usual: not found.
    with pytest.raises(grpc.RpcError) as err:
        chats.GetChat(cs.GetChatRequest(chat_id="x" * MAX_ID_LENGTH), metadata=direct.metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_page_tokens_longer_than_the_limit_are_invalid_argument(direct: Grpc, stack: Stack) -> None:
    token = "A" * (MAX_PAGE_TOKEN_LENGTH + 1)
    want = [("page_token", f"must be at most {MAX_PAGE_TOKEN_LENGTH} characters")]
    chat = direct.create_chat(direct.create_flow(_fixed_reply_flow()))
    for call, request in [
        (direct.chats.ListChats, cs.ListChatsRequest(page_token=token)),
        (direct.chats.ListMessages, cs.ListMessagesRequest(chat_id=chat.id, page_token=token)),
        (direct.flows.ListFlows, flow_service_pb2.ListFlowsRequest(page_token=token)),
    ]:
        assert _refused(call, request, direct)[1] == want, request
    admin = (
        agentok_cli(stack.env, "keys", "create", "tokens-admin", "--owner", "tok", "--admin").strip().splitlines()[-1]
    )
    keys = api_key_service_pb2_grpc.ApiKeyServiceStub(direct.channel)
    assert (
        _refused(keys.ListApiKeys, ks.ListApiKeysRequest(page_token=token), direct, (("x-api-key", admin),))[1] == want
    )
    # At the limit a token is read as usual: this one is no token the service issued.
    details, _ = _refused(direct.chats.ListChats, cs.ListChatsRequest(page_token=token[:-1]), direct)
    assert "not a token this service issued" in details


def _key_admin(stack: Stack, client: Grpc, owner: str) -> tuple[api_key_service_pb2_grpc.ApiKeyServiceStub, Any]:
    """The key-management stub on `client`'s channel, and metadata with a new admin key (what managing keys needs)."""
    out = agentok_cli(stack.env, "keys", "create", f"{owner}-admin", "--owner", owner, "--admin")
    return api_key_service_pb2_grpc.ApiKeyServiceStub(client.channel), (("x-api-key", out.strip().splitlines()[-1]),)


def _chat_ids(client: Grpc) -> list[str]:
    req = cs.ListChatsRequest(page_size=500)
    return [c.id for c in client.chats.ListChats(req, metadata=client.metadata, timeout=10).chats]


def _rest_chat_ids(rest: Rest) -> list[str]:
    return [c["id"] for c in rest.chats()]
