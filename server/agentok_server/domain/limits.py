"""Length limits for what clients send as ids and tokens: one place, read by the server's checks and by
the Envoy configuration, so native gRPC and REST refuse the same lengths."""

from __future__ import annotations

from typing import Final

from .errors import invalid_field

# Every id the service mints (chat, flow, API key) is far shorter; a longer one can name nothing, so it is
# refused before any lookup.
MAX_ID_LENGTH: Final = 128
# Page tokens are the service's own base64 of a (time, id) or a sequence number: well under this.
MAX_PAGE_TOKEN_LENGTH: Final = 1024
# A client-chosen idempotency key (AIP-155).
MAX_REQUEST_ID_LENGTH: Final = 128


def check_id(field: str, value: str) -> str:
    """An id longer than any the service mints names nothing: refused before it reaches a query."""
    if len(value) > MAX_ID_LENGTH:
        raise invalid_field(field, f"must be at most {MAX_ID_LENGTH} characters")
    return value


def check_page_token(value: str) -> str:
    if len(value) > MAX_PAGE_TOKEN_LENGTH:
        raise invalid_field("page_token", f"must be at most {MAX_PAGE_TOKEN_LENGTH} characters")
    return value
# A flow's graph: Agentok Studio's real flows have a dozen nodes. Parsing runs on the event loop (at
# CreateFlow, at every SendMessage and at every takeover): a bound on its size bounds how long one tenant's
# flow can hold the loop (100,000 nodes took most of a second).
MAX_FLOW_NODES: Final = 500
MAX_FLOW_EDGES: Final = 2000
