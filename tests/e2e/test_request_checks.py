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

from agentok.v1 import flow_service_pb2

from ..conftest import Keys
from ..support.api import Grpc, two_agent_flow
from ..support.stack import Stack


@pytest.fixture()
def direct(stack: Stack, keys: Keys) -> Iterator[Grpc]:
    c = Grpc(stack.server.target, keys.alice)
    yield c
    c.close()


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
