"""The one place where domain errors become gRPC statuses (AIP-193: ErrorInfo + BadRequest details)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..domain.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)

ERROR_DOMAIN = "agentok.ai"

_CODES: dict[type[DomainError], int] = {
    NotFound: code_pb2.NOT_FOUND,
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    AlreadyExists: code_pb2.ALREADY_EXISTS,
    Unauthenticated: code_pb2.UNAUTHENTICATED,
    PermissionDenied: code_pb2.PERMISSION_DENIED,
    Aborted: code_pb2.ABORTED,
    ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    Internal: code_pb2.INTERNAL,
}


def status_proto(err: DomainError) -> status_pb2.Status:
    code = next((c for cls, c in _CODES.items() if isinstance(err, cls)), code_pb2.INTERNAL)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata))
    details = [info]
    if err.field_violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in err.field_violations
                ]
            )
        )
        details.append(bad)
    if isinstance(err, ResourceExhausted):
        # When to try again, in the standard detail clients' retry policies read (AIP-193).
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=err.retry_after_seconds))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return status_pb2.Status(code=code, message=err.message, details=details)


def to_grpc_status(err: DomainError) -> grpc.Status:
    return rpc_status.to_status(status_proto(err))


def edge_status(
    code: int,
    message: str,
    reason: str,
    *,
    metadata: Mapping[str, str] | None = None,
    field_violations: Sequence[tuple[str, str]] = (),
    retry_after_seconds: float | None = None,
) -> status_pb2.Status:
    """A status the edge answers itself (the key check, Envoy's own refusals): the same details as the server's."""
    err: DomainError = (
        ResourceExhausted(message, retry_after_seconds=retry_after_seconds, reason=reason, metadata=metadata)
        if retry_after_seconds is not None
        else DomainError(message, reason=reason, metadata=metadata, field_violations=field_violations)
    )
    status = status_proto(err)
    status.code = code
    return status


def rest_error_body(status: status_pb2.Status) -> bytes:
    """The JSON a REST client gets for `status`: the transcoder's shape for the server's errors,
    {"code", "message", "details": [{"@type": ..., ...}]}, so every REST error parses one way."""
    body = json_format.MessageToDict(
        status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(body, separators=(",", ":")).encode()


def grpc_details_header(status: status_pb2.Status) -> str:
    """The value of `grpc-status-details-bin` for `status` (base64, as binary gRPC metadata travels), which
    grpc-status's rpc_status.from_call reads. Its code and message must be the call's own."""
    return base64.b64encode(status.SerializeToString()).decode()
