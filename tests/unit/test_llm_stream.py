"""The model client streams (OpenAI's server-sent chunks) against the fake on a real loopback socket: the
text arrives piece by piece, in order, and adds up to the same reply (tool calls and usage included) as a
provider that answers plain JSON; a body past the size limit is refused, not buffered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from agentok_server.domain.model import ToolCall, Usage
from agentok_server.engine.egress import EgressPolicy, EgressRefused
from agentok_server.engine.egress_client import EgressClient
from agentok_server.engine.llm import Endpoint, LlmClient, LlmError
from agentok_server.engine.llm_stream import AnswerTooLarge, Malformed, read_answer

from ..support.api import unique_model
from ..support.fake_llm import FakeLlmServer, tokens, tool_calls
from .test_egress import FakeDns, policy

TEXT = "the quick brown fox jumps over the lazy dog"
ASKED = [{"role": "user", "content": "tell me"}]
TOOL = {"type": "function", "function": {"name": "search", "description": "", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLlmServer]:
    s = FakeLlmServer().start()
    yield s
    s.stop()


@pytest.fixture()
async def client(server: FakeLlmServer) -> AsyncIterator[LlmClient]:
    c = LlmClient(timeout=10, attempts=2, egress=EgressPolicy(server_urls=[server.base_url]))
    yield c
    await c.aclose()


def _endpoint(server: FakeLlmServer, model: str) -> Endpoint:
    return Endpoint(server.base_url, model, "sk-x", None, None)


async def test_a_streamed_reply_arrives_in_pieces_that_add_up_to_it(server: FakeLlmServer, client: LlmClient) -> None:
    model = unique_model()
    server.fake.script(model, [TEXT])
    pieces: list[tuple[int, str]] = []
    reply = await client.complete(_endpoint(server, model), ASKED, on_delta=lambda n, t: pieces.append((n, t)))
    assert reply.content == TEXT
    assert len(pieces) == len(TEXT.split()) and {n for n, _ in pieces} == {1}
    assert "".join(t for _, t in pieces) == TEXT
    assert reply.usage == Usage(2, 9, 11)  # the fake counts words; usage came in the stream's last chunk
    (request,) = server.fake.requests_for(model)
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}


async def test_streamed_tool_calls_are_assembled_by_index(server: FakeLlmServer, client: LlmClient) -> None:
    model = unique_model()
    server.fake.script(model, [tool_calls(("c1", "search", {"q": "fox"}), ("c2", "search", '{"q": "dog"}'))])
    reply = await client.propose(_endpoint(server, model), ASKED, [TOOL])
    assert reply.content == ""
    assert reply.tool_calls == (
        ToolCall("c1", "search", json.dumps({"q": "fox"})),
        ToolCall("c2", "search", '{"q": "dog"}'),
    )


async def test_a_provider_that_does_not_stream_still_works(server: FakeLlmServer, client: LlmClient) -> None:
    model = unique_model("json-")
    server.fake.script(model, [TEXT])
    pieces: list[str] = []
    reply = await client.complete(_endpoint(server, model), ASKED, on_delta=lambda _n, t: pieces.append(t))
    assert reply.content == TEXT and pieces == [TEXT]  # the whole text, as one piece
    assert reply.usage == Usage(tokens("tell me"), tokens(TEXT), 11)


async def test_a_retried_call_streams_again_as_its_next_attempt(server: FakeLlmServer, client: LlmClient) -> None:
    model = unique_model("failonce-503")
    pieces: list[tuple[int, str]] = []
    reply = await client.complete(_endpoint(server, model), ASKED, on_delta=lambda n, t: pieces.append((n, t)))
    assert reply.content == "tell me ack" and {n for n, _ in pieces} == {2}


async def _body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_an_answer_past_the_limit_is_refused_streamed_or_not() -> None:
    big = b"data: " + json.dumps({"choices": [{"delta": {"content": "x" * 100}}]}).encode() + b"\n\n"
    with pytest.raises(AnswerTooLarge):
        await read_answer(_body(*[big] * 20), streamed=True, on_text=None, limit=1000)
    with pytest.raises(AnswerTooLarge):
        await read_answer(_body(b"{" + b" " * 2000 + b"}"), streamed=False, on_text=None, limit=1000)


async def test_events_split_anywhere_and_crlf_lines_are_read() -> None:
    events = b"".join(
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": word}}]}).encode() + b"\r\n\r\n"
        for word in ("a ", "b ", "c")
    )
    seen: list[str] = []
    pieces = [events[i : i + 7] for i in range(0, len(events), 7)]
    answer = await read_answer(_body(*pieces, b"data: [DONE]\r\n\r\n"), streamed=True, on_text=seen.append)
    assert answer["choices"][0]["message"]["content"] == "a b c" and seen == ["a ", "b ", "c"]


async def test_a_stream_that_is_not_chunks_is_malformed(server: FakeLlmServer) -> None:
    with pytest.raises(Malformed):
        await read_answer(_body(b"data: {not json}\n\n"), streamed=True, on_text=None)
    with pytest.raises(Malformed):
        await read_answer(_body(b"data: [DONE]\n\n"), streamed=True, on_text=None)


async def test_the_egress_policy_still_refuses_internal_addresses(client: LlmClient) -> None:
    with pytest.raises(LlmError, match="is not allowed"):
        await client.complete(Endpoint("http://169.254.169.254/v1", "m", None, None, None), ASKED)


async def test_a_stream_is_checked_and_pinned_as_a_request_is(server: FakeLlmServer) -> None:
    """EgressClient.stream: the name resolved by the policy at call time, refused when it now resolves to an
    internal address (nothing sent), connected to the checked address with the name's Host header when not."""
    dns = FakeDns({"model.test": ["127.0.0.1"], "moved.test": ["127.0.0.1"]})
    streaming = EgressClient(policy(f"model.test:{server.port}", dns=dns), timeout=10)
    model = unique_model()
    body = {"model": model, "messages": ASKED, "stream": True}
    try:
        with pytest.raises(EgressRefused, match="loopback"):
            async with streaming.stream(
                "POST", f"http://moved.test:{server.port}/v1", suffix="/chat/completions", json=body
            ):
                pass
        assert server.fake.recorded_for(model) == []
        async with streaming.stream(
            "POST", f"http://model.test:{server.port}/v1", suffix="/chat/completions", json=body
        ) as response:
            assert response.headers["content-type"] == "text/event-stream"
            answer = await read_answer(response.aiter_raw(), streamed=True, on_text=None)
        assert answer["choices"][0]["message"]["content"] == "tell me ack"
        (request,) = server.fake.recorded_for(model)
        assert request.headers["host"] == f"model.test:{server.port}" and dns.asked == ["moved.test", "model.test"]
    finally:
        await streaming.aclose()
