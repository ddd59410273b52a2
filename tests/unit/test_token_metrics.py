"""Tokens by model on the metrics endpoint's registry: counted per kind and model, with the model label bounded
(a flow names any model it likes): the first MAX_MODEL_LABELS names get their own series, the rest "other"."""

from __future__ import annotations

from agentok_server.domain.metrics import ModelCall, ModelCallOutcome
from agentok_server.transport.metrics import MAX_MODEL_LABELS, OTHER_MODEL, Metrics


def _call(model: str, prompt: int | None, completion: int | None) -> ModelCall:
    return ModelCall(0.1, ModelCallOutcome.OK, 0, prompt_tokens=prompt, completion_tokens=completion, model=model)


def _tokens(metrics: Metrics, kind: str, model: str) -> float | None:
    return metrics.registry.get_sample_value("agentok_model_tokens_by_model_total", {"kind": kind, "model": model})


def test_tokens_are_counted_by_model_and_kind() -> None:
    metrics = Metrics()
    metrics.model_called(_call("gpt-4o-mini", 10, 3))
    metrics.model_called(_call("gpt-4o-mini", 5, None))  # a provider that left completion out
    metrics.model_called(_call("llama", 1, 1))
    assert _tokens(metrics, "prompt", "gpt-4o-mini") == 15 and _tokens(metrics, "completion", "gpt-4o-mini") == 3
    assert _tokens(metrics, "prompt", "llama") == 1
    assert metrics.registry.get_sample_value("agentok_model_tokens_total", {"kind": "prompt"}) == 16


def test_model_names_past_the_bound_are_folded_into_other() -> None:
    metrics = Metrics()
    for n in range(MAX_MODEL_LABELS + 15):
        metrics.model_called(_call(f"tenant-model-{n}", 2, 1))
    models = {
        s.labels["model"]
        for family in metrics.registry.collect()
        if family.name == "agentok_model_tokens_by_model"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert len(models) == MAX_MODEL_LABELS + 1 and OTHER_MODEL in models
    assert _tokens(metrics, "prompt", OTHER_MODEL) == 2 * 15
    metrics.model_called(_call("tenant-model-0", 2, 1))  # a name already labelled keeps its label
    assert _tokens(metrics, "prompt", "tenant-model-0") == 4
    metrics.model_called(_call("x" * 500, 1, 1))  # past the bound, however long
    assert _tokens(metrics, "prompt", OTHER_MODEL) == 31
