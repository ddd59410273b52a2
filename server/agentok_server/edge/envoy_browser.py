"""What browsers need of the edge, rendered into Envoy's config by envoy_config.py: gRPC-web (the filter sits in
envoy.yaml.tmpl), CORS for origins the operator lists, and the web console's files at /console/.

gRPC-web: the grpc_web filter runs first, so everything after it (the key check, bearer tokens, the rate limit,
the local replies) sees a native gRPC call and treats it exactly as one; on the way back it turns the
trailers into gRPC-web's trailer frame (or keeps a trailers-only reply's grpc-status in the headers).

CORS: none by default. The console is served by this same listener, so its calls are same-origin and need no
grant; an operator who serves another page that calls the API lists that page's origin
(AGENTOK_CORS_ALLOWED_ORIGINS). A disallowed origin's preflight gets no grant and goes on to the key check
(401): the browser then refuses to send the call.

The console: Vite's build (console/dist) is a handful of small files, each a direct_response route reading
the file when Envoy loads its config (`make run` builds the console before it starts Envoy). No second server
or port to run, proxy or secure; the price is that a rebuilt console is served after Envoy restarts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[3]
CONSOLE_DIST = ROOT / "console" / "dist"
CONSOLE_PATH = "/console/"

# What a gRPC-web call sends (connect-web: content-type, x-grpc-web, x-user-agent, grpc-timeout) and the
# credentials; what a client must read of the answer: the status (in headers for a trailers-only reply), the
# error details, Envoy's request id to quote, REST's next page token.
CORS_ALLOW_HEADERS = (
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "x-api-key",
    "authorization",
)
CORS_EXPOSE_HEADERS = ("grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id", "x-next-page-token")
CORS_MAX_AGE_SECONDS = 600

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
# The console runs only its own scripts and styles and talks only to this origin: an injected script or a
# framing page gets nowhere. No caching of the page itself (it names the hashed assets of the current build).
_CONSOLE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
# Routes that serve files: no key check, no transcoding (reject_unknown_method would 404 them), no buffering.
_NO_API_FILTERS = {
    "envoy.filters.http.ext_authz": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
        "disabled": True,
    },
    "envoy.filters.http.grpc_json_transcoder": {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
        "disabled": True,
    },
}
_INDENT = " " * 24  # a route's place in envoy.yaml.tmpl


def cors_origins(setting: str) -> tuple[str, ...]:
    """The comma-separated AGENTOK_CORS_ALLOWED_ORIGINS as origins (`scheme://host[:port]`); anything else is
    refused at start-up rather than silently never matching (a trailing slash or a path is a common slip)."""
    origins = tuple(o.strip() for o in setting.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or origin != f"{parts.scheme}://{parts.netloc}":
            raise ValueError(f"a CORS origin is scheme://host[:port], nothing more: {origin!r}")
    return origins


def cors_policy(origins: Sequence[str]) -> str:
    """The virtual host's CORS policy (for the cors filter), or nothing when no origin is allowed."""
    if not origins:
        return ""
    policy = {
        "envoy.filters.http.cors": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"exact": o} for o in origins],
            "allow_methods": "GET, POST, PATCH, DELETE, OPTIONS",
            "allow_headers": ", ".join(CORS_ALLOW_HEADERS),
            "expose_headers": ", ".join(CORS_EXPOSE_HEADERS),
            "max_age": str(CORS_MAX_AGE_SECONDS),
            # Credentials are headers the page sets (x-api-key, authorization), never cookies.
            "allow_credentials": False,
        }
    }
    return f"                      typed_per_filter_config: {json.dumps(policy)}"


def _route(match: dict[str, Any], response: dict[str, Any], headers: dict[str, str]) -> str:
    route = {
        "match": match,
        **response,
        "response_headers_to_add": [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for k, v in headers.items()
        ],
        "typed_per_filter_config": _NO_API_FILTERS,
    }
    return f"{_INDENT}- {json.dumps(route)}"


def _file_route(path: str, file: Path) -> str:
    headers = {"content-type": _CONTENT_TYPES.get(file.suffix, "application/octet-stream"), **_CONSOLE_HEADERS}
    # Vite names assets by their content's hash: they never change under one name.
    headers["cache-control"] = "no-cache" if file.suffix == ".html" else "public, max-age=31536000, immutable"
    response = {"direct_response": {"status": 200, "body": {"filename": str(file.resolve())}}}
    return _route({"path": path}, response, headers)


def console_routes(dist: Path = CONSOLE_DIST) -> str:
    """One route per built file under /console/ (index.html also at /console/ itself, and /console redirects
    there); without a build, /console/ says how to make one."""
    redirect = _route({"path": CONSOLE_PATH.rstrip("/")}, {"redirect": {"path_redirect": CONSOLE_PATH}}, {})
    index = dist / "index.html"
    if not index.is_file():
        body = {"inline_string": "the console is not built: `make run` builds it (npm ci && npm run build in console/)"}
        missing = {"direct_response": {"status": 404, "body": body}}
        return "\n".join([redirect, _route({"prefix": CONSOLE_PATH}, missing, {"content-type": "text/plain"})])
    files = sorted(p for p in dist.rglob("*") if p.is_file())
    routes = [redirect, _file_route(CONSOLE_PATH, index)]
    routes += [_file_route(CONSOLE_PATH + str(p.relative_to(dist)), p) for p in files]
    # Any other path under /console/ is no file of the console's (and needs no key to be told so).
    missing = {"direct_response": {"status": 404, "body": {"inline_string": "no such file in the console"}}}
    routes.append(_route({"prefix": CONSOLE_PATH}, missing, {"content-type": "text/plain"}))
    return "\n".join(routes)
