"""Domain errors. The transport layer maps each class to one gRPC status code, in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class DomainError(Exception):
    """A rule of the service was broken; `reason` is a stable UPPER_SNAKE identifier for clients."""

    reason: str = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations)


class NotFound(DomainError):
    reason = "NOT_FOUND"


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class AlreadyExists(DomainError):
    """The client chose an id that names a resource it has already (AIP-133)."""

    reason = "ALREADY_EXISTS"


class Aborted(DomainError):
    """A concurrency conflict the client resolves by retrying (AIP-193)."""

    reason = "ABORTED"


class ResourceExhausted(DomainError):
    """A server-side limit the caller reached; `retry_after_seconds` is when trying again may succeed
    (sent as google.rpc.RetryInfo)."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_seconds: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_seconds = retry_after_seconds


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


class Internal(DomainError):
    """The server failed, not the caller: raised only where an unexpected error is turned into a reply."""

    reason = "INTERNAL"


def invalid_field(field: str, description: str, *, reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
    return InvalidArgument(f"{field}: {description}", reason=reason, field_violations=[(field, description)])


def chat_not_found(chat_id: str) -> NotFound:
    return NotFound(f"chat {chat_id!r} not found", reason="CHAT_NOT_FOUND", metadata={"chat_id": chat_id})


def flow_not_found(flow_id: str) -> NotFound:
    return NotFound(f"flow {flow_id!r} not found", reason="FLOW_NOT_FOUND", metadata={"flow_id": flow_id})


def tool_not_found(tool_id: str) -> NotFound:
    return NotFound(f"tool {tool_id!r} not found", reason="TOOL_NOT_FOUND", metadata={"tool_id": tool_id})


def tool_exists(tool_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"tool {tool_id!r} already exists: choose another tool_id, or change that tool with UpdateTool",
        reason="TOOL_ALREADY_EXISTS",
        metadata={"tool_id": tool_id},
    )


def too_many_runs(limit: int, retry_after_seconds: float) -> ResourceExhausted:
    return ResourceExhausted(
        f"this owner already has {limit} runs in progress (running or waiting for human input), the most "
        "allowed at once: wait for one to end, or cancel one, then send the message again",
        reason="TOO_MANY_RUNS",
        metadata={"limit": str(limit)},
        retry_after_seconds=retry_after_seconds,
    )
