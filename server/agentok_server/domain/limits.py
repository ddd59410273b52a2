"""Length limits for what clients send as ids and tokens: one place, read by the server's checks and by
the Envoy configuration, so native gRPC and REST refuse the same lengths."""

from __future__ import annotations

from typing import Final

# Every id the service mints (chat, flow, API key) is far shorter; a longer one can name nothing, so it is
# refused before any lookup.
MAX_ID_LENGTH: Final = 128
# Page tokens are the service's own base64 of a (time, id) or a sequence number: well under this.
MAX_PAGE_TOKEN_LENGTH: Final = 1024
# A client-chosen idempotency key (AIP-155).
MAX_REQUEST_ID_LENGTH: Final = 128
