"""Renders the Envoy bootstrap from envoy/envoy.yaml.tmpl: tests, benchmarks and `agentok run` differ only in ports."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from ..domain.limits import MAX_ID_LENGTH, MAX_PAGE_TOKEN_LENGTH
from ..transport.authz_http import (
    CHECK_PREFIX,
    CHECK_SECRET_HEADER,
    CLIENT_CONTENT_TYPE_HEADER,
    HEALTH_PATH,
    INTERNAL_HEADERS,
)
from ..transport.body_check import RestRoutes
from .envoy_browser import CONSOLE_DIST, console_routes, cors_policy
from .envoy_tokens import JwtConfig, jwt_fragments
from .local_replies import edge_errors, local_reply_mappers

ROOT = Path(__file__).resolve().parents[3]
ENVOY_DIR = ROOT / "envoy"
TEMPLATE = ENVOY_DIR / "envoy.yaml.tmpl"
WATCH_SSE_LUA = ENVOY_DIR / "watch_sse.lua"
DESCRIPTOR = ROOT / "gen" / "agentok_descriptor.pb"
OPENAPI = ROOT / "gen" / "openapi.json"

MIB = 1024 * 1024
# sun_path holds 108 bytes, the terminating NUL included: the longest path a Unix socket can be bound to.
MAX_UNIX_SOCKET_PATH = 107

# ext_authz asks the server process's loopback HTTP check endpoint (transport/authz_http.py): any 200 allows,
# anything else is the denial sent to the client as is. HTTP/1.1 keep-alive costs the server a fraction of
# a gRPC call per check, and the check runs on every request.
_AUTHZ_HTTP = """\
                      http_service:
                        server_uri: {uri: ${uri}, cluster: agentok_authz, timeout: ${timeout}}
                        # Every check's path starts with this: the check endpoint's health path is unreachable.
                        path_prefix: ${check_prefix}
                        # A replica that just died: ask another one (the check has no side effects).
                        retry_policy: {num_retries: 2, retry_on: "connect-failure,reset,refused-stream"}
                        authorization_request:
                          # Proof that the check comes from this edge: without it the check endpoint refuses to
                          # mint an identity. ext_authz sets it on the check request itself (a client's header
                          # of that name is dropped by header_mutation and never among allowed_headers).
                          headers_to_add: [{key: ${check_secret_header}, value: ${check_secret}}]
                        authorization_response:
                          # The signed identity goes on to the server (the key and token do not: see authz_http.py).
                          allowed_upstream_headers:
                            patterns: [{exact: x-agentok-identity}]"""
# On the catch-all route, where REST requests start: their bodies go to the check (with_request_body).
_AUTHZ_ROUTE_BODY = """\
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              check_settings:
                                with_request_body:
                                  max_request_bytes: ${max_request_bytes}
                                  allow_partial_message: false"""
_AUTHZ_HTTP_CLUSTER = """\
    - name: agentok_authz
      type: ${type}
      dns_lookup_family: V4_PREFERRED
      connect_timeout: 1s
      # HTTP/1.1 carries one check per connection at a time: a burst of checks queues for one of a bounded
      # number of kept-alive connections instead of opening a connection each (which overran the check
      # endpoint's accept queue and timed out connects).
      circuit_breakers:
        thresholds:
          - {max_connections: ${authz_connections}, max_pending_requests: 100000, max_requests: 100000, max_retries: 3}
      # One check endpoint per replica; one that stops answering leaves the rotation (as its gRPC port does).
      health_checks:
        - timeout: 1s
          interval: ${hc_interval}
          no_traffic_interval: ${hc_interval}
          unhealthy_threshold: 2
          healthy_threshold: 1
          http_health_check: {path: ${health_path}}
      outlier_detection:
        consecutive_gateway_failure: 2
        consecutive_5xx: 1000000
        interval: 1s
        base_ejection_time: 5s
        max_ejection_percent: 50
      load_assignment:
        cluster_name: agentok_authz
        endpoints:
          - lb_endpoints:
${endpoints}"""
_ENDPOINT = """              - endpoint:
                  address:
                    socket_address: {address: ${host}, port_value: ${port}}"""


@dataclass(frozen=True)
class Upstream:
    """One server replica: its gRPC port and its ext_authz check port, on one host."""

    host: str
    grpc_port: int
    authz_port: int


@dataclass(frozen=True)
class RateLimit:
    """Each credential (API key, bearer token) gets its own token bucket: `per_second` requests a second
    sustained, bursts up to `burst`. One tenant's flood then costs the others nothing but Envoy's own work."""

    per_second: int
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < self.per_second:
            raise ValueError(f"a rate limit needs per_second > 0 and burst >= per_second, got {self}")


# Distinct credentials Envoy keeps a bucket for (least recently used first out): far more than the keys a
# deployment has active at once; a flood of random keys only evicts buckets of keys that were idle anyway.
RATE_LIMIT_BUCKETS = 10_000
# Per client connection, and Envoy's upstream pool to the server: enough for every watcher a client opens on
# one connection (Envoy's default of 1024 left the rest hanging with no error).
MAX_CONCURRENT_STREAMS = 100_000
# Kept-alive connections to each key-check endpoint.
AUTHZ_CONNECTIONS = 64

# The rate limit's descriptors: one per credential header present (a request has at most one, or the key
# check refuses it). Requests without either are refused by the key check at once, without a bucket.
_RATE_LIMIT_ACTIONS = [
    {"actions": [{"request_headers": {"header_name": "x-api-key", "descriptor_key": "api_key"}}]},
    {"actions": [{"request_headers": {"header_name": "authorization", "descriptor_key": "bearer"}}]},
]


def _rate_limit_filter(limit: RateLimit | None) -> str:
    """The local_ratelimit filter (before any credential is checked, so a flood is refused cheaply)."""
    if limit is None:
        return ""
    bucket = {"max_tokens": limit.burst, "tokens_per_fill": limit.per_second, "fill_interval": "1s"}
    config = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "per_credential",
        # The filter's own bucket is only a fallback for requests no descriptor matches: effectively unlimited.
        "token_bucket": {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"},
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_on"},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_enf"},
        "always_consume_default_token_bucket": False,
        "max_dynamic_descriptors": RATE_LIMIT_BUCKETS,
        "rate_limits": _RATE_LIMIT_ACTIONS,
        # An empty value: a bucket per distinct header value.
        "descriptors": [
            {"entries": [{"key": "api_key", "value": ""}], "token_bucket": bucket},
            {"entries": [{"key": "bearer", "value": ""}], "token_bucket": bucket},
        ],
        # gRPC callers get RESOURCE_EXHAUSTED (not Envoy's default UNAVAILABLE): a quota, not an outage.
        "rate_limited_as_resource_exhausted": True,
        "response_headers_to_add": [
            {"header": {"key": "retry-after", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ],
    }
    return (
        "                  - name: envoy.filters.http.local_ratelimit\n"
        f"                    typed_config: {json.dumps(config)}"
    )


# Access log fields: never the x-api-key. Paths: what the client asked for, and the gRPC method it became.
_ACCESS_LOG_FORMAT = {
    "start": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "grpc_path": "%REQ(:PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS_NUMBER%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
}


# Safe for any method, writes included: the request never reached a server.
_RETRY_POLICY = {
    "retry_on": "connect-failure,refused-stream,reset-before-request",
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    "host_selection_retry_max_attempts": 3,
}


def _seconds(value: float) -> str:
    """Envoy durations are strings like `1.5s`; `0s` disables a timeout."""
    if value < 0:
        raise ValueError(f"a duration cannot be negative: {value}")
    return f"{value:g}s"


def _listen_address(host: str) -> str:
    """A listener binds an IP: accept `localhost` and `[::]`, refuse names Envoy would reject at start-up."""
    host = host.strip("[]")
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"Envoy listens on an IP address, not {host!r}") from None


def _upstream(host: str) -> tuple[str, str]:
    """(address, cluster type): a server bound to a wildcard is reached on loopback; names need DNS."""
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host, "STRICT_DNS"
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return str(ip), "STATIC"


def _endpoints(hosts: Sequence[tuple[str, int]]) -> tuple[str, str]:
    """(lb_endpoints YAML, cluster type) for these (host, port)s: STATIC for IPs, STRICT_DNS if any is a name."""
    resolved = [(_upstream(host), port) for host, port in hosts]
    kind = "STRICT_DNS" if any(t == "STRICT_DNS" for (_, t), _ in resolved) else "STATIC"
    yaml = "\n".join(Template(_ENDPOINT).substitute(host=json.dumps(addr), port=port) for (addr, _), port in resolved)
    return yaml, kind


def _watch_path_regex() -> str:
    """The REST paths of WatchChat (from its google.api.http rules), for the route that turns on the SSE filter."""
    routes = [r for r in RestRoutes.of().routes if r.rpc.name == "WatchChat"]
    return "|".join(r.path_regex for r in routes)


def _access_log(path: Path | None) -> str:
    """One JSON line per request, or none: the server logs its own view, Envoy's log is for debugging the edge."""
    if path is None:
        return "[]"
    logger = {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {"json_format": _ACCESS_LOG_FORMAT},
        },
    }
    return json.dumps([logger])  # JSON is YAML: one flow-style line, no indentation to get right


def render_envoy_config(
    *,
    listen_host: str,
    listen_port: int,
    admin_socket: Path,
    upstream_host: str | None = None,
    upstream_port: int | None = None,
    authz_port: int | None = None,
    upstreams: Sequence[Upstream] | None = None,
    descriptor_path: Path = DESCRIPTOR,
    auth: bool = True,
    jwt: JwtConfig | None = None,
    authz_timeout: float = 1.0,
    route_timeout: float = 60.0,
    stream_idle_timeout: float = 300.0,
    health_check_interval: float = 1.0,
    max_request_bytes: int = 4 * MIB,
    max_response_bytes: int = 64 * MIB,
    access_log_path: Path | None = None,
    check_secret: str | None = None,
    rate_limit: RateLimit | None = None,
    request_headers_timeout: float = 10.0,
    max_request_headers_kb: int = 16,
    cors_allowed_origins: Sequence[str] = (),
    console_dir: Path = CONSOLE_DIST,
) -> str:
    """Return the bootstrap YAML.

    Envoy's admin listens on the Unix socket `admin_socket` only (at most 107 bytes: EnvoyProcess picks it).
    The servers are `upstreams` (replicas, load-balanced and health-checked), or the one server given by
    `upstream_host`, `upstream_port` and `authz_port`. `auth=False` switches ext_authz off: only `make bench`
    uses it, to measure what auth costs. `route_timeout` bounds unary calls (WatchChat has none); a gRPC
    client's own deadline takes precedence. `check_secret` (the server secret CHECK_SECRET_NAME) is what the
    key check demands of every check request; without it every check is refused. `rate_limit` bounds each
    credential's request rate (None: no limit). `cors_allowed_origins` may call the API from a browser page
    of theirs (the console, `console_dir`'s files at /console/, is same-origin and needs none).
    """
    if auth and not check_secret:
        raise ValueError("auth needs the deployment's check secret (agentok edge check-secret prints it)")
    if upstreams is None:
        if upstream_host is None or upstream_port is None or authz_port is None:
            raise ValueError("give upstreams, or upstream_host, upstream_port and authz_port")
        upstreams = [Upstream(upstream_host, upstream_port, authz_port)]
    if not upstreams:
        raise ValueError("at least one upstream is needed")
    if len(bytes(admin_socket)) > MAX_UNIX_SOCKET_PATH:
        raise ValueError(f"admin_socket is over {MAX_UNIX_SOCKET_PATH} bytes (a Unix socket's limit): {admin_socket}")
    ports = [("listen_port", listen_port)]
    for u in upstreams:
        ports += [("upstream grpc_port", u.grpc_port), ("upstream authz_port", u.authz_port)]
    for name, port in ports:
        if not 0 < port < 65536:
            raise ValueError(f"{name} out of range: {port}")
    listen = _listen_address(listen_host)
    grpc_endpoints, grpc_type = _endpoints([(u.host, u.grpc_port) for u in upstreams])
    authz_endpoints, authz_type = _endpoints([(u.host, u.authz_port) for u in upstreams])
    hc_interval = _seconds(health_check_interval)
    authz_service = Template(_AUTHZ_HTTP).substitute(
        # The cluster picks the replica; the URI's authority is only the Host header of the check.
        uri=json.dumps("http://agentok-authz"),
        timeout=_seconds(authz_timeout),
        check_prefix=json.dumps(CHECK_PREFIX),
        check_secret_header=CHECK_SECRET_HEADER,
        check_secret=json.dumps(check_secret or ""),
    )
    authz_cluster = Template(_AUTHZ_HTTP_CLUSTER).substitute(
        type=authz_type,
        endpoints=authz_endpoints,
        hc_interval=hc_interval,
        health_path=json.dumps(HEALTH_PATH.decode()),
        authz_connections=AUTHZ_CONNECTIONS,
    )
    jwt_filter, jwks_cluster = jwt_fragments(jwt if auth else None)
    return Template(TEMPLATE.read_text()).substitute(
        listen_host=json.dumps(listen),
        listen_port=listen_port,
        listen_ipv4_compat="true" if ":" in listen else "false",
        admin_socket=json.dumps(str(admin_socket)),
        upstream_endpoints=grpc_endpoints,
        upstream_type=grpc_type,
        health_check_interval=hc_interval,
        retry_policy=json.dumps(_RETRY_POLICY),
        descriptor_path=json.dumps(str(Path(descriptor_path).resolve())),
        openapi_path=json.dumps(str(OPENAPI.resolve())),
        authz_disabled="false" if auth else "true",
        authz_service=authz_service,
        authz_cluster=authz_cluster + ("\n" + jwks_cluster if jwks_cluster else ""),
        jwt_filter=jwt_filter,
        route_timeout=_seconds(route_timeout),
        stream_idle_timeout=_seconds(stream_idle_timeout),
        max_request_bytes=max_request_bytes,
        max_response_bytes=max_response_bytes,
        access_log=_access_log(access_log_path),
        internal_headers="\n".join(
            f"                          - remove: {name}" for name in (*INTERNAL_HEADERS, "x-envoy-original-path")
        ),
        client_content_type_header=CLIENT_CONTENT_TYPE_HEADER,
        rate_limit_filter=_rate_limit_filter(rate_limit),
        request_headers_timeout=_seconds(request_headers_timeout),
        max_request_headers_kb=max_request_headers_kb,
        max_concurrent_streams=MAX_CONCURRENT_STREAMS,
        long_segment_regex=json.dumps(f".*[^/]{{{MAX_ID_LENGTH + 1},}}.*"),
        max_id_length=MAX_ID_LENGTH,
        max_page_token_length=MAX_PAGE_TOKEN_LENGTH,
        local_reply_mappers=json.dumps(
            local_reply_mappers(
                edge_errors(
                    max_request_bytes=max_request_bytes,
                    max_request_headers_kb=max_request_headers_kb,
                    max_id_length=MAX_ID_LENGTH,
                )
            )
        ),
        watch_path_regex=json.dumps(_watch_path_regex()),
        authz_route_body=Template(_AUTHZ_ROUTE_BODY).substitute(max_request_bytes=max_request_bytes) if auth else "",
        watch_sse_lua=json.dumps(str(WATCH_SSE_LUA.resolve())),
        cors_policy=cors_policy(cors_allowed_origins),
        console_routes=console_routes(console_dir),
    )
