"""What Envoy's JSON transcoder lets through silently: REST body fields the API does not know.

The transcoder ignores a JSON field it cannot map (there is no option to refuse it), so `{"max_agent_turn": 5}`
would create a chat with the default budget and no word said. The key check (authz_http.py) already sees every
REST request before the transcoder does, so it asks this module, with the body ext_authz sends it
(`with_request_body`, REST routes only), which fields of that body name nothing.

The rule, exactly: a request is refused (UNKNOWN_FIELD) only when its body parses as a JSON object and a key in
it, at any depth, names no field of the message it maps to; everything else is the transcoder's to judge, so
nothing it accepts is refused here for any other reason (a body Python cannot parse, a value of the wrong type,
an enum name or number: the transcoder answers those, or passes them on). A key names a field by its proto
name (`from_flow`) or its JSON name (`fromFlow`), as the proto3 JSON mapping and the transcoder accept.
Messages with a JSON form of their own are not looked into (Struct, Value and ListValue hold any JSON: a flow;
Timestamp, Duration, FieldMask and the wrappers are strings or scalars; Any names its own type). Which
message a body maps to comes from the services' `google.api.http` rules, matched as the transcoder matches
them (a trailing slash ignored, a custom verb such as `:cancel` split off the last segment only when some
rule uses it); `body: "*"` maps the body to the request, `body: "tool"` to that field. Requests whose rule
takes no body, and paths no rule matches, are not checked (the transcoder ignores such a body, or refuses the
path).

Cost: only requests with a body get here (ext_authz does not wait for one a GET never sends), the
native gRPC routes never send theirs (ExtAuthzPerRoute), and a parse of the largest body allowed (4 MiB) runs
in a worker thread (`check_in_thread`), so a large flow never stalls the server's event loop.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from agentok.v1 import api_key_service_pb2, chat_service_pb2, flow_service_pb2, tool_service_pb2

# The services Envoy transcodes (envoy.yaml.tmpl's grpc_json_transcoder `services`).
TRANSCODED_SERVICES: tuple[ServiceDescriptor, ...] = (
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"],
    flow_service_pb2.DESCRIPTOR.services_by_name["FlowService"],
    tool_service_pb2.DESCRIPTOR.services_by_name["ToolService"],
    api_key_service_pb2.DESCRIPTOR.services_by_name["ApiKeyService"],
)
# Messages whose JSON is not an object of their fields: nothing inside them is a field name.
_OPAQUE = frozenset(
    {
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Any",
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.Empty",
        *(
            f"google.protobuf.{w}Value"
            for w in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
        ),
    }
)
# A body this large is parsed in a worker thread (json.loads holds the GIL, but the loop gets its turns).
THREAD_THRESHOLD = 256 * 1024
# At most this many unknown fields are named in one refusal.
MAX_NAMED = 10
_VERB = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Route:
    """One REST binding of an RPC: `method` and a path template (`/chats/{chat_id}:cancel`)."""

    method: str
    template: str
    rpc: MethodDescriptor
    # The `body` of the rule: "" (none), "*" (the whole request) or a field of the request.
    body: str
    segments: tuple[str | None, ...] = field(repr=False)  # literal, or None for a variable
    verb: str = ""

    @cached_property
    def literals(self) -> tuple[tuple[int, str], ...]:
        """(index, text) of the literal segments: what a path must have where."""
        return tuple((i, s) for i, s in enumerate(self.segments) if s is not None)

    @property
    def body_message(self) -> Descriptor | None:
        """The message the JSON body maps to, or None if this binding takes no body."""
        if not self.body:
            return None
        if self.body == "*":
            return self.rpc.input_type
        target: Descriptor = self.rpc.input_type.fields_by_name[self.body].message_type
        return target

    @property
    def path_regex(self) -> str:
        """An RE2 regex of the paths this route takes, as the transcoder matches them (a trailing slash too)."""
        parts = ("[^/]+" if s is None else re.escape(s) for s in self.segments)
        return "/" + "/".join(parts) + (f":{re.escape(self.verb)}" if self.verb else "") + "/?"

    @property
    def body_prefix(self) -> str:
        """Where the body sits in the request message: field paths of violations start with it."""
        return "" if self.body in ("", "*") else f"{self.body}."


def _parse_template(template: str) -> tuple[tuple[str | None, ...], str]:
    """(segments, verb) of a path template; only what this API uses (`{var}` and `{var=*}`, one `:verb`)."""
    if not template.startswith("/"):
        raise ValueError(f"a path template starts with '/': {template!r}")
    path, verb = template, ""
    last = template.rsplit("/", 1)[-1]
    if ":" in last and not last.endswith("}"):
        path, verb = template.rsplit(":", 1)
        if not _VERB.match(verb):
            raise ValueError(f"unsupported verb in {template!r}")
    segments: list[str | None] = []
    for part in path[1:].split("/"):
        if part.startswith("{") and part.endswith("}"):
            name, _, pattern = part[1:-1].partition("=")
            if pattern not in ("", "*"):
                raise ValueError(f"unsupported path variable {part!r} in {template!r} (body_check.py)")
            segments.append(None)
        elif "{" in part or "}" in part or "*" in part:
            raise ValueError(f"unsupported path segment {part!r} in {template!r} (body_check.py)")
        else:
            segments.append(part)
    return tuple(segments), verb


def _bindings(rule: http_pb2.HttpRule) -> Iterator[http_pb2.HttpRule]:
    yield rule
    for extra in rule.additional_bindings:
        yield from _bindings(extra)


class RestRoutes:
    """The REST routes of the transcoded services, from their `google.api.http` rules."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self._verbs = frozenset(r.verb for r in self.routes if r.verb)
        # The check asks for every REST request: candidates by method, segment count and verb, literal segments
        # before variables (as the transcoder prefers them).
        self._index: dict[tuple[str, int, str], list[Route]] = {}
        for r in sorted(self.routes, key=lambda r: [s is None for s in r.segments]):
            self._index.setdefault((r.method, len(r.segments), r.verb), []).append(r)

    @classmethod
    def of(cls, services: Iterable[ServiceDescriptor] = TRANSCODED_SERVICES) -> RestRoutes:
        routes = []
        for service in services:
            for rpc in service.methods:
                options = rpc.GetOptions()
                if not options.HasExtension(annotations_pb2.http):
                    continue
                for rule in _bindings(options.Extensions[annotations_pb2.http]):
                    kind = rule.WhichOneof("pattern")
                    if kind is None or kind == "custom":
                        continue
                    template = getattr(rule, kind)
                    segments, verb = _parse_template(template)
                    routes.append(Route(kind.upper(), template, rpc, rule.body, segments, verb))
        return cls(routes)

    def _split(self, path: str) -> tuple[list[str], str]:
        path = path.split("?", 1)[0]
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        verb = ""
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            head, candidate = path.rsplit(":", 1)
            if candidate in self._verbs:
                path, verb = head, candidate
        return path[1:].split("/"), verb

    @staticmethod
    def _fits(route: Route, parts: list[str]) -> bool:
        for i, literal in route.literals:
            if parts[i] != literal:
                return False
        return True

    def match(self, method: str, path: str) -> Route | None:
        """The route the transcoder would take for this request, or None."""
        parts, verb = self._split(path)
        candidates = self._index.get((method, len(parts), verb), ())
        return next((r for r in candidates if self._fits(r, parts)), None)

    def methods_for(self, path: str) -> list[str]:
        """Every HTTP method some route serves this path with (for a 405's Allow header)."""
        parts, verb = self._split(path)
        fitting = (r for r in self.routes if len(r.segments) == len(parts) and r.verb == verb)
        return sorted({r.method for r in fitting if self._fits(r, parts)})


def _names(message: Descriptor) -> dict[str, FieldDescriptor]:
    names = {f.name: f for f in message.fields}
    names.update({f.json_name: f for f in message.fields})
    return names


def _suggest(key: str, message: Descriptor) -> str:
    close = difflib.get_close_matches(key, [f.name for f in message.fields], n=1, cutoff=0.75)
    return close[0] if close else ""


def _walk(value: Any, message: Descriptor, path: str, found: list[tuple[str, str]]) -> None:
    """Appends (path, suggested path or "") for each unknown key of `value`, a JSON form of `message`."""
    if not isinstance(value, dict) or message.full_name in _OPAQUE:
        return
    names = _names(message)
    for key, item in value.items():
        if len(found) >= MAX_NAMED:
            return
        where = f"{path}{key}"
        f = names.get(key)
        if f is None:
            near = _suggest(key, message)
            found.append((where, f"{path}{near}" if near else ""))
        elif f.message_type is None or item is None:
            continue
        elif f.message_type.GetOptions().map_entry:
            values = f.message_type.fields_by_name["value"]
            if values.message_type is not None and isinstance(item, dict):
                for k, v in item.items():
                    _walk(v, values.message_type, f"{where}[{json.dumps(k)}].", found)
        elif f.is_repeated:
            if isinstance(item, list):
                for i, element in enumerate(item):
                    _walk(element, f.message_type, f"{where}[{i}].", found)
        else:
            _walk(item, f.message_type, f"{where}.", found)


def unknown_fields(route: Route, body: bytes) -> list[tuple[str, str]]:
    """(field path in the request, the closest known field's path or "") of each key in `body` that names no
    field, at most MAX_NAMED of them."""
    message = route.body_message
    if message is None or not body:
        return []
    found: list[tuple[str, str]] = []
    try:
        _walk(json.loads(body), message, route.body_prefix, found)
    except (ValueError, RecursionError):
        # Not JSON to Python, or nested beyond what the transcoder decodes: it says what is wrong.
        return []
    return found
