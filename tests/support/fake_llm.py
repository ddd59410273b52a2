"""A small OpenAI-compatible chat-completions server on a real loopback socket: the one boundary the
tests replace (a cloud model).

Behaviour is chosen per request by the `model` name, so tests sharing one server never interfere:
- a model registered with `script(model, replies)` answers with those replies in order, then with
  `<last message> ack`; any other model answers `<last message> ack`; a scripted reply made by
  `tool_calls(...)` is an assistant message that calls tools (OpenAI's `tool_calls`, content null);
- `fail-<status>` answers that HTTP status, with an OpenAI-style error body whose message quotes any bearer
  token it was sent (as OpenAI's "Incorrect API key provided: ..." does), so tests can check the server
  never repeats it; `failonce-<status>` does so on its first request only, then answers;
- `malformed` answers a broken body; `nostreamoptions-` refuses a request that carries `stream_options` (400),
  as servers that predate the option do;
- every answer carries OpenAI's `usage`, counted in words (`tokens()`): the prompt's contents, the reply's;
- `slow-<seconds>` waits that long first; `slowonce-<seconds>` only on its first request. A wait ends early
  when the client closes the connection (a cancelled or timed-out call), which is recorded as a hang-up;
- a request with `stream: true` is answered with OpenAI's server-sent chunks: the reply's content one word
  per chunk, a tool call's arguments in two pieces, then (with `stream_options.include_usage`) a usage
  chunk and `data: [DONE]`; any model starting `json-` answers plain JSON even then (a provider that does
  not stream); `drip-<seconds>` streams with that pause between chunks; a model `hold()` was called for
  sends its first word, then waits until `release()` (or the client hangs up) before the rest.
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
    # A streamed answer: its server-sent events, each written on its own; `body` is then unused.
    chunks: list[bytes] | None = None
    pause: float = 0.0  # between chunks
    gate: threading.Event | None = None  # waited for after the first word


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def stream_chunks(model: str, reply: dict[str, Any], finish: str, usage: dict[str, int] | None) -> list[bytes]:
    """`reply` (an assistant message) as OpenAI streams it: role first, content word by word, each tool call
    as a head (id, name, first half of its arguments) and a tail, the finish reason, the usage, [DONE]."""
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

    out = [chunk({"role": "assistant", "content": ""})]
    content = reply.get("content") or ""
    out += [chunk({"content": piece}) for piece in re.findall(r"\S+\s*|\s+", content)]
    for index, call in enumerate(reply.get("tool_calls") or ()):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        head = {"index": index, "id": call["id"], "type": "function"}
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {**head, "function": {"name": call["function"]["name"], "arguments": arguments[:half]}}
                    ]
                }
            )
        )
        out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}))
    out.append(chunk({}, finish))
    if usage is not None:
        out.append(_sse({**base, "choices": [], "usage": usage}))
    out.append(_sse("[DONE]"))
    return out


class FakeLlm:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Notified on every request and hang-up, so tests wait for them without polling.
        self._changed = threading.Condition(self._lock)
        self._scripts: dict[str, deque[str | dict[str, Any]]] = {}
        self._recorded: dict[str, list[Recorded]] = defaultdict(list)
        self._hangups: dict[str, int] = defaultdict(int)
        # model -> (requests answered before the gate applies, the gate)
        self._gates: dict[str, tuple[int, threading.Event]] = {}
        # model -> when (time.time()) each streamed answer's first word was written (the bench reads it).
        self._first_words: dict[str, list[float]] = defaultdict(list)

    def first_words(self, model: str) -> list[float]:
        with self._lock:
            return list(self._first_words[model])

    def wrote_first_word(self, model: str, at: float) -> None:
        with self._lock:
            self._first_words[model].append(at)

    def hold(self, model: str, after: int = 0) -> None:
        """`model`'s streamed answers (those after its first `after` requests) stop after their first word
        until `release(model)`."""
        with self._lock:
            self._gates[model] = (after, threading.Event())

    def release(self, model: str) -> None:
        with self._lock:
            held = self._gates.pop(model, None)
        if held is not None:
            held[1].set()

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
        if model.startswith("nostreamoptions-") and "stream_options" in body:
            # As OpenAI-compatible servers that predate the option refuse it.
            error = {"error": {"message": "Unrecognized request argument supplied: stream_options", "type": "test"}}
            return Answer(400, json.dumps(error).encode(), delay)
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
        usage = {
            "prompt_tokens": (prompt := sum(tokens(m.get("content")) for m in body.get("messages", []))),
            "completion_tokens": (completion := tokens(reply.get("content"))),
            "total_tokens": prompt + completion,
        }
        if body.get("stream") and not model.startswith("json-"):
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            with self._lock:
                after, gate = self._gates.get(model, (0, None))
            gate = gate if count > after else None
            chunks = stream_chunks(model, reply, finish, usage if with_usage else None)
            return Answer(200, b"", delay, chunks, _mode_number(model, "drip-") or 0.0, gate)
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": reply, "finish_reason": finish}],
            "usage": usage,
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
        if answer.chunks is not None:
            self._stream(answer, str(body.get("model", "")))
            return
        self.send_response(answer.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _stream(self, answer: Answer, model: str) -> None:
        """Server-sent events, each flushed on its own (no content-length: the connection ends the body)."""
        assert answer.chunks is not None
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for number, chunk in enumerate(answer.chunks):
                if number == 2 and answer.gate is not None:  # after the role chunk and the first word
                    while not answer.gate.is_set():
                        if not self._client_stays(0.05):
                            self.fake.hung_up(model)
                            return
                elif number and answer.pause and not self._client_stays(answer.pause):
                    self.fake.hung_up(model)
                    return
                self.wfile.write(chunk)
                self.wfile.flush()
                if number == 1:
                    self.fake.wrote_first_word(model, time.time())
        except (BrokenPipeError, ConnectionResetError):
            self.fake.hung_up(model)

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
