"""Envoy's own refusals: every kind has a stable reason, and what native gRPC callers get decodes as theirs."""

from __future__ import annotations

import base64
import re

from google.rpc import error_details_pb2, status_pb2

from agentok_server.edge.local_replies import edge_errors, local_reply_mappers
from agentok_server.transport.errors import ERROR_DOMAIN

ERRORS = edge_errors(max_request_bytes=4096, max_request_headers_kb=16, max_id_length=128)


def test_every_kind_has_its_own_stable_reason_and_says_what_it_is() -> None:
    reasons = [e.reason for e in ERRORS]
    assert len(set(reasons)) == len(reasons)
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", r) for r in reasons)
    assert all(e.doc for e in ERRORS)


def test_rest_bodies_carry_the_reason_in_the_servers_shape() -> None:
    for e in ERRORS:
        body = e.rest_mapper()["body_format_override"]["json_format"]
        assert set(body) == {"code", "message", "details"}
        info = body["details"][0]
        assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
        assert (info["reason"], info["domain"]) == (e.reason, ERROR_DOMAIN)


def test_native_grpc_replies_carry_a_status_that_matches_their_code_and_message() -> None:
    grpc_kinds = [e for e in ERRORS if e.grpc_message is not None]
    assert {"AUTHZ_UNAVAILABLE", "RATE_LIMITED", "TOKEN_EXPIRED", "TOKEN_INVALID", "UNKNOWN_METHOD"} <= {
        e.reason for e in grpc_kinds
    }
    for e in grpc_kinds:
        mapper = e.grpc_mapper()
        assert mapper is not None
        headers = {h["header"]["key"]: h["header"]["value"] for h in mapper["headers_to_add"]}
        status = status_pb2.Status.FromString(base64.b64decode(headers["grpc-status-details-bin"]))
        # rpc_status.from_call refuses a status whose code or message differ from the call's own.
        assert status.code == e.code == int(headers["grpc-status"])
        assert status.message == mapper["body"]["inline_string"] == e.grpc_message
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info) and (info.reason, info.domain) == (e.reason, ERROR_DOMAIN)


def test_native_grpc_mappers_come_first_then_the_key_checks_denials_pass_as_they_are() -> None:
    mappers = local_reply_mappers(ERRORS)
    kinds = sum(e.grpc_message is not None for e in ERRORS)
    # gRPC-web kinds first (trailers-only, HTTP 200, no body), then the same kinds for native gRPC.
    assert all(m["status_code"] == 200 and m["body"] == {"inline_string": ""} for m in mappers[:kinds])
    grpc_count = 2 * kinds
    assert all("headers_to_add" in m for m in mappers[:grpc_count])
    assert set(mappers[grpc_count]) == {"filter"}  # native gRPC as is
    assert mappers[grpc_count + 1]["body"]["inline_string"] == "authorization service unavailable"
    assert mappers[grpc_count + 2] == {"filter": {"response_flag_filter": {"flags": ["UAEX"]}}}
    assert len(mappers) == grpc_count + 2 + len(ERRORS)


def test_grpc_web_mappers_carry_the_native_status_and_message() -> None:
    for e in ERRORS:
        web, native = e.grpc_web_mapper(), e.grpc_mapper()
        if native is None:
            assert web is None
            continue
        assert web is not None
        headers = {h["header"]["key"]: h["header"]["value"] for h in web["headers_to_add"]}
        assert headers["grpc-message"] == e.grpc_message
        assert headers["content-type"] == "application/grpc-web+proto"
        assert {h["header"]["key"] for h in native["headers_to_add"]} < set(headers)


def test_limits_are_in_the_messages_and_metadata() -> None:
    by_reason = {e.reason: e for e in ERRORS}
    assert by_reason["BODY_TOO_LARGE"].metadata == {"max_bytes": "4096"}
    assert "4096 bytes" in (by_reason["BODY_TOO_LARGE"].message or "")
    assert by_reason["PATH_SEGMENT_TOO_LONG"].metadata == {"max_length": "128"}
    assert by_reason["HEADERS_TOO_LARGE"].metadata == {"max_kib": "16"}
