"""One log line per request, to stderr: when, Envoy's x-request-id, the gRPC method, its status code, how
long it took, and whose it was (the owner id). JSON by default (AGENTOK_LOG_FORMAT=json), or plain text.

Nothing else of a request is ever written: no metadata, no body, no error message (an error's message can
quote what a client sent). The owner is known once the call is authenticated: the servicers' Authenticator
(IdentifyingAuthenticator here) notes it on the request's record, which transport/interceptor.py made and
writes when the call ends. A request id is written only in the shape Envoy makes (a UUID); a client talking
to the server port directly could send anything, its own key included.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Literal

import grpc

from ..domain.model import Identity
from .rpc import Authenticator

# Envoy sets it on every request it forwards (a fresh UUID: it trusts no client's, see use_remote_address).
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
LOGGER = "agentok_server.requests"

LogFormat = Literal["json", "text"]


@dataclass
class RequestRecord:
    """What one request's log line says; filled in while the call runs."""

    method: str
    request_id: str | None
    owner: str | None = None


_current: ContextVar[RequestRecord | None] = ContextVar("agentok_request", default=None)


def begin(method: str, metadata: tuple[tuple[str, str | bytes], ...] | None) -> RequestRecord:
    """The record of the call now starting, made current for the code that serves it."""
    request_id = next((str(v) for k, v in metadata or () if k == REQUEST_ID_HEADER), None)
    if request_id is not None and not _REQUEST_ID.fullmatch(request_id):
        request_id = None
    record = RequestRecord(method=method, request_id=request_id)
    _current.set(record)
    return record


class IdentifyingAuthenticator(Authenticator):
    """The servicers' Authenticator, which also notes whose the current request is, for its log line."""

    async def identify(self, context: grpc.aio.ServicerContext) -> Identity:
        identity = await super().identify(context)
        record = _current.get()
        if record is not None:
            record.owner = identity.owner
        return identity


class RequestLog:
    """Writes the lines through a logger of its own (not propagated to the server's other logs, whose
    format the command line chooses), to `stream`."""

    def __init__(self, fmt: LogFormat = "json", stream: IO[str] | None = None) -> None:
        self._format = fmt
        self._logger = logging.getLogger(LOGGER)
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._handler = logging.StreamHandler(stream or sys.stderr)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(self._handler)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)

    def write(self, record: RequestRecord, code: str, seconds: float) -> None:
        self._logger.info(self.line(record, code, seconds, datetime.now(UTC)))

    def line(self, record: RequestRecord, code: str, seconds: float, when: datetime) -> str:
        time = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        latency_ms = round(seconds * 1000, 3)
        if self._format == "text":
            return (
                f"{time} request {record.method} {code} {latency_ms}ms "
                f"owner={record.owner or '-'} request_id={record.request_id or '-'}"
            )
        return json.dumps(
            {
                "time": time,
                "request_id": record.request_id,
                "method": record.method,
                "code": code,
                "latency_ms": latency_ms,
                "owner": record.owner,
            }
        )
