"""A client for OpenAI-compatible chat-completions endpoints (the one boundary tests replace)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from ..domain.metrics import NO_OBSERVER, ModelCall, ModelCallOutcome, Observer
from ..domain.model import ToolCall
from .egress import EgressPolicy, EgressRefused, redacted
from .egress_client import EgressClient
from .flow_spec import LlmConfig
from .tool_calls import ModelReply


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


def _provider_says(response: httpx.Response, api_key: str | None) -> str:
    """The provider's own explanation (OpenAI's `{"error": {"message": ...}}`), one line, truncated, and
    with the key cut out: providers quote the key they were sent ("Incorrect API key provided: sk-...")."""
    try:
        error = response.json().get("error")
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


def _http_failure(response: httpx.Response, api_key: str | None) -> str:
    said = _provider_says(response, api_key)
    return f"HTTP {response.status_code}: {said}" if said else f"HTTP {response.status_code}"


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _Transient | httpx.TransportError)


class LlmClient:
    """Calls model endpoints through the egress policy: a flow's base_url is a tenant's URL, checked (and
    its name resolved again) on every attempt, since a stored flow may predate the policy or its name may
    resolve elsewhere by now."""

    def __init__(
        self, *, timeout: float, attempts: int, egress: EgressPolicy, observer: Observer = NO_OBSERVER
    ) -> None:
        self._http = EgressClient(egress, timeout=timeout)
        self._attempts = attempts
        self._observer = observer

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(self, endpoint: Endpoint, messages: list[dict[str, Any]]) -> str:
        return (await self._call(endpoint, messages, None)).content

    async def propose(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelReply:
        """A request that offers `tools` (as AutoGen sends it: no tool_choice, docs/autogen-semantics.md §8);
        the reply may call them. Endpoints that never send tool_calls work too: their reply is text."""
        return await self._call(endpoint, messages, tools)

    async def _call(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> ModelReply:
        """_request, reported to the observer (time, retries, outcome, tokens) however it ends."""
        report = _Report()
        started = time.perf_counter()
        try:
            return await self._request(endpoint, messages, tools, report)
        except asyncio.CancelledError:  # the run was stopped mid call
            report.outcome = ModelCallOutcome.CANCELLED
            raise
        finally:
            self._observer.model_called(
                ModelCall(
                    seconds=time.perf_counter() - started,
                    outcome=report.outcome,
                    retries=max(0, report.attempts - 1),
                    prompt_tokens=report.prompt_tokens,
                    completion_tokens=report.completion_tokens,
                )
            )

    async def _request(
        self,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        report: _Report,
    ) -> ModelReply:
        body: dict[str, Any] = {"model": endpoint.model, "messages": messages}
        if tools:
            body["tools"] = tools
        if endpoint.temperature is not None:
            body["temperature"] = endpoint.temperature
        if endpoint.max_tokens is not None:
            body["max_tokens"] = endpoint.max_tokens
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        shown = redacted(endpoint.base_url)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.1, max=2),
                retry=retry_if_exception(_is_transient),
                reraise=True,
            ):
                with attempt:
                    report.attempts += 1
                    # The path is the server's: a tenant's URL can only come before it (no '?' or '#').
                    response = await self._http.request(
                        "POST", endpoint.base_url, suffix="/chat/completions", json=body, headers=headers
                    )
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Transient(_http_failure(response, endpoint.api_key))
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
        if response.is_redirect:  # never followed: a redirect could lead anywhere the policy refuses
            report.outcome = ModelCallOutcome.REFUSED
            raise LlmError(
                f"model endpoint {shown} redirected (HTTP {response.status_code}); redirects are not followed"
            )
        if response.status_code >= 400:
            report.outcome = ModelCallOutcome.REFUSED
            reason = _http_failure(response, endpoint.api_key)
            raise LlmError(f"model endpoint {shown} refused the request: {reason}")
        try:
            answer = response.json()
            message = answer["choices"][0]["message"]
            content = message.get("content")
            calls = _tool_calls(message.get("tool_calls")) if tools else ()
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            report.outcome = ModelCallOutcome.MALFORMED
            raise LlmError(f"model endpoint {shown} returned a malformed response") from None
        report.outcome = ModelCallOutcome.OK
        report.prompt_tokens, report.completion_tokens = _usage(answer)
        return ModelReply(content if isinstance(content, str) else "", calls)


@dataclass
class _Report:
    """What one call found out for the observer, filled in as the call goes (an exception may end it)."""

    attempts: int = 0
    # Until the call says otherwise: it failed in a way nobody expected.
    outcome: ModelCallOutcome = ModelCallOutcome.ERROR
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _usage(answer: Any) -> tuple[int | None, int | None]:
    """OpenAI's `usage.prompt_tokens` and `usage.completion_tokens`; None for what a provider left out. A
    reply is used whatever its `usage` says: it only feeds metrics."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None, None

    def count(name: str) -> int | None:
        value = usage.get(name)
        # bool is an int in Python: `true` is no count.
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    return count("prompt_tokens"), count("completion_tokens")


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
