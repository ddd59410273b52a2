"""The one door from the domain to the engine's flow parser: whoever needs a runnable spec (creating a flow,
starting a run, resuming one) comes through here, so the parser's errors become domain errors in one place."""

from __future__ import annotations

from typing import Any

from ..engine.flow_spec import FlowSpec, parse_flow


def parse_runnable(graph: Any, *, code_execution: bool) -> FlowSpec:
    """The flow as the engine runs it; raises InvalidArgument (reason INVALID_FLOW) naming what is wrong."""
    return parse_flow(graph, code_execution=code_execution)
