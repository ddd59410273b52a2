"""A small OpenAI-compatible chat-completions server on a real loopback socket: the one boundary the
tests replace (a cloud model).

Behaviour is chosen per request by the `model` name, so tests sharing one server never interfere:
- a model registered with `script(model, replies)` answers with those replies in order, then with
  `<last message> ack`; any other model answers `<last message> ack`;
- `fail-<status>` answers that HTTP status; `malformed` answers a broken body;
- `slow-<seconds>` waits that long first; `slowonce-<seconds>` only on its first request.
A mode may carry any suffix after its number (`slow-20-af0f4f5d`, as `unique_model("slow-20")` makes), so
each test gets its own request log. Every request is recorded by model.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _mode_number(model: str, prefix: str) -> float | None:
    """The number right after `prefix` in `model` (`slow-20-af0f4f5d` -> 20.0), or None if it is another mode.

    Only the first number counts: unique_model() appends a random hex suffix that may itself start with digits.
    """
    if not model.startswith(prefix):
        return None
    match = re.match(r"\d+(?:\.\d+)?", model.removeprefix(prefix))
    if match is None:
        raise ValueError(f"fake model {model!r}: no number after {prefix!r}")
    return float(match.group())


class FakeLlm:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[str]] = {}
        self.requests: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def script(self, model: str, replies: list[str]) -> None:
        with self._lock:
            self._scripts[model] = deque(replies)

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests[model])

    def respond(self, body: dict[str, Any]) -> tuple[int, bytes]:
        model = str(body.get("model", ""))
        with self._lock:
            self.requests[model].append(body)
            script = self._scripts.get(model)
            scripted = script.popleft() if script else None
        if (seconds := _mode_number(model, "slow-")) is not None:
            time.sleep(seconds)  # runs on this server's own thread
        if (seconds := _mode_number(model, "slowonce-")) is not None and len(self.requests[model]) == 1:
            time.sleep(seconds)
        if (status := _mode_number(model, "fail-")) is not None:
            return int(status), b'{"error": {"message": "scripted failure"}}'
        if model == "malformed" or model.startswith("malformed-"):
            return 200, b'{"choices": "not a list"'
        last = body["messages"][-1]["content"] if body.get("messages") else ""
        content = scripted if scripted is not None else f"{last} ack"
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
        return 200, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLlm

    def log_message(self, *_: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.endswith("/chat/completions"):
            status, data = 404, b'{"error": "not found"}'
        else:
            status, data = self.fake.respond(body)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeLlmServer:
    def __init__(self) -> None:
        self.fake = FakeLlm()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> FakeLlmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
