"""body_check: which RPC a REST request maps to (as the transcoder matches it), and which body keys name nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentok_server.transport.authz_http import unknown_fields_error
from agentok_server.transport.body_check import TRANSCODED_SERVICES, RestRoutes, Route, unknown_fields

ROUTES = RestRoutes.of()
TEMPLATE = Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml.tmpl"


def route(method: str, path: str) -> Route:
    found = ROUTES.match(method, path)
    assert found is not None, (method, path)
    return found


def unknown(method: str, path: str, body: object) -> list[tuple[str, str]]:
    return unknown_fields(route(method, path), json.dumps(body).encode())


def test_the_services_are_those_envoy_transcodes() -> None:
    (line,) = re.findall(r"^\s+services: \[(.*)\]$", TEMPLATE.read_text(), re.MULTILINE)
    assert sorted(s.strip() for s in line.split(",")) == sorted(s.full_name for s in TRANSCODED_SERVICES)


@pytest.mark.parametrize(
    ("method", "path", "rpc"),
    [
        ("GET", "/chats", "ListChats"),
        ("GET", "/chats/", "ListChats"),  # the transcoder ignores a trailing slash
        ("POST", "/v1/chats?x=1", "CreateChat"),
        ("GET", "/chats/abc", "GetChat"),
        ("GET", "/chats/abc:bogus", "GetChat"),  # no rule has that verb: it is part of the id
        ("POST", "/chats/abc:cancel", "CancelChat"),
        ("POST", "/chats/abc/abort", "CancelChat"),
        ("POST", "/chats/abc/messages", "SendMessage"),
        ("GET", "/chats/abc/messages/", "ListMessages"),
        ("GET", "/v1/chats/abc/watch", "WatchChat"),
        ("PATCH", "/tools/t1?update_mask=name", "UpdateTool"),
        ("DELETE", "/api-keys/k", "DeleteApiKey"),
    ],
)
def test_requests_map_to_the_rpc_the_transcoder_calls(method: str, path: str, rpc: str) -> None:
    assert route(method, path).rpc.name == rpc


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/chats", ["GET", "POST"]),
        ("GET", "/chats/abc:cancel", ["POST"]),
        ("POST", "/chats/abc", ["DELETE", "GET"]),
        ("GET", "/nowhere", []),
        ("POST", "/chats/abc:bogus", ["DELETE", "GET"]),
    ],
)
def test_a_method_no_route_takes_is_told_the_ones_it_does(method: str, path: str, allowed: list[str]) -> None:
    assert ROUTES.match(method, path) is None
    assert ROUTES.methods_for(path) == allowed


def test_every_rule_of_every_transcoded_service_is_a_route() -> None:
    rpcs = {m.full_name for s in TRANSCODED_SERVICES for m in s.methods}
    assert {r.rpc.full_name for r in ROUTES.routes} == rpcs
    assert {r.body for r in ROUTES.routes} == {"", "*", "tool"}


def test_path_regexes_take_what_match_takes() -> None:
    for r in ROUTES.routes:
        concrete = r.template.replace("{chat_id}", "c1").replace("{flow_id}", "f").replace("{tool_id}", "t")
        concrete = concrete.replace("{key_id}", "k")
        for path in (concrete, concrete + "/"):
            assert re.fullmatch(r.path_regex, path), (r.template, path)


def test_unknown_top_level_fields_are_named_with_what_was_meant() -> None:
    assert unknown("POST", "/chats", {"max_agent_turn": 5, "from_type": "flow"}) == [
        ("max_agent_turn", "max_agent_turns")
    ]
    assert unknown("POST", "/flows", {"nam": "x", "flow": {}}) == [("nam", "name")]
    assert unknown("POST", "/chats/c/messages", {"zzz": 1}) == [("zzz", "")]


def test_nested_repeated_and_bound_body_fields_are_named_by_their_path_in_the_request() -> None:
    assert unknown("POST", "/tools", {"name": "t", "pythn": {}, "http": {"urll": "x"}}) == [
        ("pythn", "python"),
        ("http.urll", "http.url"),
    ]
    # UpdateTool's body is the tool (`body: "tool"`): paths start at the request.
    assert unknown("PATCH", "/tools/t", {"http": {"urll": "x"}}) == [("tool.http.urll", "tool.http.url")]
    assert unknown("POST", "/chats/c/input", {"tool_results": [{"call_id": "a"}, {"call_idd": "b"}]}) == [
        ("tool_results[1].call_idd", "tool_results[1].call_id")
    ]


def test_json_names_proto_names_and_values_of_any_kind_are_not_checked() -> None:
    body = {
        "fromType": "flow",
        "from_flow": "f",
        "maxAgentTurns": "5",  # an int32 as a string: the transcoder's to judge
        "human_input_timeout": "3s",
        "humanInputTimeoutAction": 2,
        "request_id": None,
    }
    assert unknown("POST", "/chats", body) == []
    # Struct, map keys and Timestamp/Duration values hold anything.
    assert unknown("POST", "/flows", {"name": "f", "flow": {"nodes": [{"anything": {"at": "all"}}]}}) == []
    tool = {"name": "t", "parameters": {"type": "object", "x-custom": 1}, "http": {"url": "u", "headers": {"K": "v"}}}
    assert unknown("POST", "/tools", tool) == []


def test_bodies_that_are_not_a_json_object_are_left_to_the_transcoder() -> None:
    create = route("POST", "/chats")
    for body in (b"{bad", b"[1, 2]", b'"x"', b"", b"\xff\xfe"):
        assert unknown_fields(create, body) == []
    deep = b'{"flow": ' * 5000 + b"{}" + b"}" * 5000
    assert unknown_fields(route("POST", "/flows"), deep) == []
    assert unknown_fields(route("GET", "/chats/c"), b'{"x": 1}') == []  # a rule without a body


def test_at_most_ten_are_named() -> None:
    assert len(unknown("POST", "/chats", {f"f{i}": i for i in range(50)})) == 10


def test_the_refusal_is_invalid_argument_with_reason_and_field_violations() -> None:
    err = unknown_fields_error([("max_agent_turn", "max_agent_turns"), ("zzz", "")])
    assert err.reason == "UNKNOWN_FIELD"
    assert err.message == (
        'unknown fields in the request body: "max_agent_turn" (did you mean "max_agent_turns"?), "zzz"'
    )
    assert err.field_violations == [
        ("max_agent_turn", 'the API has no such field; did you mean "max_agent_turns"?'),
        ("zzz", "the API has no such field"),
    ]
    assert err.metadata == {"fields": "max_agent_turn,zzz"}
