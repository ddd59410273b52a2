"""The model client against the fake OpenAI-compatible server on a real loopback socket: what it sends,
what it retries, and what an error that ends a run says (the provider's reason, never the key)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from agentok_server.domain.model import Usage
from agentok_server.engine.egress import EgressPolicy
from agentok_server.engine.llm import PROVIDER_MESSAGE_LIMIT, Endpoint, LlmClient, LlmError, _provider_says
from agentok_server.engine.tool_calls import ModelReply

from ..support.api import unique_model
from ..support.fake_llm import FakeLlmServer

KEY = "sk-unit-secret-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLlmServer]:
    s = FakeLlmServer().start()
    yield s
    s.stop()


@pytest.fixture()
async def client(server: FakeLlmServer) -> AsyncIterator[LlmClient]:
    # The fake is on loopback: allowed as the server's own model URL would be.
    c = LlmClient(timeout=10, attempts=3, egress=EgressPolicy(server_urls=[server.base_url]))
    yield c
    await c.aclose()


def _endpoint(server: FakeLlmServer, model: str, **kw: object) -> Endpoint:
    fields: dict = {
        "base_url": server.base_url,
        "model": model,
        "api_key": KEY,
        "temperature": None,
        "max_tokens": None,
    }
    return Endpoint(**{**fields, **kw})


async def test_sends_the_key_as_a_bearer_token_and_the_sampling_settings(
    server: FakeLlmServer, client: LlmClient
) -> None:
    model = unique_model()
    reply = await client.complete(
        _endpoint(server, model, temperature=0.2, max_tokens=64), [{"role": "user", "content": "hi"}]
    )
    assert reply.content == "hi ack"
    (request,) = server.fake.recorded_for(model)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["temperature"] == 0.2 and request.body["max_tokens"] == 64


async def test_a_transient_failure_is_retried(server: FakeLlmServer, client: LlmClient) -> None:
    model = unique_model("failonce-503")
    assert await client.complete(_endpoint(server, model), [{"role": "user", "content": "hi"}]) == ModelReply(
        "hi ack", usage=Usage(1, 2, 3)
    )
    assert len(server.fake.requests_for(model)) == 2


async def test_a_refusal_quotes_the_provider_but_never_the_key(server: FakeLlmServer, client: LlmClient) -> None:
    model = unique_model("fail-401")
    with pytest.raises(LlmError) as refused:
        await client.complete(_endpoint(server, model), [{"role": "user", "content": "hi"}])
    message = str(refused.value)
    assert server.base_url in message and "HTTP 401" in message
    assert "Incorrect API key provided: <redacted>" in message  # the fake quotes the key it got, as OpenAI does
    assert KEY not in message
    assert len(server.fake.requests_for(model)) == 1  # a 4xx is not retried


async def test_a_provider_that_refuses_stream_options_is_asked_once_more_without_them(
    server: FakeLlmServer, client: LlmClient
) -> None:
    model = unique_model("nostreamoptions")
    reply = await client.complete(_endpoint(server, model), [{"role": "user", "content": "hi"}])
    assert reply.content == "hi ack"
    first, second = server.fake.requests_for(model)
    assert first["stream_options"] == {"include_usage": True}
    assert second["stream"] is True and "stream_options" not in second
    assert reply.usage is None  # the usage chunk was the option's; this provider sent none unasked


async def test_another_400_is_not_asked_again(server: FakeLlmServer, client: LlmClient) -> None:
    model = unique_model("fail-400")
    with pytest.raises(LlmError, match="HTTP 400"):
        await client.complete(_endpoint(server, model), [{"role": "user", "content": "hi"}])
    assert len(server.fake.requests_for(model)) == 1


async def test_a_call_that_streams_past_its_deadline_ends_though_every_read_is_quick(server: FakeLlmServer) -> None:
    # Each chunk comes well within the per-read timeout (10 s); the whole call may take 0.5 s.
    client = LlmClient(timeout=10, attempts=3, deadline=0.5, egress=EgressPolicy(server_urls=[server.base_url]))
    model = unique_model("drip-0.2")
    try:
        with pytest.raises(LlmError, match=r"took longer than 0\.5 seconds"):
            await client.complete(_endpoint(server, model), [{"role": "user", "content": "one two three four five"}])
    finally:
        await client.aclose()
    assert len(server.fake.requests_for(model)) == 1  # a deadline is not retried


def test_a_provider_message_is_one_line_truncated_and_keyless() -> None:
    long = "line one\nline two " + "x" * 2000 + f" {KEY}"
    said = _provider_says(json.dumps({"error": {"message": long}}).encode(), KEY)
    assert said.startswith("line one line two x") and said.endswith("...")
    assert len(said) == PROVIDER_MESSAGE_LIMIT and KEY[:8] not in said
    # The key cut out wherever it is, not only in what survives the truncation.
    assert _provider_says(json.dumps({"error": {"message": f"{KEY}{KEY}"}}).encode(), KEY) == "<redacted><redacted>"
    # Bodies that are not OpenAI's shape give no reason rather than an error.
    assert _provider_says(b"<html>bad gateway</html>", KEY) == ""
    assert _provider_says(json.dumps({"error": "plain"}).encode(), KEY) == "plain"
