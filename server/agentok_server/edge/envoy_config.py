"""Renders the Envoy bootstrap from envoy/envoy.yaml.tmpl: tests, benchmarks and `agentok run` differ only in ports."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from string import Template

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
                        server_uri: {uri: ${uri}, cluster: agentok_authz, timeout: ${timeout}}"""
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
        authz_cluster=authz_cluster,
        route_timeout=_seconds(route_timeout),
        stream_idle_timeout=_seconds(stream_idle_timeout),
        max_request_bytes=max_request_bytes,
        max_response_bytes=max_response_bytes,
        access_log=_access_log(access_log_path),
    )
