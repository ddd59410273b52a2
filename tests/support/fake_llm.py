"""A small OpenAI-compatible chat-completions server on a real loopback socket: the one boundary the
tests replace (a cloud model).

Behaviour is chosen per request by the `model` name, so tests sharing one server never interfere:
- a model registered with `script(model, replies)` answers with those replies in order, then with
  `<last message> ack`; any other model answers `<last message> ack`; a scripted reply made by
  `tool_calls(...)` is an assistant message that calls tools (OpenAI's `tool_calls`, content null);
- `fail-<status>` answers that HTTP status, with an OpenAI-style error body whose message quotes any bearer
  token it was sent (as OpenAI's "Incorrect API key provided: ..." does), so tests can check the server
  never repeats it; `failonce-<status>` does so on its first request only, then answers;
- `malformed` answers a broken body;
- every answer carries OpenAI's `usage`, counted in words (`tokens()`): the prompt's contents, the reply's;
- `slow-<seconds>` waits that long first; `slowonce-<seconds>` only on its first request. A wait ends early
  when the client closes the connection (a cancelled or timed-out call), which is recorded as a hang-up.
A mode may carry any suffix after its number (`slow-20-af0f4f5d`, as `unique_model("slow-20")` makes), so
each test gets its own request log. Every request's headers and JSON body are recorded by model, and tests
can block until a request (or a hang-up) has arrived instead of polling.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
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


def tokens(text: object) -> int:
    """What the fake reports as a text's tokens in `usage`: its words."""
    return len(text.split()) if isinstance(text, str) else 0


def tool_calls(*calls: tuple[str, str, dict[str, Any] | str]) -> dict[str, Any]:
    """A scripted reply calling tools: (call id, function name, arguments as an object or as raw text)."""
    return {
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for call_id, name, args in calls
        ],
    }


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it (header names lower-cased)."""

    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    delay: float = 0.0  # seconds to wait before answering (ends early if the client hangs up)


class FakeLlm:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Notified on every request and hang-up, so tests wait for them without polling.
        self._changed = threading.Condition(self._lock)
        self._scripts: dict[str, deque[str | dict[str, Any]]] = {}
        self._recorded: dict[str, list[Recorded]] = defaultdict(list)
        self._hangups: dict[str, int] = defaultdict(int)

    def script(self, model: str, replies: list[str | dict[str, Any]]) -> None:
        with self._lock:
            self._scripts[model] = deque(replies)

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        """The JSON bodies `model` was sent, in order."""
        with self._lock:
            return [r.body for r in self._recorded[model]]

    def recorded_for(self, model: str) -> list[Recorded]:
        """The requests `model` was sent, headers and bodies, in order."""
        with self._lock:
            return list(self._recorded[model])

    def hangups_for(self, model: str) -> int:
        """How many of `model`'s delayed requests the client abandoned before the answer."""
        with self._lock:
            return self._hangups[model]

    def wait_for_requests(self, model: str, count: int, timeout: float = 30.0) -> list[Recorded]:
        """Blocks until `model` has received `count` requests; fails the test if it doesn't within `timeout`."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._recorded[model]) >= count, timeout):
                raise AssertionError(f"{model}: {len(self._recorded[model])} request(s), expected {count}")
            return list(self._recorded[model])

    def wait_for_hangup(self, model: str, timeout: float = 30.0) -> None:
        """Blocks until a client abandoned one of `model`'s delayed requests."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._hangups[model] > 0, timeout):
                raise AssertionError(f"{model}: the client never closed the connection of a pending request")

    def hung_up(self, model: str) -> None:
        with self._changed:
            self._hangups[model] += 1
            self._changed.notify_all()

    def respond(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        model = str(body.get("model", ""))
        with self._changed:
            self._recorded[model].append(Recorded(headers, body))
            count = len(self._recorded[model])
            self._changed.notify_all()
        delay = _mode_number(model, "slow-") or 0.0
        if (once := _mode_number(model, "slowonce-")) is not None and count == 1:
            delay = once
        status = _mode_number(model, "fail-")
        if (once := _mode_number(model, "failonce-")) is not None and count == 1:
            status = once
        if status is not None:
            token = headers.get("authorization", "").removeprefix("Bearer ")
            message = f"scripted failure; Incorrect API key provided: {token}." if token else "scripted failure"
            error = {"error": {"message": message, "type": "test"}}
            return Answer(int(status), json.dumps(error).encode(), delay)
        if model == "malformed" or model.startswith("malformed-"):
            return Answer(200, b'{"choices": "not a list"', delay)
        with self._lock:  # a failed request uses up no scripted reply: the retry gets it
            script = self._scripts.get(model)
            scripted = script.popleft() if script else None
        last = body["messages"][-1]["content"] if body.get("messages") else ""
        reply: dict[str, Any]
        if isinstance(scripted, dict):
            reply, finish = {"role": "assistant", **scripted}, "tool_calls"
        else:
            content = scripted if scripted is not None else f"{last} ack"
            reply, finish = {"role": "assistant", "content": content}, "stop"
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": reply, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": (prompt := sum(tokens(m.get("content")) for m in body.get("messages", []))),
                "completion_tokens": (completion := tokens(reply.get("content"))),
                "total_tokens": prompt + completion,
            },
        }
        return Answer(200, json.dumps(payload).encode(), delay)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLlm

    def log_message(self, *_: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.endswith("/chat/completions"):
            answer = Answer(404, b'{"error": "not found"}')
        else:
            answer = self.fake.respond(body, {k.lower(): v for k, v in self.headers.items()})
        if answer.delay and not self._client_stays(answer.delay):
            self.fake.hung_up(str(body.get("model", "")))
            self.close_connection = True
            return
        self.send_response(answer.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _client_stays(self, seconds: float) -> bool:
        """Waits `seconds` (this server's own thread); False as soon as the client closes the connection.

        The client sends nothing more while it waits for the answer, so the socket turns readable only when
        it is closed (recv returns b"")."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], remaining)
            if not readable:
                continue
            try:
                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                    return False
            except OSError:  # reset by the peer
                return False
            time.sleep(remaining)  # unexpected bytes (a pipelined request): just wait out the delay
            break
        return True


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
