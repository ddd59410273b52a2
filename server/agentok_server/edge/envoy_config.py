"""Renders the Envoy bootstrap from envoy/envoy.yaml.tmpl: tests, benchmarks and `agentok run` differ only in ports."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

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
      load_assignment:
        cluster_name: agentok_authz
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: ${host}, port_value: ${port}}"""

# Bearer tokens (Authorization: Bearer <JWT>), verified here against the configured issuer, audience and JWKS.
# A request without a token passes on to the API-key check; a request with a bad token is refused (401).
# forward: false drops the token once verified; its payload travels on only to the key check.
_JWT_FILTER = """\
                  - name: envoy.filters.http.jwt_authn
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
                      providers:
                        agentok:
                          issuer: ${issuer}
                          audiences: [${audience}]
                          from_headers: [{name: Authorization, value_prefix: "Bearer "}]
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
_JWKS_TLS = """\
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: ${host}"""


@dataclass(frozen=True)
class JwtConfig:
    """Where bearer tokens come from: a local JWKS file (default) or a remote JWKS URI."""

    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_uri: str | None = None


def _jwt(config: JwtConfig | None) -> tuple[str, str]:
    """(filter YAML, extra cluster YAML) for bearer tokens; empty when tokens are not configured."""
    if config is None:
        return "", ""
    if config.jwks_uri:
        url = urlsplit(config.jwks_uri)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"jwks_uri must be an http(s) URL, got {config.jwks_uri!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        tls = Template(_JWKS_TLS).substitute(host=url.hostname) if url.scheme == "https" else ""
        jwks = Template(_REMOTE_JWKS).substitute(uri=json.dumps(config.jwks_uri))
        cluster = Template(_JWKS_CLUSTER).substitute(host=json.dumps(url.hostname), port=port, tls=tls)
    elif config.jwks_file:
        jwks = Template(_LOCAL_JWKS).substitute(path=json.dumps(str(Path(config.jwks_file).resolve())))
        cluster = ""
    else:
        raise ValueError("bearer tokens need a jwks_file or a jwks_uri")
    flt = Template(_JWT_FILTER).substitute(
        issuer=json.dumps(config.issuer), audience=json.dumps(config.audience), jwks=jwks
    )
    return flt, cluster


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
    upstream_host: str,
    upstream_port: int,
    descriptor_path: Path = DESCRIPTOR,
    authz_port: int,
    auth: bool = True,
    jwt: JwtConfig | None = None,
    authz_host: str | None = None,
    authz_timeout: float = 1.0,
    route_timeout: float = 60.0,
    stream_idle_timeout: float = 300.0,
    max_request_bytes: int = 4 * MIB,
    max_response_bytes: int = 64 * MIB,
    access_log_path: Path | None = None,
) -> str:
    """Return the bootstrap YAML.

    `auth=False` switches ext_authz off: only `make bench` uses it, to measure what auth costs.
    ext_authz calls the HTTP check endpoint on `authz_host:authz_port` (default host: the upstream's).
    `route_timeout` bounds unary calls (WatchChat has none); a gRPC client's own deadline takes precedence.
    """
    for name, port in (("listen_port", listen_port), ("admin_port", admin_port), ("upstream_port", upstream_port)):
        if not 0 < port < 65536:
            raise ValueError(f"{name} out of range: {port}")
    listen = _listen_address(listen_host)
    upstream, upstream_type = _upstream(upstream_host)
    authz_addr, authz_type = _upstream(authz_host or upstream_host)
    uri_host = f"[{authz_addr}]" if ":" in authz_addr else authz_addr
    authz_service = Template(_AUTHZ_HTTP).substitute(
        uri=json.dumps(f"http://{uri_host}:{authz_port}"), timeout=_seconds(authz_timeout)
    )
    authz_cluster = Template(_AUTHZ_HTTP_CLUSTER).substitute(
        type=authz_type, host=json.dumps(authz_addr), port=authz_port
    )
    jwt_filter, jwks_cluster = _jwt(jwt if auth else None)
    return Template(TEMPLATE.read_text()).substitute(
        listen_host=json.dumps(listen),
        listen_port=listen_port,
        listen_ipv4_compat="true" if ":" in listen else "false",
        admin_port=admin_port,
        upstream_host=json.dumps(upstream),
        upstream_port=upstream_port,
        upstream_type=upstream_type,
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
