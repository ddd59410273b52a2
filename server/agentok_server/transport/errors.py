"""The one place where domain errors become gRPC statuses (AIP-193: ErrorInfo + BadRequest details)."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
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
