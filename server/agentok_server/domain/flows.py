"""Flow rules: a flow is validated by the engine's parser before it is stored."""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any, Protocol

from ..engine.egress import EgressPolicy, EgressRefused
from . import paging
from .errors import flow_not_found, invalid_field
from .flow_rules import check_size, parse_runnable, resolve_tools
from .limits import check_id
from .model import Flow, ToolKind
from .ports import FlowStore, ToolLookup
from .text import check_json_text, check_text, is_clean_text


def public_graph(graph: dict[str, Any]) -> dict[str, Any]:
    """The graph as clients may read it back: a model API key in llm_config is never echoed."""
    llm = graph.get("llm_config")
    if isinstance(llm, dict) and llm.get("api_key"):
        graph = copy.deepcopy(graph)
        graph["llm_config"]["api_key"] = "<redacted>"
    return graph


class FlowsAndTools(FlowStore, ToolLookup, Protocol):
    pass


class FlowService:
    def __init__(self, repo: FlowsAndTools, *, egress: EgressPolicy, code_execution: bool = False) -> None:
        self._repo = repo
        self._egress = egress
        self._code_execution = code_execution

    async def create(self, owner: str, name: str, graph: dict[str, Any]) -> Flow:
        check_text("name", name)
        check_size(graph)
        check_finite_numbers("flow", graph)
        spec = parse_runnable(graph, code_execution=self._code_execution)
        check_json_text("flow", graph)
        tools = await resolve_tools(spec, owner, self._repo)
        if not self._code_execution:
            spec.warnings.extend(
                f"tool {tool.id!r} ({tool.name}) is a python tool and this server does not run code "
                "(AGENTOK_CODE_EXECUTION_ENABLED is off): its calls get an error result"
                for tool in tools.values()
                if tool.kind is ToolKind.PYTHON
            )
        if spec.llm.base_url is not None:
            # Refused here, before it is stored; a run checks it again at every call (DNS may change).
            try:
                await self._egress.check_url(spec.llm.base_url)
            except EgressRefused as refused:
                raise invalid_field("flow.llm_config.base_url", str(refused), reason="URL_NOT_ALLOWED") from None
        return await self._repo.insert_flow(owner=owner, name=name.strip(), graph=graph, warnings=spec.warnings)

    async def get(self, owner: str, flow_id: str) -> Flow:
        check_id("flow_id", flow_id)
        flow = await self._repo.get_flow(owner, flow_id) if is_clean_text(flow_id) else None
        if flow is None:
            raise flow_not_found(flow_id)
        return flow

    async def list_flows(self, owner: str, page_size: int, page_token: str) -> tuple[list[Flow], str]:
        return await paging.newest_first(
            lambda limit, after: self._repo.list_flows(owner, limit, after), page_size, page_token, _flow_bytes
        )

    async def delete(self, owner: str, flow_id: str) -> None:
        check_id("flow_id", flow_id)
        if not is_clean_text(flow_id) or not await self._repo.delete_flow(owner, flow_id):
            raise flow_not_found(flow_id)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_finite_numbers(field: str, value: Any) -> None:
    """A native gRPC Struct can carry NaN and ±Infinity, which JSON (REST, PostgreSQL's jsonb, the flow's
    readers) has no way to write: refused with the path to the first one, before anything reads the flow.
    Iterative, so a deep document cannot overflow the stack."""
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            raise invalid_field(path, f"{name} is not a JSON number")
        if isinstance(item, dict):
            # Reversed, so the first offending value in document order is the one named.
            for key, child in reversed(list(item.items())):
                step = f".{key}" if _PLAIN_KEY.fullmatch(str(key)) else f"[{json.dumps(key)}]"
                stack.append((path + step, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in reversed(list(enumerate(item))))


def _flow_bytes(flow: Flow) -> int:
    return 256 + len(flow.name.encode()) + len(json.dumps(flow.graph).encode())
