"""A client for OpenAI-compatible chat-completions endpoints (the one boundary tests replace)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from ..domain.metrics import NO_OBSERVER, ModelCall, ModelCallOutcome, Observer
from ..domain.model import ToolCall, Usage
from .egress import EgressPolicy, EgressRefused, redacted
from .egress_client import EgressClient
from .flow_spec import LlmConfig
from .llm_stream import AnswerTooLarge, Malformed, read_answer
from .tool_calls import ModelReply

# Told each piece of text the model writes, with the attempt it belongs to (1 first): a retried call
# writes its reply again from the start.
OnDelta = Callable[[int, str], None]


class LlmError(Exception):
    """The model endpoint failed; the message names the endpoint and the reason, never the key."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None
    temperature: float | None
    max_tokens: int | None


def resolve_endpoint(flow: LlmConfig, *, base_url: str | None, model: str, api_key: str | None) -> Endpoint:
    """The flow's llm_config wins over the server's settings, field by field."""
    url = flow.base_url or base_url
    if not url:
        raise LlmError(
            "no model endpoint configured: set AGENTOK_LLM_BASE_URL on the server or llm_config.base_url in the flow"
        )
    return Endpoint(
        base_url=url.rstrip("/"),
        model=flow.model or model,
        api_key=flow.api_key or api_key,
        temperature=flow.temperature,
        max_tokens=flow.max_tokens,
    )


# How much of a provider's own error message an error may quote (a chat's error is shown to its user).
PROVIDER_MESSAGE_LIMIT = 300


class _Transient(Exception):
    pass


class _StreamOptionsRefused(Exception):
    """A 400 that names `stream_options`: a provider (or an older API version of one) that streams but does
    not know the usage option. Asked once more without it, rather than failing every run on that provider."""


# How much of an error answer is read for the provider's explanation.
ERROR_BODY_LIMIT = 64 * 1024


def _provider_says(body: bytes, api_key: str | None) -> str:
    """The provider's own explanation (OpenAI's `{"error": {"message": ...}}`), one line, truncated, and
    with the key cut out: providers quote the key they were sent ("Incorrect API key provided: sk-...")."""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        return ""
    if not isinstance(message, str):
        return ""
    if api_key:  # before truncating, so no piece of the key can survive the cut
        message = message.replace(api_key, "<redacted>")
    message = " ".join(message.split())
    if len(message) > PROVIDER_MESSAGE_LIMIT:
        message = message[: PROVIDER_MESSAGE_LIMIT - 3] + "..."
    return message


async def _http_failure(response: httpx.Response, api_key: str | None) -> str:
    body = b""
    if response.headers.get("content-encoding", "identity").strip().lower() == "identity":
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > ERROR_BODY_LIMIT:
                body = b""  # no explanation is that long: not one to quote
                break
    said = _provider_says(body, api_key)
    return f"HTTP {response.status_code}: {said}" if said else f"HTTP {response.status_code}"


def _for_attempt(on_delta: OnDelta | None, attempt: int) -> Callable[[str], None] | None:
    if on_delta is None:
        return None
    return lambda text: on_delta(attempt, text)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _Transient | httpx.TransportError)


class LlmClient:
    """Calls model endpoints through the egress policy: a flow's base_url is a tenant's URL, checked (and
    its name resolved again) on every attempt, since a stored flow may predate the policy or its name may
    resolve elsewhere by now."""

    def __init__(
        self,
        *,
        timeout: float,
        attempts: int,
        egress: EgressPolicy,
        observer: Observer = NO_OBSERVER,
        deadline: float = 600.0,
    ) -> None:
        self._http = EgressClient(egress, timeout=timeout)
        self._attempts = attempts
        self._deadline = deadline
        self._observer = observer

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None
    ) -> ModelReply:
        """The model's text reply (and its usage); `on_delta` hears the text as it streams in."""
        reply = await self._call(endpoint, messages, None, on_delta)
        return ModelReply(reply.content, usage=reply.usage)

    async def propose(
        self,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        on_delta: OnDelta | None = None,
    ) -> ModelReply:
        """A request that offers `tools` (as AutoGen sends it: no tool_choice, docs/autogen-semantics.md §8);
        the reply may call them. Endpoints that never send tool_calls work too: their reply is text."""
        return await self._call(endpoint, messages, tools, on_delta)

    async def _call(
        self,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        on_delta: OnDelta | None,
    ) -> ModelReply:
        """_request, reported to the observer (time, retries, outcome, tokens) however it ends."""
        report = _Report()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline):
                return await self._request(endpoint, messages, tools, report, on_delta)
        except TimeoutError:
            report.outcome = ModelCallOutcome.TIMEOUT
            raise LlmError(
                f"model endpoint {redacted(endpoint.base_url)} took longer than {self._deadline:g} seconds"
            ) from None
        except asyncio.CancelledError:  # the run was stopped mid call
            report.outcome = ModelCallOutcome.CANCELLED
            raise
        finally:
            self._observer.model_called(
                ModelCall(
                    seconds=time.perf_counter() - started,
                    outcome=report.outcome,
                    retries=max(0, report.attempts - 1),
                    prompt_tokens=report.usage.prompt_tokens,
                    completion_tokens=report.usage.completion_tokens,
                    model=endpoint.model,
                )
            )

    async def _request(
        self,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        report: _Report,
        on_delta: OnDelta | None,
    ) -> ModelReply:
        # Streamed (OpenAI's server-sent chunks, with usage in the last one), so watchers see the text as it
        # is written; a provider that ignores `stream` and answers JSON works the same.
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = tools
        if endpoint.temperature is not None:
            body["temperature"] = endpoint.temperature
        if endpoint.max_tokens is not None:
            body["max_tokens"] = endpoint.max_tokens
        # identity: the body is read raw against a byte limit, which a compressed body would slip past.
        headers = {"Accept-Encoding": "identity"}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        shown = redacted(endpoint.base_url)
        try:
            return await self._attempts_of(endpoint, body, headers, shown, tools, report, on_delta)
        except _StreamOptionsRefused:
            # Its usage then comes only if the provider sends it unasked; the reply is the same.
            body.pop("stream_options")
            return await self._attempts_of(endpoint, body, headers, shown, tools, report, on_delta)

    async def _attempts_of(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        headers: dict[str, str],
        shown: str,
        tools: list[dict[str, Any]] | None,
        report: _Report,
        on_delta: OnDelta | None,
    ) -> ModelReply:
        """The request made (and retried while transient) until it is answered; the reply read off it."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.1, max=2),
                retry=retry_if_exception(_is_transient),
                reraise=True,
            ):
                with attempt:
                    report.attempts += 1
                    on_text = _for_attempt(on_delta, report.attempts)
                    # The path is the server's: a tenant's URL can only come before it (no '?' or '#').
                    async with self._http.stream(
                        "POST", endpoint.base_url, suffix="/chat/completions", json=body, headers=headers
                    ) as response:
                        answer = await self._answer(
                            response, endpoint, shown, report, on_text, "stream_options" in body
                        )
        except EgressRefused as exc:
            report.outcome = ModelCallOutcome.NOT_ALLOWED
            raise LlmError(f"model endpoint {shown} is not allowed: {exc}") from None
        except _Transient as exc:
            report.outcome = ModelCallOutcome.FAILED
            raise LlmError(f"model endpoint {shown} failed: {exc}") from None
        except httpx.TimeoutException:
            report.outcome = ModelCallOutcome.TIMEOUT
            raise LlmError(f"model endpoint {shown} timed out") from None
        except httpx.TransportError as exc:
            report.outcome = ModelCallOutcome.UNREACHABLE
            raise LlmError(f"model endpoint {shown} unreachable: {type(exc).__name__}") from None
        try:
            message = answer["choices"][0]["message"]
            content = message.get("content")
            calls = _tool_calls(message.get("tool_calls")) if tools else ()
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            report.outcome = ModelCallOutcome.MALFORMED
            raise LlmError(f"model endpoint {shown} returned a malformed response") from None
        report.outcome = ModelCallOutcome.OK
        report.usage = _usage(answer)
        return ModelReply(
            content if isinstance(content, str) else "", calls, report.usage if report.usage.reported else None
        )

    async def _answer(
        self,
        response: httpx.Response,
        endpoint: Endpoint,
        shown: str,
        report: _Report,
        on_text: Callable[[str], None] | None,
        asked_stream_options: bool,
    ) -> Any:
        """One attempt's answer, read off the open response; raises _Transient for what is worth a retry."""
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(await _http_failure(response, endpoint.api_key))
        if response.is_redirect:  # never followed: a redirect could lead anywhere the policy refuses
            report.outcome = ModelCallOutcome.REFUSED
            raise LlmError(
                f"model endpoint {shown} redirected (HTTP {response.status_code}); redirects are not followed"
            )
        if response.status_code >= 400:
            report.outcome = ModelCallOutcome.REFUSED
            reason = await _http_failure(response, endpoint.api_key)
            if asked_stream_options and response.status_code == 400 and "stream_options" in reason:
                raise _StreamOptionsRefused
            raise LlmError(f"model endpoint {shown} refused the request: {reason}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        streamed = response.headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"
        try:
            if encoding != "identity":
                raise Malformed(f"compressed ({encoding}) although asked for identity")
            return await read_answer(response.aiter_raw(), streamed=streamed, on_text=on_text)
        except (Malformed, AnswerTooLarge) as exc:
            report.outcome = ModelCallOutcome.MALFORMED
            raise LlmError(f"model endpoint {shown} returned a malformed response: {exc}") from None


@dataclass
class _Report:
    """What one call found out for the observer, filled in as the call goes (an exception may end it)."""

    attempts: int = 0
    # Until the call says otherwise: it failed in a way nobody expected.
    outcome: ModelCallOutcome = ModelCallOutcome.ERROR
    usage: Usage = Usage()


def _usage(answer: Any) -> Usage:
    """OpenAI's `usage` (prompt, completion and total tokens); None for what a provider left out or sent as
    something else than a count. A reply is used whatever its `usage` says."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return Usage()

    def count(name: str) -> int | None:
        value = usage.get(name)
        # bool is an int in Python: `true` is no count.
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    return Usage(count("prompt_tokens"), count("completion_tokens"), count("total_tokens"))


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    """OpenAI's `tool_calls`, as AutoGen takes them: a name is normalized (anything but [a-zA-Z0-9_-] becomes
    `_`, at most 64 characters), arguments stay the text the model wrote. A call with no id gets one, so its
    result can name it. Raises TypeError/KeyError on a shape that is not OpenAI's."""
    if raw is None:
        return ()
    calls = []
    for call in raw:
        function = call["function"]
        arguments = function.get("arguments")
        calls.append(
            ToolCall(
                call_id=str(call.get("id") or f"call_{secrets.token_hex(12)}"),
                name=re.sub(r"[^a-zA-Z0-9_-]", "_", str(function["name"]))[:64],
                arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
            )
        )
    return tuple(calls)
