"""Stand-ins for the README's Tools walk-through, so its curl lines work with no cloud account:

    python3 tools/demo.py model --port 9100        a toy OpenAI-compatible model
    python3 tools/demo.py search-api --port 9200   a toy search API, for an http tool to call
    .venv/bin/python tools/demo.py answer-tools --api http://127.0.0.1:8080 --key $KEY CHAT_ID
                                                   a caller's backend answering a chat's client tool calls

The toy model: offered tools, it calls the first one, its first parameter set to the last user message; given
a tool's result, it answers with it and TERMINATE (Agentok's user proxies end on that word); otherwise it
echoes. Asked to stream, it writes its answer a word at a time; it reports usage counted in words.
Not part of the service; the tests use their own fakes (tests/support/fake_llm.py, fake_tools.py).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def model_reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages", [])
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return {"role": "assistant", "content": f"The tool answered: {last.get('content')} TERMINATE"}
    tools = body.get("tools") or []
    if tools:
        function = tools[0]["function"]
        properties = list(function.get("parameters", {}).get("properties", {}))
        asked = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
        arguments = {properties[0]: asked} if properties else {}
        call = {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function"}
        call["function"] = {"name": function["name"], "arguments": json.dumps(arguments)}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": f"You said: {last.get('content')}"}


def search_answer(body: dict[str, Any]) -> dict[str, Any]:
    question = next(iter(body.get("arguments", {}).values()), "")
    return {"results": [f"Sunny and 21 degrees, as asked: {question}"], "call_id": body.get("call_id")}


def usage(body: dict[str, Any], reply: dict[str, Any]) -> dict[str, int]:
    """Tokens counted as words: enough to show a chat's usage and a token budget at work."""
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
    completion = len(str(reply.get("content") or "").split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def stream_reply(handler: BaseHTTPRequestHandler, body: dict[str, Any], reply: dict[str, Any]) -> None:
    """OpenAI's server-sent chunks: the text a word at a time (a pause between, so a watcher sees it being
    written), tool calls in one chunk, then the usage when asked for and [DONE]."""
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.end_headers()

    def send(chunk: dict[str, Any]) -> None:
        handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        handler.wfile.flush()

    def delta(part: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": part, "finish_reason": finish}
        return {"id": "demo", "object": "chat.completion.chunk", "choices": [choice]}

    if reply.get("tool_calls"):
        calls = [{"index": i, **call} for i, call in enumerate(reply["tool_calls"])]
        send(delta({"role": "assistant", "tool_calls": calls}, "tool_calls"))
    else:
        words = str(reply.get("content") or "").split(" ")
        for i, word in enumerate(words):
            send(delta({"content": word if i == 0 else " " + word}))
            time.sleep(0.05)
        send(delta({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        send({"id": "demo", "object": "chat.completion.chunk", "choices": [], "usage": usage(body, reply)})
    handler.wfile.write(b"data: [DONE]\n\n")


def serve(port: int, answer: Any, wrap: bool) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            out = answer(body)
            if wrap and body.get("stream"):
                stream_reply(self, body, out)
                return
            if wrap:
                choices = [{"index": 0, "message": out}]
                out = {"id": "demo", "object": "chat.completion", "choices": choices, "usage": usage(body, out)}
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    print(f"listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def answer_tools(api: str, key: str, chat_id: str) -> None:
    """Watches the chat; each time it waits for client tool calls, answers each one; stops when the run ends."""
    import httpx  # the server's virtualenv has it

    http = httpx.Client(base_url=api, headers={"X-API-KEY": key}, timeout=None)
    seq = 0
    while True:
        with http.stream("GET", f"/chats/{chat_id}/watch", params={"after_seq": seq}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line.removeprefix("data:"))["event"]
                seq = max(seq, int(event.get("seq", 0)))
                change = event.get("status_changed", {})
                if change.get("status") in ("completed", "error", "ready") or "chat_deleted" in event:
                    print(f"run ended: {change.get('status', 'deleted')}")
                    return
                calls = change.get("pending_tool_calls") or []
                if calls:
                    results = [{"call_id": c["call_id"], "content": f"order shipped ({c['arguments']})"} for c in calls]
                    r = http.post(f"/chats/{chat_id}/input", json={"tool_results": results})
                    print(f"answered {[c['name'] for c in calls]}: HTTP {r.status_code}")
                    break  # read on from the answer's events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("model", "search-api"):
        sub.add_parser(name).add_argument("--port", type=int, required=True)
    backend = sub.add_parser("answer-tools")
    backend.add_argument("--api", default="http://127.0.0.1:8080")
    backend.add_argument("--key", required=True)
    backend.add_argument("chat_id")
    args = parser.parse_args()
    if args.command == "model":
        serve(args.port, model_reply, wrap=True)
    elif args.command == "search-api":
        serve(args.port, search_answer, wrap=False)
    else:
        answer_tools(args.api, args.key, args.chat_id)


if __name__ == "__main__":
    main()
