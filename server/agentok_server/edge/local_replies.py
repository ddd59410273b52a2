"""Envoy's own refusals (local replies), each with a stable ErrorInfo reason, in the server's error shape.

Envoy answers some requests itself: the transcoder's (a body that is not JSON for the request, an unknown path
or query parameter), jwt_authn's (a refused bearer token), ext_authz's when the key check cannot be made, the
rate limit's, the body and header caps', the routes' (a path segment longer than any id, an unknown gRPC
service), and the router's (no server up, a call over its time). This module is the one table of them
(EDGE_ERRORS) and renders it as the listener's `local_reply_config` mappers:
  * REST callers get `{"code": <gRPC code>, "message": ..., "details": [ErrorInfo{reason, domain: agentok.ai}]}`,
    the body the transcoder prints for the server's own errors; the message is Envoy's text where it says
    what was wrong (the transcoder's, jwt_authn's), a fixed one otherwise.
  * Native gRPC callers get a trailers-only reply with grpc-status, grpc-message and, for the kinds they can
    meet, `grpc-status-details-bin`: a serialized google.rpc.Status with the same ErrorInfo. Its message must
    equal the grpc-message (grpc-status's rpc_status.from_call checks), so those replies get a fixed text.
  * The key check's own refusals (ext_authz denials: 401, a 400 for an unknown body field, 405) already carry
    the status, as JSON or as grpc-status-details-bin (transport/authz_http.py): they pass untouched.
What tells the kinds apart beyond the HTTP status is Envoy's response code details (`%RESPONSE_CODE_DETAILS%`
in the access log), read by a CEL filter: e.g. `early_grpc_json_transcode_failure{INVALID_ARGUMENT}` is the
transcoder refusing the path or query before the body is read, `jwt_authn_access_denied{Jwt_is_expired}` an
expired token. Mappers are tried in order and the first that matches wins; they apply only to replies Envoy
makes, never to the server's responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.rpc import code_pb2

from ..transport.authz_http import CLIENT_CONTENT_TYPE_HEADER
from ..transport.errors import ERROR_DOMAIN, edge_status, grpc_details_header

_ANY = "type.googleapis.com/google.rpc."


def _status(op: str, value: int, name: str) -> dict[str, Any]:
    # Each runtime key must be unique in the config; Envoy reads a default when the key is unset.
    return {"status_code_filter": {"comparison": {"op": op, "value": {"default_value": value, "runtime_key": name}}}}


def _cel(expression: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        }
    }


def _details(prefix: str) -> dict[str, Any]:
    return _cel(f"response.code_details.startsWith('{prefix}')")


def _all(*filters: dict[str, Any]) -> dict[str, Any]:
    return filters[0] if len(filters) == 1 else {"and_filter": {"filters": list(filters)}}


def _any(*filters: dict[str, Any]) -> dict[str, Any]:
    return {"or_filter": {"filters": list(filters)}}


_AUTHZ_FAILED = {"response_flag_filter": {"flags": ["UAEX"]}}
# A native gRPC call. A transcoded REST request has content-type application/grpc by now too, but the
# transcoder also set x-envoy-original-path (the REST path), which native gRPC requests lack (the edge drops
# a client's copy).
_NATIVE_GRPC = _all(
    {"header_filter": {"header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}}},
    {"header_filter": {"header": {"name": "x-envoy-original-path", "present_match": False}}},
)
# A gRPC-web call (a browser's, or Node's connect-web). The grpc_web filter made it native gRPC before any filter
# that refuses requests, but Envoy decided at the start that it is no gRPC request: its local replies are plain
# HTTP ones, which the grpc_web filter then turns into a status of its own (from the HTTP code, the body as the
# message). So its kinds get a gRPC-web reply made here: HTTP 200, no body, the status in the headers (a
# trailers-only reply, which the grpc_web filter passes on as it is). The client's own content type, copied by
# the header_mutation filter before the grpc_web filter, tells it apart.
_GRPC_WEB = {
    "header_filter": {
        "header": {"name": CLIENT_CONTENT_TYPE_HEADER, "string_match": {"prefix": "application/grpc-web"}}
    }
}
_JWT = "jwt_authn_access_denied{"


@dataclass(frozen=True)
class EdgeError:
    """One kind of local reply: when Envoy makes it, and what the client gets."""

    reason: str
    # The gRPC code: the JSON body's `code`, and the grpc-status of a native gRPC caller.
    code: int
    # The HTTP status a REST caller gets; 0 keeps Envoy's.
    http_status: int
    # An AccessLogFilter that matches this kind (besides native gRPC or not).
    when: dict[str, Any]
    # A fixed message; None keeps Envoy's own text (REST only).
    message: str | None = None
    # Prefix to Envoy's own text in REST bodies.
    prefix: str = ""
    # The message native gRPC callers get, with the details; None if they never meet this kind.
    grpc_message: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    # Its line in the README's table of reasons.
    doc: str = ""

    def rest_mapper(self) -> dict[str, Any]:
        # metadata always, as the transcoder prints the server's (always_print_primitive_fields).
        info = {"@type": _ANY + "ErrorInfo", "reason": self.reason, "domain": ERROR_DOMAIN, "metadata": self.metadata}
        details: list[dict[str, Any]] = [info]
        if self.retry_after_seconds is not None:
            details.append({"@type": _ANY + "RetryInfo", "retry_delay": f"{self.retry_after_seconds:g}s"})
        mapper: dict[str, Any] = {
            "filter": self.when,
            "body_format_override": {
                "json_format": {"code": self.code, "message": f"{self.prefix}%LOCAL_REPLY_BODY%", "details": details},
                "content_type": "application/json",
            },
        }
        if self.http_status:
            mapper["status_code"] = self.http_status
        if self.message is not None:
            mapper["body"] = {"inline_string": self.message}
        return mapper

    def grpc_mapper(self) -> dict[str, Any] | None:
        if self.grpc_message is None:
            return None
        status = edge_status(
            self.code,
            self.grpc_message,
            self.reason,
            metadata=self.metadata,
            retry_after_seconds=self.retry_after_seconds,
        )
        headers = {"grpc-status": str(self.code), "grpc-status-details-bin": grpc_details_header(status)}
        # grpc-status set here wins over the one Envoy derives from the HTTP status (jwt_authn's 403 would be
        # PERMISSION_DENIED, a 504 UNAVAILABLE).
        return {
            "filter": _all(_NATIVE_GRPC, self.when),
            "body": {"inline_string": self.grpc_message},
            "headers_to_add": _headers(headers),
        }

    def grpc_web_mapper(self) -> dict[str, Any] | None:
        """The same status for a gRPC-web caller, as a trailers-only reply (see _GRPC_WEB)."""
        native = self.grpc_mapper()
        if native is None:
            return None
        headers = {"grpc-message": self.grpc_message or "", "content-type": "application/grpc-web+proto"}
        return {
            "filter": _all(_GRPC_WEB, self.when),
            "status_code": 200,
            "body": {"inline_string": ""},
            "headers_to_add": [*native["headers_to_add"], *_headers(headers)],
        }


def _headers(values: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in values.items()
    ]


# jwt_authn's refusals, by the text it gives (spaces become underscores in the response code details).
_TOKEN_KINDS = [
    ("TOKEN_EXPIRED", "Jwt_is_expired", "Jwt is expired", "the token's exp is past"),
    ("TOKEN_NOT_YET_VALID", "Jwt_not_yet_valid", "Jwt not yet valid", "the token's nbf is still ahead"),
    ("TOKEN_AUDIENCE_NOT_ALLOWED", "Audiences_in_Jwt", "Audiences in Jwt are not allowed", "another aud"),
    ("TOKEN_ISSUER_UNKNOWN", "Jwt_issuer_is_not_configured", "Jwt issuer is not configured", "another iss"),
    ("TOKEN_SIGNATURE_INVALID", "Jwt_verification_fails", "Jwt verification fails", "not signed by a key of the JWKS"),
    ("TOKEN_ALGORITHM_UNSUPPORTED", "Jwt_header_[alg]", "Jwt header [alg] is not supported", "alg none, HS256, ..."),
    ("TOKEN_MALFORMED", "Jwt_is_not_in_the_form", "Jwt is not in the form of Header.Payload.Signature", "not a JWT"),
]


def edge_errors(*, max_request_bytes: int, max_request_headers_kb: int, max_id_length: int) -> list[EdgeError]:
    """EDGE_ERRORS for these limits, in the order the mappers are tried."""
    refused_token = _any(_status("EQ", 401, "local_reply_401"), _status("EQ", 403, "local_reply_403"))
    tokens = [
        EdgeError(
            reason,
            code_pb2.UNAUTHENTICATED,
            401,
            _all(refused_token, _details(_JWT + marker)),
            prefix="bearer token refused: ",
            grpc_message=f"bearer token refused: {text}",
            doc=f"401: a bearer token jwt_authn refused: {doc}",
        )
        for reason, marker, text, doc in _TOKEN_KINDS
    ]
    return [
        EdgeError(
            "AUTHZ_UNAVAILABLE",
            code_pb2.UNAVAILABLE,
            503,
            _all(_AUTHZ_FAILED, _status("GE", 500, "local_reply_authz_5xx")),
            message="authorization service unavailable",
            grpc_message="authorization service unavailable",
            doc="503: the key check could not be made (server down or slow): retry",
        ),
        *tokens,
        # jwt_authn's 403 (a token it verified but whose audience is wrong) is a refused credential too: 401.
        EdgeError(
            "TOKEN_INVALID",
            code_pb2.UNAUTHENTICATED,
            401,
            _all(refused_token, _details(_JWT)),
            prefix="bearer token refused: ",
            grpc_message="bearer token refused: the token could not be verified",
            doc="401: any other bearer token jwt_authn refused (the message says why)",
        ),
        EdgeError(
            "PATH_SEGMENT_TOO_LONG",
            code_pb2.INVALID_ARGUMENT,
            400,
            _all(_status("EQ", 400, "local_reply_400_segment"), _details("direct_response")),
            message=f"a path segment is longer than {max_id_length} characters: no id is that long",
            grpc_message=f"a path segment is longer than {max_id_length} characters: no id is that long",
            metadata={"max_length": str(max_id_length)},
            doc=f"400: a path segment (an id) over {max_id_length} characters",
        ),
        EdgeError(
            "INVALID_LAST_EVENT_ID",
            code_pb2.INVALID_ARGUMENT,
            400,
            _all(_status("EQ", 400, "local_reply_400_lua"), _details("lua_response")),
            doc="400: a Last-Event-ID that is no event's id (a sequence number) on the watch stream",
        ),
        EdgeError(
            "INVALID_QUERY_PARAMETER",
            code_pb2.INVALID_ARGUMENT,
            400,
            _all(_status("EQ", 400, "local_reply_400_query"), _details("early_grpc_json_transcode_failure")),
            doc="400: a query parameter the request does not have, or a value of the wrong type",
        ),
        EdgeError(
            "INVALID_JSON",
            code_pb2.INVALID_ARGUMENT,
            400,
            _all(_status("EQ", 400, "local_reply_400_json"), _details("grpc_json_transcode_failure")),
            doc="400: a body that is not JSON, or not the request's JSON (a value of the wrong type)",
        ),
        EdgeError(
            "HEADERS_TOO_LARGE",
            code_pb2.INVALID_ARGUMENT,
            400,
            _status("EQ", 431, "local_reply_431"),
            message=f"request headers (the URL included) larger than {max_request_headers_kb} KiB",
            metadata={"max_kib": str(max_request_headers_kb)},
            doc=f"400: request headers, the URL included, over {max_request_headers_kb} KiB",
        ),
        EdgeError(
            "MALFORMED_REQUEST",
            code_pb2.INVALID_ARGUMENT,
            400,
            _status("EQ", 400, "local_reply_400"),
            doc="400: an HTTP request Envoy could not read",
        ),
        EdgeError(
            "UNKNOWN_METHOD",
            code_pb2.UNIMPLEMENTED,
            404,
            _all(_status("EQ", 404, "local_reply_404_route"), _details("direct_response")),
            grpc_message="unknown service or method",
            doc="404 / UNIMPLEMENTED: a gRPC service or method the edge does not serve",
        ),
        EdgeError(
            "NOT_FOUND_PATH",
            code_pb2.NOT_FOUND,
            404,
            _status("EQ", 404, "local_reply_404"),
            doc="404: no REST route has this path",
        ),
        EdgeError(
            "REQUEST_TIMEOUT",
            code_pb2.DEADLINE_EXCEEDED,
            408,
            _status("EQ", 408, "local_reply_408"),
            doc="408: the request's headers did not arrive in time",
        ),
        EdgeError(
            "BODY_TOO_LARGE",
            code_pb2.RESOURCE_EXHAUSTED,
            413,
            _status("EQ", 413, "local_reply_413"),
            message=f"request body larger than {max_request_bytes} bytes",
            metadata={"max_bytes": str(max_request_bytes)},
            doc=f"413: a REST body over {max_request_bytes} bytes",
        ),
        EdgeError(
            "RATE_LIMITED",
            code_pb2.RESOURCE_EXHAUSTED,
            429,
            _status("EQ", 429, "local_reply_429"),
            message="too many requests with this credential: retry after the Retry-After header's seconds",
            grpc_message="too many requests with this credential: retry in a second",
            retry_after_seconds=1,
            doc="429 (Retry-After: 1) / RESOURCE_EXHAUSTED: this credential's rate limit",
        ),
        EdgeError(
            "UPSTREAM_UNAVAILABLE",
            code_pb2.UNAVAILABLE,
            503,
            _any(_status("EQ", 502, "local_reply_502"), _status("EQ", 503, "local_reply_503")),
            grpc_message="no server could take the call: retry shortly",
            doc="503: no server is up to take the call (REST: Envoy's text says why): retry",
        ),
        EdgeError(
            "UPSTREAM_TIMEOUT",
            code_pb2.DEADLINE_EXCEEDED,
            504,
            _status("EQ", 504, "local_reply_504"),
            grpc_message="the call took longer than the edge allows",
            doc="504 / DEADLINE_EXCEEDED: the call took longer than the route allows (AGENTOK_ROUTE_TIMEOUT_SECONDS)",
        ),
        EdgeError(
            "EDGE_INTERNAL",
            code_pb2.INTERNAL,
            0,
            _status("GE", 500, "local_reply_5xx"),
            doc="500: the edge failed otherwise",
        ),
        EdgeError(
            "REQUEST_REFUSED",
            code_pb2.UNKNOWN,
            0,
            _status("GE", 405, "local_reply_4xx"),
            doc="another 4xx Envoy refused the request with (its status kept)",
        ),
    ]


def local_reply_mappers(errors: list[EdgeError]) -> list[dict[str, Any]]:
    """The mappers, first match wins: gRPC-web kinds, native gRPC kinds, native gRPC (and gRPC-web) as is, the
    key check's own refusals as they are, then the REST kinds. Envoy's 401 to 403 come only from ext_authz and
    jwt_authn here."""
    web = [m for m in (e.grpc_web_mapper() for e in errors) if m is not None]
    grpc = [m for m in (e.grpc_mapper() for e in errors) if m is not None]
    rest = [e.rest_mapper() for e in errors]
    as_is: list[dict[str, Any]] = [{"filter": _NATIVE_GRPC}]
    # The check unavailable (UAEX, 5xx) is matched before the check's denials pass as they are.
    assert errors[0].reason == "AUTHZ_UNAVAILABLE", "edge_errors() lists AUTHZ_UNAVAILABLE first"
    authz_first, others = rest[:1], rest[1:]
    return [*web, *grpc, *as_is, *authz_first, {"filter": _AUTHZ_FAILED}, *others]
