"""The engine's own error for a flow it cannot run: the domain turns it into its INVALID_FLOW error
(domain/flow_rules.py), so the engine knows nothing of the service's errors."""

from __future__ import annotations


class FlowError(Exception):
    """What is wrong with a flow: `field` is the path to it (e.g. "flow.nodes[2].data.name") and
    `description` says what is wrong there, in words a user of Agentok Studio can act on."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"invalid flow: {field}: {description}")
        self.field = field
        self.description = description
