"""What Envoy writes to its log, minus credentials: at debug and trace level Envoy prints every request's
headers (`'x-api-key', 'atk_...'` in header dumps, `key=x-api-key value=...` from the HTTP/1 codec), and with
them the keys, bearer tokens and edge secrets this service exists to protect.

Line by line, two rules (both always on, whatever the log level):
  * after the name of a header that carries a credential, the rest of the line is dropped, whatever the
    format around it (a header dump, a codec trace, a proto's text form): a value can have any shape;
  * anything shaped like an API key (`atk_` + base64url) or a JWT (`eyJ...`: three base64url parts, dot-
    separated) is replaced wherever it appears, and so are literal secrets the caller names (the check secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The headers whose values are credentials or edge-only secrets. x-agentok-check-secret proves a key check
# comes from the edge; x-agentok-identity is the signed identity; x-jwt-payload is a verified token's payload.
SECRET_HEADERS = (
    "x-api-key",
    "authorization",
    "proxy-authorization",
    "x-agentok-identity",
    "x-jwt-payload",
    "x-agentok-check-secret",
)

# The rate limiter's descriptors (envoy_config.py) carry the credential as `api_key=...` / `bearer=...`.
DESCRIPTOR_KEYS = ("api_key", "bearer")

REDACTED = "[redacted]"

_B64URL = "A-Za-z0-9_-"
# The name, then what separates it from its value in the formats Envoy prints: `'x-api-key', '...'` (header
# dumps), `key=x-api-key value=...` (the HTTP/1 codec), `"x-api-key": "..."`, `x-api-key: ...`, and a proto's
# text form `key: "x-api-key" value: "..."`. The name alone (as in "authorization server") is left as it is.
_AFTER_SECRET_HEADER = re.compile(
    r"(?i)(?<![\w-])("
    + "|".join(re.escape(h) for h in (*SECRET_HEADERS, *DESCRIPTOR_KEYS))
    + r")(?![\w-])(['\"]?\s*[,:=]\s*['\"]?|['\"]?\s+value\s*[=:]\s*['\"]?)(.+)"
)
# A bearer credential of any shape (RFC 6750's token68), wherever it is printed.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]+=*")
_API_KEY = re.compile(rf"atk_[{_B64URL}]+")
# A JWT's header is a JSON object, so base64url of `{"` : `eyJ`; the signature part may be empty (alg none).
_JWT = re.compile(rf"eyJ[{_B64URL}]*\.[{_B64URL}]*\.[{_B64URL}]*")


class LogRedactor:
    """Redacts one line at a time (Envoy's log lines; a header dump is one header per line)."""

    def __init__(self, literals: Iterable[str | None] = ()) -> None:
        # Literal secrets (at least 8 characters: a shorter one would redact ordinary words).
        words = sorted({s for s in literals if s and len(s) >= 8}, key=len, reverse=True)
        self._literals = re.compile("|".join(re.escape(w) for w in words)) if words else None

    def line(self, text: str) -> str:
        text = _AFTER_SECRET_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        text = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
        text = _API_KEY.sub(f"atk_{REDACTED}", text)
        text = _JWT.sub(f"{REDACTED}-jwt", text)
        if self._literals is not None:
            text = self._literals.sub(REDACTED, text)
        return text

    def line_bytes(self, raw: bytes) -> bytes:
        """The same for bytes as read from Envoy's pipe (bytes that are not UTF-8 pass through unchanged)."""
        ending = b"\n" if raw.endswith(b"\n") else b""
        text = raw[: len(raw) - len(ending)].decode("utf-8", "surrogateescape")
        return self.line(text).encode("utf-8", "surrogateescape") + ending
