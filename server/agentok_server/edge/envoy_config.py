"""Renders the Envoy bootstrap from envoy/envoy.yaml.tmpl: tests, benchmarks and `agentok run` differ only in ports."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from ..transport.authz_http import CHECK_PREFIX, DEFAULT_MAX_LIFETIME_SECONDS, HEALTH_PATH, MAX_TOKEN_LIFETIME_HEADER

ROOT = Path(__file__).resolve().parents[3]
ENVOY_DIR = ROOT / "envoy"
TEMPLATE = ENVOY_DIR / "envoy.yaml.tmpl"
DESCRIPTOR = ROOT / "gen" / "agentok_descriptor.pb"

MIB = 1024 * 1024

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
                          # The longest remaining lifetime a bearer token may have (seconds): the check refuses
                          # tokens without exp or beyond it, saying which. Set here, never taken from a client.
                          headers_to_add: [{key: ${max_lifetime_header}, value: "${max_lifetime}"}]
                        authorization_response:
                          # The signed identity goes on to the server (the key and token do not: see authz_http.py).
                          allowed_upstream_headers:
                            patterns: [{exact: x-agentok-identity}]"""
_AUTHZ_HTTP_CLUSTER = """\
    - name: agentok_authz
      type: ${type}
      dns_lookup_family: V4_PREFERRED
      connect_timeout: 1s
      circuit_breakers:
        thresholds:
          - {max_connections: 100000, max_pending_requests: 100000, max_requests: 100000, max_retries: 3}
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

# Bearer tokens (Authorization: Bearer <JWT>), verified here against the configured issuer, audience and JWKS.
# A request without a token passes on to the API-key check; a request with a bad token is refused (401).
# forward: false drops the token once verified; its payload travels on only to the key check.
# Tokens must carry `exp` and expire within the configured maximum lifetime; the key check enforces that (see
# _AUTHZ_HTTP) rather than jwt_authn's own require_expiration/max_lifetime, which refuse with the same
# "Jwt verification fails" as a forged signature, leaving a client no way to tell what to fix.
_JWT_FILTER = """\
                  - name: envoy.filters.http.jwt_authn
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
                      providers:
                        agentok:
                          issuer: ${issuer}
                          audiences: [${audience}]
                          # The scheme is case-insensitive (RFC 7235) but value_prefix is not: both usual spellings.
                          from_headers:
                            - {name: Authorization, value_prefix: "Bearer "}
                            - {name: Authorization, value_prefix: "bearer "}
                          forward: false
                          forward_payload_header: x-jwt-payload
                          clock_skew_seconds: 30
${jwks}
                      rules:
                        - match: {prefix: /}
                          requires:
                            requires_any:
                              requirements: [{provider_name: agentok}, {allow_missing: {}}]"""
_LOCAL_JWKS = """\
                          local_jwks: {filename: ${path}}"""
_REMOTE_JWKS = """\
                          remote_jwks:
                            http_uri: {uri: ${uri}, cluster: agentok_jwks, timeout: 5s}
                            cache_duration: 300s
                            async_fetch: {fast_listener: false}
                            retry_policy: {num_retries: 3}"""
_JWKS_CLUSTER = """\
    - name: agentok_jwks
      type: STRICT_DNS
      dns_lookup_family: V4_PREFERRED
      connect_timeout: 5s
      load_assignment:
        cluster_name: agentok_jwks
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: ${host}, port_value: ${port}}
${tls}"""
# An https JWKS is fetched over a verified connection: without it, anyone on the path could serve their own
# keys and mint tokens for any owner. The certificate must chain to the CA bundle and name the JWKS host.
_JWKS_TLS = """\
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
${sni}          common_tls_context:
            validation_context:
              trusted_ca: {filename: ${ca_file}}
              match_typed_subject_alt_names:
                - san_type: ${san_type}
                  matcher: {exact: ${host}}"""
_JWKS_SNI = """\
          sni: ${host}
"""
# The system's CA bundle (Debian's ca-certificates): what a public identity provider's certificate chains to.
SYSTEM_CA_FILE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Upstream:
    """One server replica: its gRPC port and its ext_authz check port, on one host."""

    host: str
    grpc_port: int
    authz_port: int


@dataclass(frozen=True)
class JwtConfig:
    """Where bearer tokens come from: a local JWKS file (default) or a remote JWKS URI."""

    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_uri: str | None = None
    # CA bundle an https jwks_uri's certificate must chain to.
    jwks_ca_file: Path = SYSTEM_CA_FILE
    # Tokens whose exp is further ahead than this are refused.
    max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS


def _jwt(config: JwtConfig | None) -> tuple[str, str]:
    """(filter YAML, extra cluster YAML) for bearer tokens; empty when tokens are not configured."""
    if config is None:
        return "", ""
    if config.jwks_uri:
        url = urlsplit(config.jwks_uri)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"jwks_uri must be an http(s) URL, got {config.jwks_uri!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        tls = _jwks_tls(url.hostname, config.jwks_ca_file) if url.scheme == "https" else ""
        jwks = Template(_REMOTE_JWKS).substitute(uri=json.dumps(config.jwks_uri))
        cluster = Template(_JWKS_CLUSTER).substitute(host=json.dumps(url.hostname), port=port, tls=tls)
    elif config.jwks_file:
        jwks = Template(_LOCAL_JWKS).substitute(path=json.dumps(str(Path(config.jwks_file).resolve())))
        cluster = ""
    else:
        raise ValueError("bearer tokens need a jwks_file or a jwks_uri")
    if config.max_lifetime_seconds <= 0:
        raise ValueError(f"max_lifetime_seconds must be positive, got {config.max_lifetime_seconds}")
    flt = Template(_JWT_FILTER).substitute(
        issuer=json.dumps(config.issuer), audience=json.dumps(config.audience), jwks=jwks
    )
    return flt, cluster


def _jwks_tls(host: str, ca_file: Path) -> str:
    """The JWKS cluster's TLS: verified against `ca_file`, for `host` (a DNS name, or an IP address SAN)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        san_type, sni = "IP_ADDRESS", ""  # SNI carries host names only
        host = host.strip("[]")
    except ValueError:
        san_type, sni = "DNS", Template(_JWKS_SNI).substitute(host=json.dumps(host))
    return Template(_JWKS_TLS).substitute(
        host=json.dumps(host),
        sni=sni,
        san_type=san_type,
        ca_file=json.dumps(str(Path(ca_file).resolve())),
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
    admin_port: int,
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
) -> str:
    """Return the bootstrap YAML.

    The servers are `upstreams` (replicas, load-balanced and health-checked), or the one server given by
    `upstream_host`, `upstream_port` and `authz_port`. `auth=False` switches ext_authz off: only `make bench`
    uses it, to measure what auth costs. `route_timeout` bounds unary calls (WatchChat has none); a gRPC
    client's own deadline takes precedence.
    """
    if upstreams is None:
        if upstream_host is None or upstream_port is None or authz_port is None:
            raise ValueError("give upstreams, or upstream_host, upstream_port and authz_port")
        upstreams = [Upstream(upstream_host, upstream_port, authz_port)]
    if not upstreams:
        raise ValueError("at least one upstream is needed")
    ports = [("listen_port", listen_port), ("admin_port", admin_port)]
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
        max_lifetime_header=MAX_TOKEN_LIFETIME_HEADER,
        max_lifetime=jwt.max_lifetime_seconds if jwt else DEFAULT_MAX_LIFETIME_SECONDS,
    )
    authz_cluster = Template(_AUTHZ_HTTP_CLUSTER).substitute(
        type=authz_type,
        endpoints=authz_endpoints,
        hc_interval=hc_interval,
        health_path=json.dumps(HEALTH_PATH.decode()),
    )
    jwt_filter, jwks_cluster = _jwt(jwt if auth else None)
    return Template(TEMPLATE.read_text()).substitute(
        listen_host=json.dumps(listen),
        listen_port=listen_port,
        listen_ipv4_compat="true" if ":" in listen else "false",
        admin_port=admin_port,
        upstream_endpoints=grpc_endpoints,
        upstream_type=grpc_type,
        health_check_interval=hc_interval,
        retry_policy=json.dumps(_RETRY_POLICY),
        descriptor_path=json.dumps(str(Path(descriptor_path).resolve())),
        authz_disabled="false" if auth else "true",
        authz_service=authz_service,
        authz_cluster=authz_cluster + ("\n" + jwks_cluster if jwks_cluster else ""),
        jwt_filter=jwt_filter,
        route_timeout=_seconds(route_timeout),
        stream_idle_timeout=_seconds(stream_idle_timeout),
        max_request_bytes=max_request_bytes,
        max_response_bytes=max_response_bytes,
        access_log=_access_log(access_log_path),
    )
