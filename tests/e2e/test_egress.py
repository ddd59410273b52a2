"""The egress policy end to end, with an ordinary API key through Envoy: a flow's model URL may not point the
server at Envoy, the host's loopback services or a metadata address, at CreateFlow or later, unless the
operator lists the host (AGENTOK_EGRESS_ALLOWED_HOSTS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentok.v1 import flow_service_pb2

from ..support.api import Grpc, Rest, error_reason, real_flow, unique_model, with_model
from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, create_key

SETTING = "AGENTOK_EGRESS_ALLOWED_HOSTS"
FIELD = "flow.llm_config.base_url"


@pytest.fixture(scope="module")
def other_llm() -> Iterator[FakeLlmServer]:
    """A model endpoint on loopback that is not the server's own AGENTOK_LLM_BASE_URL (which is always allowed)."""
    server = FakeLlmServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer, other_llm: FakeLlmServer
) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("egress"), llm_server.base_url, extra_env={SETTING: f"127.0.0.1:{other_llm.port}"}
    ).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def rest(stack: Stack) -> Rest:
    _, key = create_key(stack.env, "ordinary", "tenant")
    return Rest(stack.rest_url, key)


def _refusal(rest: Rest, base_url: str) -> dict[str, Any]:
    r = rest.http.post("/flows", json={"name": "f", "flow": with_model(real_flow("01"), "m", base_url=base_url)})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error_reason(body) == "URL_NOT_ALLOWED"
    (violation,) = next(d for d in body["details"] if d["@type"].endswith("BadRequest"))["field_violations"]
    assert violation["field"] == FIELD and FIELD in body["message"]
    return body


def test_a_url_at_envoy_on_loopback_is_refused_at_create_flow_and_envoy_stays_up(stack: Stack, rest: Rest) -> None:
    before = rest.http.get("/flows").json().get("flows", [])
    # The attack: '#' cut off /chat/completions, so a run would have POSTed to Envoy's admin and
    # stopped it for every tenant. 9901 is the default admin port; the listener is Envoy itself.
    for port in (9901, stack.envoy.listen_port):
        for path in ("/quitquitquit#", "/logging?level=debug#"):
            body = _refusal(rest, f"http://127.0.0.1:{port}{path}")
            assert "fragment ('#')" in body["message"]
        body = _refusal(rest, f"http://127.0.0.1:{port}/quitquitquit")
        assert (
            f"127.0.0.1 is a loopback address; an operator can allow 127.0.0.1:{port} with {SETTING}" in body["message"]
        )
    assert stack.envoy.proc is not None and stack.envoy.proc.poll() is None
    assert rest.http.get("/flows").json().get("flows", []) == before  # nothing was stored


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data", "a cloud metadata address"),
        ("http://[::ffff:127.0.0.1]:9901/v1", "a form of 127.0.0.1, a loopback address"),
        ("http://2130706433:9901/v1", "the IPv4 address 127.0.0.1 in a non-canonical form"),
        ("http://0x7f.1:9901/v1", "the IPv4 address 127.0.0.1 in a non-canonical form"),
        ("http://localhost:9901/v1", "localhost is a loopback name"),
        ("http://user:pw@127.0.0.1:9901/v1", "user name or password"),
        ("http://10.0.0.1/v1", "a private (RFC 1918) address"),
        ("file:///etc/passwd", "http:// or https://"),
    ],
)
def test_a_url_tenants_must_not_reach_is_refused_saying_why(rest: Rest, base_url: str, why: str) -> None:
    assert why in _refusal(rest, base_url)["message"]


def test_native_grpc_gets_invalid_argument_naming_the_field(stack: Stack, rest: Rest) -> None:
    _, key = create_key(stack.env, "grpc-ordinary", "tenant")
    client = Grpc(stack.edge_target, key)
    try:
        graph = struct_pb2.Struct()
        graph.update(with_model(real_flow("01"), "m", base_url="http://127.0.0.1:9901/quitquitquit#"))
        with pytest.raises(grpc.RpcError) as info:
            client.flows.CreateFlow(
                flow_service_pb2.CreateFlowRequest(name="f", flow=graph), metadata=client.metadata, timeout=10
            )
    finally:
        client.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details) and bad.field_violations[0].field == FIELD


def test_an_allow_listed_loopback_endpoint_is_called(rest: Rest, other_llm: FakeLlmServer) -> None:
    model = unique_model()
    flow = rest.create_flow(with_model(real_flow("14"), model, base_url=other_llm.base_url))
    chat = rest.create_chat(flow["id"])
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error", "wait_for_human_input"})
    assert rest.chat(chat["id"])["status"] != "error", rest.chat(chat["id"])
    assert len(other_llm.fake.recorded_for(model)) >= 1


def test_a_stored_flow_whose_endpoint_is_no_longer_allowed_ends_error_without_calling_it(
    tmp_path: Path, llm_server: FakeLlmServer, other_llm: FakeLlmServer
) -> None:
    stack = Stack(tmp_path, llm_server.base_url, extra_env={SETTING: f"127.0.0.1:{other_llm.port}"}).start()
    try:
        _, key = create_key(stack.env, "ordinary", "tenant")
        rest = Rest(stack.rest_url, key)
        model = unique_model()
        flow = rest.create_flow(with_model(real_flow("14"), model, base_url=other_llm.base_url))
        # The operator takes the host off the list: the stored flow is as a flow stored before the policy.
        stack.server.stop()
        stack.env[SETTING] = ""
        stack.server.start()
        assert "127.0.0.1 is a loopback address" in _refusal(rest, other_llm.base_url)["message"]
        chat = rest.create_chat(flow["id"])
        sent = rest.send(chat["id"], "hello")
        rest.wait_status(chat["id"], int(sent["last_seq"]), {"completed", "error"})
        failed = rest.chat(chat["id"])
        assert failed["status"] == "error"
        assert f"model endpoint {other_llm.base_url} is not allowed" in failed["error"]
        assert "127.0.0.1 is a loopback address" in failed["error"]
        assert other_llm.fake.recorded_for(model) == []
    finally:
        stack.stop()
