"""HTTP tools (engine/http_tool.py) against a real HTTP server on 127.0.0.1, which the egress policy's allow-list
names (AGENTOK_EGRESS_ALLOWED_HOSTS), playing the tool's API.

The server runs on the test's own event loop, so a stalled answer waits on an asyncio.Event the test sets, and
each request (and each hang-up) is an event the test can await instead of sleeping."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentok_server.domain.model import ToolResult
from agentok_server.engine.egress import EgressPolicy
from agentok_server.engine.http_tool import HttpToolCaller

SECRET = "Bearer s3cret-tool-key-4f1d"


@dataclass
class Received:
    """One request as the tool server read it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ToolServer:
    """Answers by path: `/ok` 200 with the request's JSON arguments echoed as text; `/status/<n>` that status,
    with a body quoting every header it was sent (as a careless API's error page might); `/redirect` 302 to /ok;
    `/size/<n>` 200 with n bytes; `/endless` 200 chunked for ever; `/stall` nothing until `release` is set;
    `/latin1` a latin-1 text; `/gzip` a gzip-encoded body; `/empty` 204."""

    port: int = 0
    connections: int = 0
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body))
            self.arrived.set()
            await self._answer(path, headers, body, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, path: str, headers: dict[str, str], body: bytes, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        if path == "/ok":
            await _respond(w, 200, json.dumps(json.loads(body)["arguments"]).encode(), "application/json")
        elif path.startswith("/status/"):
            await _respond(w, int(path.removeprefix("/status/")), json.dumps(headers).encode(), "application/json")
        elif path == "/redirect":
            await _respond(w, 302, b"", "text/plain", extra=f"Location: {self.base}/ok\r\n")
        elif path.startswith("/size/"):
            await _respond(w, 200, b"x" * int(path.removeprefix("/size/")), "text/plain")
        elif path == "/latin1":
            await _respond(w, 200, "café".encode("latin-1"), "text/plain; charset=latin-1")
        elif path == "/gzip":
            await _respond(w, 200, gzip.compress(b"y" * 10_000), "text/plain", extra="Content-Encoding: gzip\r\n")
        elif path == "/empty":
            await _respond(w, 204, b"", "text/plain")
        elif path == "/endless":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"z" * 8192
            while True:  # until the client stops reading and hangs up
                w.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await w.drain()
        elif path == "/stall":
            # Answer only when released; a client that hangs up first is seen as EOF on the connection.
            released = asyncio.ensure_future(self.release.wait())
            eof = asyncio.ensure_future(reader.read())
            await asyncio.wait({released, eof}, return_when=asyncio.FIRST_COMPLETED)
            if eof.done():
                self.hung_up.set()
                released.cancel()
                return
            eof.cancel()
            await _respond(w, 200, b"late", "text/plain")


async def _respond(w: asyncio.StreamWriter, status: int, body: bytes, content_type: str, extra: str = "") -> None:
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    w.write(head.encode() + body)
    await w.drain()


@pytest.fixture
async def server() -> AsyncIterator[ToolServer]:
    async with serving() as tool_server:
        yield tool_server


@asynccontextmanager
async def serving() -> AsyncIterator[ToolServer]:
    """A tool server listening on 127.0.0.1 (a free port) until the block ends."""
    tool_server = ToolServer()
    listening = await asyncio.start_server(tool_server.handle, "127.0.0.1", 0)
    tool_server.port = listening.sockets[0].getsockname()[1]
    try:
        yield tool_server
    finally:
        tool_server.release.set()
        listening.close()
        await listening.wait_closed()


def caller_for(server: ToolServer, *, timeout: float = 10.0, limit: int = 1000) -> HttpToolCaller:
    return HttpToolCaller(EgressPolicy(f"127.0.0.1:{server.port}"), timeout=timeout, response_limit=limit)


async def call(
    caller: HttpToolCaller, url: str, headers: dict[str, str] | None = None, arguments: Any = None
) -> ToolResult:
    try:
        return await caller.call(url, headers or {}, arguments or {"q": "x"}, "call_1", "chat_1")
    finally:
        await caller.aclose()


async def test_a_call_posts_arguments_ids_and_headers_and_the_2xx_body_is_the_result(server: ToolServer) -> None:
    caller = caller_for(server)
    headers = {"Authorization": SECRET, "X-Custom": "yes", "idempotency-key": "not-the-call-id"}
    result = await call(caller, f"{server.base}/ok", headers, {"query": "Vancouver", "n": 3})
    assert result == ToolResult("call_1", '{"query": "Vancouver", "n": 3}', is_error=False)
    (request,) = server.requests
    assert request.method == "POST" and request.path == "/ok"
    assert request.json() == {"arguments": {"query": "Vancouver", "n": 3}, "call_id": "call_1", "chat_id": "chat_1"}
    # The call's own key, whatever the tool's headers say; the tool's other headers as given.
    assert request.headers["idempotency-key"] == "call_1"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == SECRET and request.headers["x-custom"] == "yes"


async def test_answers_other_than_2xx_are_error_results(server: ToolServer) -> None:
    assert await call(caller_for(server), f"{server.base}/status/503") == ToolResult(
        "call_1", f"Error: the tool's server at 127.0.0.1:{server.port} answered HTTP 503", is_error=True
    )
    redirected = await call(caller_for(server), f"{server.base}/redirect")
    assert redirected.is_error
    assert redirected.content == (
        f"Error: the tool's server at 127.0.0.1:{server.port} redirected (HTTP 302); redirects are not followed"
    )
    assert [r.path for r in server.requests] == ["/status/503", "/redirect"]  # the redirect was not followed


async def test_a_2xx_body_is_decoded_by_its_charset_and_an_empty_one_is_an_empty_result(server: ToolServer) -> None:
    assert await call(caller_for(server), f"{server.base}/latin1") == ToolResult("call_1", "café")
    assert await call(caller_for(server), f"{server.base}/empty") == ToolResult("call_1", "")


async def test_the_response_limit(server: ToolServer) -> None:
    assert await call(caller_for(server, limit=1000), f"{server.base}/size/1000") == ToolResult("call_1", "x" * 1000)
    over = await call(caller_for(server, limit=1000), f"{server.base}/size/1001")
    assert over == ToolResult(
        "call_1", f"Error: the tool's answer from 127.0.0.1:{server.port} is larger than 1000 bytes", True
    )
    # An answer that never ends is cut off at the limit: read incrementally, not buffered whole (else no return).
    endless = await call(caller_for(server, limit=50_000), f"{server.base}/endless")
    assert endless.is_error and "is larger than 50000 bytes" in endless.content
    # Compression is refused (asked for identity): a small gzip body may inflate far past any limit.
    zipped = await call(caller_for(server), f"{server.base}/gzip")
    assert zipped.is_error and "compressed its answer (gzip)" in zipped.content
    assert server.requests[-1].headers["accept-encoding"] == "identity"


async def test_a_host_the_operator_did_not_list_is_refused_before_any_connection(server: ToolServer) -> None:
    url = f"{server.base}/ok"
    # The server's own model URL is allowed for flows' model calls, but is not on the operator's list.
    model_only = EgressPolicy("", server_urls=[server.base])
    assert model_only.allows_host("127.0.0.1", server.port) and not model_only.lists("127.0.0.1", server.port)
    for policy in (EgressPolicy(""), EgressPolicy("127.0.0.1:1"), model_only):
        caller = HttpToolCaller(policy, timeout=10, response_limit=1000)
        result = await call(caller, url)
        assert result == ToolResult(
            "call_1",
            f"Error: the tool's host 127.0.0.1:{server.port} is not allowed; "
            "an operator can allow it with AGENTOK_EGRESS_ALLOWED_HOSTS",
            is_error=True,
        )
    assert server.connections == 0
    bad = await call(caller_for(server), "ftp://127.0.0.1/x")
    assert bad == ToolResult("call_1", "Error: the tool's URL is not allowed: must be an http:// or https:// URL", True)


def test_lists_matches_the_operators_entries_as_allows_host_does() -> None:
    policy = EgressPolicy("tools.example.com, 127.0.0.1:8081", server_urls=["http://models.example.com:9000/v1"])
    assert policy.lists("tools.example.com", 443) and policy.lists("tools.example.com", 8443)  # any port
    assert policy.lists("127.0.0.1", 8081) and not policy.lists("127.0.0.1", 8082)
    assert policy.allows_host("models.example.com", 9000) and not policy.lists("models.example.com", 9000)


async def test_an_unreachable_server_is_an_error_result() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    caller = HttpToolCaller(EgressPolicy(f"127.0.0.1:{port}"), timeout=10, response_limit=1000)
    result = await call(caller, f"http://127.0.0.1:{port}/ok")
    assert result == ToolResult(
        "call_1", f"Error: could not reach the tool's server at 127.0.0.1:{port} (ConnectError)", is_error=True
    )


async def test_a_server_that_does_not_answer_in_time_is_an_error_result(server: ToolServer) -> None:
    result = await call(caller_for(server, timeout=0.3), f"{server.base}/stall")
    assert result == ToolResult(
        "call_1", f"Error: the tool's server at 127.0.0.1:{server.port} did not answer within 0.3 seconds", True
    )
    await server.hung_up.wait()  # the request was abandoned, not left open


async def test_cancelling_a_call_aborts_the_request_at_once(server: ToolServer) -> None:
    caller = caller_for(server, timeout=60)
    task = asyncio.ensure_future(call(caller, f"{server.base}/stall"))
    await server.arrived.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    assert task in done and task.cancelled()
    await server.hung_up.wait()  # the connection was closed, while the server still had not answered
    assert not server.release.is_set()


async def test_header_values_never_appear_in_results_or_logs(
    server: ToolServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": SECRET}
    results = [
        await call(caller_for(server), f"{server.base}/status/500", headers),  # its body quotes the headers
        await call(caller_for(server), f"{server.base}/redirect", headers),
        await call(caller_for(server, limit=10), f"{server.base}/size/100", headers),
        # A value httpx refuses to send (a line break): its exception's text would quote it.
        await call(caller_for(server), f"{server.base}/ok", {"Authorization": SECRET + "\r\nX-Evil: 1"}),
        await call(caller_for(server), f"{server.base}/ok", {"Authorization": SECRET + "é"}),
    ]
    assert all(r.is_error for r in results), results
    assert results[3].content == "Error: the tool's header Authorization cannot be sent (not a valid HTTP header)"
    assert len(server.requests) == 3  # the last two were never sent
    assert server.requests[0].headers["authorization"] == SECRET  # it was sent, where it belongs
    secret_part = "s3cret-tool-key"
    assert not [r.content for r in results if secret_part in r.content]
    assert secret_part not in caplog.text
