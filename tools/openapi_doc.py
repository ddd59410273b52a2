"""The OpenAPI 3.1 document of the REST API, generated from the proto descriptor (run by tools/gen.py).

What it reads: each agentok.v1 method's `google.api.http` rule and its additional bindings (path, verb, `body`,
`response_body`), the messages' fields with their `google.api.field_behavior` (REQUIRED, OUTPUT_ONLY,
INPUT_ONLY) and their leading comments (the descriptor is built with source info for this). What it writes
mirrors what Envoy's transcoder does with the same descriptor (envoy/envoy.yaml.tmpl): JSON with the proto
field names (`preserve_proto_field_names`), enums by name, 64-bit integers as strings (accepted as numbers
too), the well-known types in their JSON forms, fields not bound to the path or the body taken from the query
string, a server-streaming method as `text/event-stream` (one `data: {...}` frame per message).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

PACKAGE = "agentok.v1"
F = descriptor_pb2.FieldDescriptorProto

# The JSON forms of the well-known types the API uses (the proto3 JSON mapping).
WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$", "examples": ["30s"]},
    ".google.protobuf.Struct": {"type": "object"},
    ".google.protobuf.Value": {},
    ".google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    ".google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
}
SCALARS: dict[int, dict[str, Any]] = {
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_DOUBLE: {"type": "number"},
    F.TYPE_FLOAT: {"type": "number"},
    F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    # Printed as strings (JSON numbers lose precision past 2^53), accepted either way.
    F.TYPE_INT64: {"type": ["string", "integer"], "format": "int64", "pattern": "^-?[0-9]+$"},
    F.TYPE_UINT64: {"type": ["string", "integer"], "format": "int64", "pattern": "^[0-9]+$"},
}
# The HTTP statuses errors come with (transport/errors.py maps each gRPC code to one; Envoy's own refusals
# use the same shape), and what each means here.
ERRORS = {
    "400": "The request is invalid (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE); details say which field.",
    "401": "No credential, or one that is unknown, expired or revoked (UNAUTHENTICATED).",
    "403": "The credential may not do this (PERMISSION_DENIED).",
    "404": "No such resource for this owner, or no such path (NOT_FOUND).",
    "409": "The resource exists already, or a concurrent change won (ALREADY_EXISTS, ABORTED).",
    "413": "The request body is too large.",
    "429": "Too many requests or runs in progress (RESOURCE_EXHAUSTED); RetryInfo says when to retry.",
    "500": "An internal error (INTERNAL): never a client's mistake.",
    "503": "The service is unavailable (UNAVAILABLE): retry.",
    "504": "The call took longer than the route's timeout (DEADLINE_EXCEEDED).",
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error, REST and gRPC alike: a google.rpc.Status in JSON.",
    "properties": {
        "code": {"type": "integer", "description": "The gRPC status code."},
        "message": {"type": "string", "description": "What was wrong, for a person."},
        "details": {
            "type": "array",
            "description": "google.rpc.ErrorInfo (a stable `reason`), BadRequest (field violations), RetryInfo.",
            "items": {"type": "object", "properties": {"@type": {"type": "string"}}},
        },
    },
    "required": ["code", "message"],
}
_VERBS = ("get", "put", "post", "delete", "patch")
# Served by Envoy itself, without a credential (envoy/envoy.yaml.tmpl).
PUBLIC_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "Healthz",
            "summary": "Whether the edge (Envoy) is up; no credential needed",
            "security": [],
            "responses": {
                "200": {
                    "description": "Envoy answers",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"status": {"const": "SERVING"}},
                                "required": ["status"],
                            }
                        }
                    },
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "OpenApi",
            "summary": "This document; no credential needed",
            "security": [],
            "responses": {"200": {"description": "The OpenAPI 3.1 document", "content": {"application/json": {}}}},
        }
    },
}
_TEMPLATE_VAR = re.compile(r"\{([a-z_][a-z0-9_.]*)(?:=[^}]*)?\}")


@dataclass(frozen=True)
class Binding:
    verb: str
    path: str
    body: str
    response_body: str


def _bindings(rule: http_pb2.HttpRule) -> Iterator[Binding]:
    for r in (rule, *rule.additional_bindings):
        verb = r.WhichOneof("pattern")
        if verb in _VERBS:
            yield Binding(verb, getattr(r, verb), r.body, r.response_body)


class _Comments:
    """Leading comments by descriptor path (file, [kind, index, ...])."""

    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self._by_path: dict[tuple[str, tuple[int, ...]], str] = {}
        for f in files:
            for location in f.source_code_info.location:
                text = " ".join(location.leading_comments.split())
                if text:
                    self._by_path[(f.name, tuple(location.path))] = text

    def get(self, file: str, path: tuple[int, ...]) -> str:
        return self._by_path.get((file, path), "")


class OpenApi:
    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self._files = files
        self._comments = _Comments(files)
        # Fully qualified name (".agentok.v1.Chat") -> (file name, message, descriptor path).
        self._messages: dict[str, tuple[str, descriptor_pb2.DescriptorProto, tuple[int, ...]]] = {}
        self._enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        for f in files:
            prefix = f".{f.package}" if f.package else ""
            for i, message in enumerate(f.message_type):
                self._index(f.name, prefix, message, (4, i))
            for enum in f.enum_type:
                self._enums[f"{prefix}.{enum.name}"] = enum
        self._schemas: dict[str, dict[str, Any]] = {}

    def _index(self, file: str, prefix: str, message: descriptor_pb2.DescriptorProto, path: tuple[int, ...]) -> None:
        name = f"{prefix}.{message.name}"
        self._messages[name] = (file, message, path)
        for i, nested in enumerate(message.nested_type):
            self._index(file, name, nested, (*path, 3, i))
        for enum in message.enum_type:
            self._enums[f"{name}.{enum.name}"] = enum

    # -- schemas ------------------------------------------------------------------------------------------

    def _ref(self, type_name: str) -> dict[str, Any]:
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        key = type_name.lstrip(".").removeprefix(f"{PACKAGE}.")
        if key not in self._schemas:
            self._schemas[key] = {}  # reserved first: a message may refer to itself
            self._schemas[key] = self._message_schema(type_name)
        return {"$ref": f"#/components/schemas/{key}"}

    def _message_schema(self, type_name: str, *, omit: frozenset[str] = frozenset()) -> dict[str, Any]:
        file, message, path = self._messages[type_name]
        properties: dict[str, Any] = {}
        required: list[str] = []
        for i, field in enumerate(message.field):
            if field.name in omit:
                continue
            schema = self._field_schema(field)
            comment = self._comments.get(file, (*path, 2, i))
            if comment:
                schema = (
                    {**schema, "description": comment}
                    if "$ref" not in schema
                    else {"allOf": [schema], "description": comment}
                )
            behaviors = set(field.options.Extensions[field_behavior_pb2.field_behavior])
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                schema["readOnly"] = True
            if field_behavior_pb2.INPUT_ONLY in behaviors:
                schema["writeOnly"] = True
            if field_behavior_pb2.REQUIRED in behaviors:
                required.append(field.name)
            properties[field.name] = schema
        out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        comment = self._comments.get(file, path)
        if comment:
            out["description"] = comment
        if required:
            out["required"] = required
        return out

    def _field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        entry = self._map_entry(field)
        if entry is not None:
            return {"type": "object", "additionalProperties": self._field_schema(entry.field[1])}
        if field.type == F.TYPE_MESSAGE:
            one = self._ref(field.type_name)
        elif field.type == F.TYPE_ENUM:
            enum = self._enums[field.type_name]
            one = {"type": "string", "enum": [v.name for v in enum.value]}
        else:
            one = dict(SCALARS[field.type])
        if field.label == F.LABEL_REPEATED:
            return {"type": "array", "items": one}
        return one

    def _map_entry(self, field: descriptor_pb2.FieldDescriptorProto) -> descriptor_pb2.DescriptorProto | None:
        if field.type != F.TYPE_MESSAGE or field.label != F.LABEL_REPEATED:
            return None
        found = self._messages.get(field.type_name)
        if found is None or not found[1].options.map_entry:
            return None
        return found[1]

    def _field(self, type_name: str, name: str) -> descriptor_pb2.FieldDescriptorProto:
        return next(f for f in self._messages[type_name][1].field if f.name == name)

    # -- operations ---------------------------------------------------------------------------------------

    def _operation(
        self, service: str, method: descriptor_pb2.MethodDescriptorProto, binding: Binding, comment: str, index: int
    ) -> dict[str, Any]:
        request = method.input_type
        path_fields = set(_TEMPLATE_VAR.findall(binding.path))
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for name in sorted(path_fields, key=binding.path.index)
        ]
        op: dict[str, Any] = {
            "operationId": f"{service}_{method.name}" + (f"_{index}" if index else ""),
            "tags": [service],
            "summary": comment.split(". ")[0].rstrip("."),
            "description": comment,
            "parameters": parameters,
        }
        if binding.body == "*":
            body = self._message_schema(request, omit=frozenset(path_fields))
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        else:
            if binding.body:
                schema = self._field_schema(self._field(request, binding.body))
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
            parameters += self._query_parameters(request, path_fields | {binding.body})
        op["responses"] = {
            "200": self._response(method, binding),
            **{code: {"$ref": f"#/components/responses/E{code}"} for code in ERRORS},
        }
        return op

    def _query_parameters(self, request: str, bound: set[str]) -> list[dict[str, Any]]:
        out = []
        for field in self._messages[request][1].field:
            if field.name in bound or field.type == F.TYPE_MESSAGE:
                continue
            schema = self._field_schema(field)
            out.append({"name": field.name, "in": "query", "required": False, "schema": schema})
        return out

    def _response(self, method: descriptor_pb2.MethodDescriptorProto, binding: Binding) -> dict[str, Any]:
        if binding.response_body:
            schema = self._field_schema(self._field(method.output_type, binding.response_body))
        else:
            schema = self._ref(method.output_type)
        if method.server_streaming:
            return {
                "description": "A stream of server-sent events, each `data: <the message as JSON>`; "
                "`x-event-data` is the schema of that JSON (OpenAPI 3.1 has no keyword for it).",
                "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-data": schema}},
            }
        response: dict[str, Any] = {"description": "OK", "content": {"application/json": {"schema": schema}}}
        output = self._messages[method.output_type][1]
        if binding.response_body and any(f.name == "next_page_token" for f in output.field):
            # A bare array has nowhere to hold the next page's token: Envoy moves it to a header.
            response["headers"] = {
                "X-Next-Page-Token": {
                    "description": "The next page's page_token; absent on the last page.",
                    "schema": {"type": "string"},
                }
            }
        return response

    def document(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for f in self._files:
            if f.package != PACKAGE:
                continue
            for s, service in enumerate(f.service):
                for m, method in enumerate(service.method):
                    if not method.options.HasExtension(annotations_pb2.http):
                        continue
                    comment = self._comments.get(f.name, (6, s, 2, m))
                    rule = method.options.Extensions[annotations_pb2.http]
                    for index, binding in enumerate(_bindings(rule)):
                        op = self._operation(service.name, method, binding, comment, index)
                        paths.setdefault(binding.path, {})[binding.verb] = op
        responses = {
            f"E{code}": {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for code, text in ERRORS.items()
        }
        paths.update(PUBLIC_PATHS)
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "agentok-grpc",
                "version": "v1",
                "description": (
                    "Agentok Studio's chat API as a service: chats run multi-agent flows. Generated from "
                    "proto/agentok/v1 by `make gen`; the gRPC API is the same service. Every call needs an "
                    "API key (X-API-KEY) or a bearer token, except GET /healthz and GET /openapi.json."
                ),
            },
            "servers": [{"url": "http://127.0.0.1:8080", "description": "`make run`"}],
            "security": [{"ApiKey": []}, {"Bearer": []}],
            "paths": dict(sorted(paths.items())),
            "components": {
                "schemas": {"Error": ERROR_SCHEMA, **dict(sorted(self._schemas.items()))},
                "responses": responses,
                "securitySchemes": {
                    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                    "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                },
            },
        }


def openapi_json(descriptor_set: bytes) -> str:
    files = list(descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file)
    return json.dumps(OpenApi(files).document(), indent=2, ensure_ascii=False) + "\n"
