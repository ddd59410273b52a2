"""HTTP tools: one call is one POST of `{"arguments", "call_id", "chat_id"}` to the tool's URL, with the header
`Idempotency-Key: <call_id>` (a call in flight when the process died is made again with the same key), and the
tool's own headers. A 2xx body is the result the model sees; anything else is an error result.

Only a host the operator listed in AGENTOK_EGRESS_ALLOWED_HOSTS is called (EgressPolicy.lists; the server's own
model URL does not count), through EgressClient, so the request passes the same egress check as a model
endpoint's and connects only to the addresses that check approved. Redirects are not followed. The tool's
header values are secrets: no result, log line or exception here ever contains one (errors name the host and
what went wrong, never the headers or the server's body, which may echo them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import httpx

from ..domain.model import ToolResult
from .egress import SETTING, EgressPolicy, EgressRefused, parse_url
from .egress_client import EgressClient

log = logging.getLogger(__name__)

# RFC 9110 (as domain/tools.py checks them at CreateTool): checked again here, before httpx sees a header, because
# httpx's error (and httpcore's debug log) for an invalid one quotes its value.
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE: Final = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")

# Headers the server writes itself; a tool's own (CreateTool refuses these names) never replace them.
_OURS: Final = frozenset(
    {"content-type", "content-length", "idempotency-key", "host", "transfer-encoding", "accept-encoding"}
)


class HttpToolCaller:
    """Calls http tools. `timeout`: how long one call may take, all of it (connecting, sending, the answer);
    `response_limit`: the most bytes of body read (asked uncompressed), a larger answer is an error result."""

    def __init__(self, egress: EgressPolicy, *, timeout: float, response_limit: int) -> None:
        self._egress = egress
        self._client = EgressClient(egress, timeout=timeout)
        self._timeout = timeout
        self._limit = response_limit

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self, url: str, headers: Mapping[str, str], arguments: Any, call_id: str, chat_id: str
    ) -> ToolResult:
        """The call's result; every failure is an error result, never an exception (cancellation aside: it
        aborts the request at once and propagates)."""
        try:
            parsed = parse_url(url)
        except EgressRefused as exc:
            return _error(call_id, f"the tool's URL is not allowed: {exc}")
        where = f"[{parsed.host}]:{parsed.port}" if ":" in parsed.host else f"{parsed.host}:{parsed.port}"
        if not self._egress.lists(parsed.host, parsed.port):
            # Refused before anything is resolved or connected: a tool's host needs the operator's word.
            return _error(call_id, f"the tool's host {where} is not allowed; an operator can allow it with {SETTING}")
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
                shown = name if _HEADER_NAME.fullmatch(name) else "with an invalid name"
                return _error(call_id, f"the tool's header {shown} cannot be sent (not a valid HTTP header)")
        sent = {name: value for name, value in headers.items() if name.lower() not in _OURS}
        # Uncompressed only: the limit is on the bytes read, and a compressed body may inflate far past it.
        sent |= {"Content-Type": "application/json", "Idempotency-Key": call_id, "Accept-Encoding": "identity"}
        body = json.dumps({"arguments": arguments, "call_id": call_id, "chat_id": chat_id}).encode()
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.request("POST", url, content=body, headers=sent, auth=_CappedBody(self._limit))
        except _Answered as answer:
            return self._result(call_id, where, answer)
        except (TimeoutError, httpx.TimeoutException):
            return _error(call_id, f"the tool's server at {where} did not answer within {self._timeout:g} seconds")
        except EgressRefused as exc:
            return _error(call_id, f"the tool's URL is not allowed: {exc}")
        except httpx.TransportError as exc:
            # The exception's text is not quoted: an invalid header's message would carry its value.
            log.info("http tool call %s to %s failed: %s", call_id, where, type(exc).__name__)
            return _error(call_id, f"could not reach the tool's server at {where} ({type(exc).__name__})")
        except (httpx.HTTPError, ValueError, TypeError) as exc:  # a request httpx refuses to build or send
            log.info("http tool call %s to %s could not be sent: %s", call_id, where, type(exc).__name__)
            return _error(
                call_id, f"the request to the tool's server at {where} could not be sent ({type(exc).__name__})"
            )
        raise AssertionError("_CappedBody always answers")  # pragma: no cover

    def _result(self, call_id: str, where: str, answer: _Answered) -> ToolResult:
        status = answer.status
        if 300 <= status < 400:
            return _error(
                call_id, f"the tool's server at {where} redirected (HTTP {status}); redirects are not followed"
            )
        if not 200 <= status < 300:
            log.info("http tool call %s to %s: HTTP %d", call_id, where, status)
            return _error(call_id, f"the tool's server at {where} answered HTTP {status}")
        if answer.compressed:
            return _error(
                call_id, f"the tool's server at {where} compressed its answer ({answer.compressed}); it must not"
            )
        if answer.body is None:
            return _error(call_id, f"the tool's answer from {where} is larger than {self._limit} bytes")
        try:
            return ToolResult(call_id, answer.body.decode(answer.encoding, errors="replace"))
        except LookupError:  # a charset Python does not know
            return ToolResult(call_id, answer.body.decode("utf-8", errors="replace"))


def _error(call_id: str, what: str) -> ToolResult:
    return ToolResult(call_id, f"Error: {what}", is_error=True)


class _Answered(Exception):
    """How the tool's server answered: its status and, for a 2xx within the limit, its body (None: over it, or
    not read); `compressed`: the Content-Encoding it used although asked for none."""

    def __init__(self, status: int, body: bytes | None, encoding: str, compressed: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.encoding = encoding
        self.compressed = compressed


class _CappedBody(httpx.Auth):
    """Reads at most `limit` bytes of the answer. EgressClient.request reads whole bodies (and EgressClient, whose
    check and connection pinning every egress request must pass, is the only way out); an httpx auth flow that
    does not require the body is handed the response before it is read, so this one reads it in chunks, stops
    past the limit, and hands the outcome back by raising _Answered, which closes the response (and its
    connection, if the body was not read to the end)."""

    requires_response_body = False

    def __init__(self, limit: int) -> None:
        self._limit = limit

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        response = yield request
        status, encoding = response.status_code, response.encoding or "utf-8"
        if not 200 <= status < 300:
            raise _Answered(status, None, encoding)
        compressed = response.headers.get("content-encoding", "identity").strip().lower()
        if compressed != "identity":
            raise _Answered(status, None, encoding, compressed)
        body = bytearray()
        async for chunk in response.aiter_raw():  # one network read at a time (at most 64 KiB)
            body += chunk
            if len(body) > self._limit:
                raise _Answered(status, None, encoding)
        raise _Answered(status, bytes(body), encoding)
