"""Reading a chat completion off the wire: OpenAI's server-sent chunks (`stream: true`) assembled into the one
message a non-streaming answer carries, or that answer itself when a provider does not stream. Either way the
body is read incrementally and refused past a size limit: a provider is a tenant's URL, and its answer must
not fill the server's memory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

# The most bytes one answer may take, streamed or not (far above any real reply: max_tokens is in the
# thousands, a token a few bytes, plus OpenAI's per-chunk JSON).
MAX_ANSWER_BYTES = 8 * 1024 * 1024

# Text the model appended (an empty string is never reported).
OnText = Callable[[str], None]


class AnswerTooLarge(Exception):
    pass


class Malformed(Exception):
    """The answer is not a chat completion (or a stream of its chunks)."""


@dataclass
class _Call:
    id: str = ""
    name: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Assembly:
    """The message a stream's chunks spell: content deltas in order, tool calls' pieces joined by index."""

    content: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    usage: Any = None
    saw_choice: bool = False

    def feed(self, chunk: Any, on_text: OnText | None) -> None:
        if not isinstance(chunk, dict):
            raise Malformed("a chunk is not a JSON object")
        if isinstance(chunk.get("usage"), dict):  # include_usage: the last chunk, with no choices
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise Malformed("a chunk has no choices")
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n is never asked for: only the first choice is the reply
            self.saw_choice = True
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise Malformed("a chunk's delta is not an object")
            text = delta.get("content")
            if isinstance(text, str) and text:
                self.content.append(text)
                if on_text is not None:
                    on_text(text)
            for piece in delta.get("tool_calls") or ():
                self._call_piece(piece)

    def _call_piece(self, piece: Any) -> None:
        if not isinstance(piece, dict) or not isinstance(piece.get("index", 0), int):
            raise Malformed("a tool call delta has no index")
        call = self.calls.setdefault(piece.get("index", 0), _Call())
        if isinstance(piece.get("id"), str) and piece["id"]:
            call.id = piece["id"]
        function = piece.get("function") or {}
        if isinstance(function.get("name"), str):
            call.name.append(function["name"])
        if isinstance(function.get("arguments"), str):
            call.arguments.append(function["arguments"])

    def answer(self) -> dict[str, Any]:
        """The non-streaming answer these chunks add up to (`choices[0].message`, `usage`)."""
        if not self.saw_choice:
            raise Malformed("the stream carried no reply")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "".join(call.name), "arguments": "".join(call.arguments)},
                }
                for _, call in sorted(self.calls.items())
            ]
        answer: dict[str, Any] = {"choices": [{"index": 0, "message": message}]}
        if self.usage is not None:
            answer["usage"] = self.usage
        return answer


async def _capped(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    read = 0
    async for chunk in chunks:
        read += len(chunk)
        if read > limit:
            raise AnswerTooLarge(f"the answer is larger than {limit} bytes")
        yield chunk


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body's lines (CRLF, LF or CR ended, as SSE allows), the last one even without an ending."""
    pending = bytearray()
    async for chunk in chunks:
        if b"\n" not in chunk and b"\r" not in chunk:
            pending += chunk  # a line still going on (up to the body's limit): no rescan of what came before
            continue
        *complete, rest = (bytes(pending) + chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        pending = bytearray(rest)
        for line in complete:
            yield line
    if pending:
        yield bytes(pending)


async def read_answer(
    chunks: AsyncIterator[bytes], *, streamed: bool, on_text: OnText | None, limit: int = MAX_ANSWER_BYTES
) -> dict[str, Any]:
    """The answer as one chat completion (`choices[0].message`, `usage`). `streamed`: the body is an event
    stream (the provider honoured `stream: true`); else it is the JSON answer, whose text is reported to
    `on_text` whole. Raises AnswerTooLarge past `limit` bytes, Malformed for anything but a completion."""
    body = _capped(chunks, limit)
    if not streamed:
        try:
            answer = json.loads(b"".join([c async for c in body]))
        except ValueError:
            raise Malformed("the answer is not JSON") from None
        text = _text_of(answer)
        if on_text is not None and text:
            on_text(text)
        return answer if isinstance(answer, dict) else {}
    assembly = _Assembly()
    data: list[bytes] = []  # one event's data lines
    async for line in _lines(body):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
            continue
        if line or not data:
            continue  # another field (event:, id:, a comment), or a blank line ending nothing
        payload, data = b"\n".join(data), []
        if payload.strip() == b"[DONE]":
            break
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise Malformed("a chunk is not JSON") from None
        assembly.feed(chunk, on_text)
    else:
        if data and data != [b"[DONE]"]:  # a last event without its blank line
            try:
                assembly.feed(json.loads(b"\n".join(data)), on_text)
            except ValueError:
                raise Malformed("a chunk is not JSON") from None
    return assembly.answer()


def _text_of(answer: Any) -> str:
    try:
        content = answer["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    return content if isinstance(content, str) else ""
