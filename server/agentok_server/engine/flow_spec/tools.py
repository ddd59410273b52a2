"""The parser's tools pass: the tools each converse edge binds (`data.tools`, a list of tool ids), read as
Agentok's codegen binds them: the edge's target proposes (its model requests offer the tool), its source
executes (docs/autogen-semantics.md, "Tools"). Whether the ids name existing tools is the domain's check
(a flow is parsed without its owner's tools at hand)."""

from __future__ import annotations

import re

from .errors import FlowError
from .graph import Graph
from .spec import ToolBinding

# What a tool id may be, here and at CreateTool (domain/tools.py): Agentok's ids are numbers, ours any of these.
TOOL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def read_tool_bindings(graph: Graph) -> tuple[ToolBinding, ...]:
    bindings: list[ToolBinding] = []
    for edge in graph.converse:
        tools = edge.data.get("tools")
        if tools in (None, []):
            continue
        path = f"{edge.path}.data.tools"
        if not isinstance(tools, list):
            raise FlowError(path, f"edge {edge.id!r}: must be a list of tool ids")
        ids = [_tool_id(f"{path}[{j}]", edge.id, raw) for j, raw in enumerate(tools)]
        caller, executor = (end if end in graph.agents else None for end in (edge.target, edge.source))
        if caller is None or executor is None:
            # Agentok's codegen would bind the tool to a variable no agent holds: it binds nothing.
            other = edge.target if caller is None else edge.source
            graph.warnings.append(
                f"edge {edge.id!r} binds tools {ids} but joins {graph.label(other)}, which is not an agent: "
                "the tools are not offered to any model"
            )
        for j, tool_id in enumerate(ids):
            bindings.append(ToolBinding(tool_id, caller, executor, f"{path}[{j}]", str(edge.id)))
    return tuple(bindings)


# Larger integers do not survive a JSON number (a double): another id than the one written would be looked up.
_EXACT_INTEGERS = 2**53


def _tool_id(path: str, edge_id: object, raw: object) -> str:
    # JSON numbers (Agentok's ids; a google.protobuf.Struct holds every number as a double) and strings; a
    # bool is no id although Python counts it as an int.
    if isinstance(raw, float) and raw.is_integer() and abs(raw) < _EXACT_INTEGERS:
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise FlowError(path, f"edge {edge_id!r}: a tool id must be an integer or a string, not {raw!r}")
    tool_id = str(raw)
    if not TOOL_ID.fullmatch(tool_id):
        raise FlowError(path, f"edge {edge_id!r}: tool id {tool_id!r} is not 1-64 of A-Z a-z 0-9 _ -")
    return tool_id
