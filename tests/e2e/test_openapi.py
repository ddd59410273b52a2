"""The OpenAPI document (gen/openapi.json, made by `make gen` from the proto; tools/openapi_doc.py): valid
OpenAPI 3.1, covering every REST binding of the proto, served by Envoy without a key, and true to the live
service: schemathesis calls every operation against a real Envoy and server, and each answer must be no 5xx and
must conform to the document (status code, content type, schema)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ..support.fake_llm import FakeLlmServer
from ..support.stack import Stack, create_key

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "gen" / "openapi.json"
VERBS = ("get", "put", "post", "delete", "patch")
# positive_data_acceptance wants every schema-valid request accepted; no schema says which page tokens this
# service issued or which graphs are runnable flows, so those requests are rightly 400 (and documented so).
NOT_EXPRESSIBLE = [positive_data_acceptance]


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return loaded


def _proto_bindings() -> set[tuple[str, str]]:
    files = descriptor_pb2.FileDescriptorSet.FromString((ROOT / "gen" / "agentok_descriptor.pb").read_bytes()).file
    found = set()
    for f in files:
        for service in f.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                for r in (rule, *rule.additional_bindings):
                    verb = r.WhichOneof("pattern")
                    if verb in VERBS:
                        found.add((verb, getattr(r, verb)))
    return found


def test_the_document_is_valid_openapi_3_1_covering_every_binding() -> None:
    document = _document()
    validate(document)
    assert document["openapi"] == "3.1.0"
    operations = {(verb, path) for path, ops in document["paths"].items() for verb in ops}
    assert _proto_bindings() <= operations
    assert {("get", "/healthz"), ("get", "/openapi.json")} <= operations
    assert document["components"]["securitySchemes"] == {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
        "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    }
    watch = document["paths"]["/chats/{chat_id}/watch"]["get"]["responses"]["200"]["content"]
    assert list(watch) == ["text/event-stream"]
    error = document["paths"]["/v1/chats"]["post"]["responses"]["400"]
    assert error == {"$ref": "#/components/responses/E400"}


def test_envoy_serves_the_document_without_a_key(stack: Stack) -> None:
    r = httpx.get(f"{stack.rest_url}/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == _document()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[tuple[Stack, str]]:
    # No rate limit: the fuzzer calls as fast as it can, and 429 is not what it is here to find.
    env = {"AGENTOK_RATE_LIMIT_PER_SECOND": "0"}
    stack = Stack(tmp_path_factory.mktemp("fuzz"), llm_server.base_url, extra_env=env).start()
    _, key = create_key(stack.env, "fuzz", "fuzzer")
    try:
        yield stack, key
    finally:
        stack.stop()


def test_every_operation_answers_as_documented(fuzzed: tuple[Stack, str]) -> None:
    """Each operation gets a few generated requests (derandomized: the same ones every run); every failure of
    every operation is reported together. (schemathesis's pytest plugin does not run on this pytest, so the
    operations are driven through its strategies directly.)"""
    stack, key = fuzzed
    failures: list[str] = []
    results = list(schemathesis.openapi.from_dict(_document()).get_all_operations())
    # An operation the schema defines but schemathesis cannot read is a broken document, not a skipped case.
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), [r for r in results if not isinstance(r, Ok)]
    assert len(operations) >= len(_proto_bindings())
    for operation in operations:

        @given(operation.as_strategy())
        @settings(
            max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def calls(case: Any) -> None:
            case.call_and_validate(
                base_url=stack.rest_url, headers={"X-API-KEY": key}, timeout=30, excluded_checks=NOT_EXPRESSIBLE
            )

        try:
            calls()
        except (Exception, BaseExceptionGroup) as failure:  # schemathesis raises a group; all are reported below
            failures.append(f"{operation.method.upper()} {operation.path}: {str(failure)[:1500]}")
    assert not failures, f"{len(failures)} of {len(operations)} operations failed:\n\n" + "\n\n".join(failures)
