"""The one door from the domain to the engine's flow parser: whoever needs a runnable spec (creating a flow,
starting a run, resuming one) comes through here, so the parser's FlowError becomes the domain's
InvalidArgument (reason INVALID_FLOW) in one place; and the tools a flow binds are looked up here."""

from __future__ import annotations

from typing import Any

from ..engine.flow_spec import FlowError, FlowSpec, check_graph_size, parse_flow
from .errors import InvalidArgument
from .model import Tool
from .ports import ToolLookup


def parse_runnable(graph: Any, *, code_execution: bool) -> FlowSpec:
    """The flow as the engine runs it; raises InvalidArgument (reason INVALID_FLOW) naming what is wrong."""
    try:
        return parse_flow(graph, code_execution=code_execution)
    except FlowError as err:
        raise _invalid_flow(err) from None


def check_size(graph: Any) -> None:
    """Refuses a graph with too many nodes or edges before anything else walks it (InvalidArgument)."""
    try:
        check_graph_size(graph)
    except FlowError as err:
        raise _invalid_flow(err) from None


def _invalid_flow(err: FlowError) -> InvalidArgument:
    """The client's error for a flow the engine cannot run: the field it names and what is wrong there."""
    return InvalidArgument(
        f"invalid flow: {err.field}: {err.description}",
        reason="INVALID_FLOW",
        field_violations=[(err.field, err.description)],
    )


async def resolve_tools(spec: FlowSpec, owner: str, store: ToolLookup) -> dict[str, Tool]:
    """The owner's tools the flow binds, by id; raises InvalidArgument (reason TOOL_NOT_FOUND) naming the first
    edge whose tool the owner does not have (never created, or deleted since)."""
    found = await store.get_tools(owner, spec.tool_ids) if spec.tools else {}
    for binding in spec.tools:
        if binding.tool_id not in found:
            description = (
                f"edge {binding.edge_id!r} binds tool {binding.tool_id!r}, which does not exist: create it "
                f"(CreateTool with tool_id {binding.tool_id!r})"
            )
            raise InvalidArgument(
                f"invalid flow: {binding.path}: {description}",
                reason="TOOL_NOT_FOUND",
                field_violations=[(binding.path, description)],
                metadata={"tool_id": binding.tool_id},
            )
    return found
