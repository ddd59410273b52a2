"""A small HTTP server playing the API behind http tools (a search service), on a real loopback socket.

Every request's headers and JSON body are recorded; tests block until a request arrives instead of polling.
`stall()` holds the next answers until `release()`, or until the client hangs up (a cancelled or killed
server), which is recorded.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What the tool answers a request: status, content type, body.
Responder = Callable[[dict[str, Any]], tuple[int, str, bytes]]


def search_results(body: dict[str, Any]) -> tuple[int, str, bytes]:
    question = body.get("arguments", {}).get("question", "")
    return 200, "application/json", json.dumps({"results": [f"news about {question}"]}).encode()


@dataclass(frozen=True)
class ToolRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]


class FakeTools:
    def __init__(self, respond: Responder = search_results) -> None:
        self.respond = respond
        self.requests: list[ToolRequest] = []
        self.hangups = 0
        self._changed = threading.Condition()
        self._stalled = threading.Event()
        self._stalled.set()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.host_port = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str = "/search") -> str:
        return f"http://{self.host_port}{path}"

    def start(self) -> FakeTools:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stalled.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def stall(self) -> None:
        self._stalled.clear()

    def release(self) -> None:
        self._stalled.set()

    def for_call(self, call_id: str) -> list[ToolRequest]:
        with self._changed:
            return [r for r in self.requests if r.headers.get("idempotency-key") == call_id]

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[ToolRequest]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"the tool server got {len(self.requests)} request(s), expected {count}")
            return list(self.requests)

    def wait_for_hangup_after(self, before: int, timeout: float = 30.0) -> None:
        """Blocks until a client hung up on a held answer (more hang-ups than `before`)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.hangups > before, timeout):
                raise AssertionError("the server never hung up on the stalled tool call")

    def _record(self, request: ToolRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def _hung_up(self) -> None:
        with self._changed:
            self.hangups += 1
            self._changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTools

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.fake._record(ToolRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if not self._wait_while_stalled():
            self.fake._hung_up()
            self.close_connection = True
            return
        status, content_type, payload = self.fake.respond(body)
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _wait_while_stalled(self) -> bool:
        """False as soon as the client closes the connection while the answer is held."""
        while not self.fake._stalled.wait(0.05):
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except OSError:
                    return False
        return True
