"""One exception for every refusal, whoever made it (the server, or Envoy at the edge): the gRPC code, and the
google.rpc.ErrorInfo reason the service puts on every error (AIP-193), read with grpcio-status."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field, from the error's google.rpc.BadRequest."""

    field: str
    description: str


@dataclass(eq=False)
class AgentokError(Exception):
    """A call the service (or its edge) refused, or that could not reach it.

    `reason` is the ErrorInfo reason (e.g. CHAT_NOT_FOUND, INVALID_ARGUMENT's field reasons, API_KEY_INVALID,
    UPSTREAM_UNAVAILABLE); empty only when the refusal carried no details (a connection gRPC itself failed).
    """

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        why = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{why}: {self.message}"


def from_rpc_error(err: grpc.RpcError) -> AgentokError:
    """The AgentokError for a failed call (sync or asyncio: both are grpc.Call's)."""
    call: grpc.Call = err  # every RpcError grpc raises for a call is also its Call
    status = _rich_status(call)
    error = AgentokError(code=call.code(), message=call.details() or "")
    for detail in status.details if status is not None else []:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            error.reason, error.domain, error.metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Unpack(bad):
            error.field_violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return error


def _rich_status(call: grpc.Call) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(call)
    except ValueError:
        # A google.rpc.Status that disagrees with the call's own code: keep the code, ignore the details.
        return None
