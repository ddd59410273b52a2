"""Bearer tokens at the edge: the jwt_authn filter and where its keys come from (a local JWKS file, or a JWKS
URI fetched over a verified connection), rendered into Envoy's config by envoy_config.py."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

# Bearer tokens (Authorization: Bearer <JWT>), verified here against the configured issuer, audience and JWKS.
# A request without a token passes on to the API-key check; a request with a bad token is refused (401).
# forward: false drops the token once verified; its payload travels on only to the key check.
# Tokens must carry `exp` and expire within the configured maximum lifetime; the key check enforces that (see
# transport/authz_http.py) rather than jwt_authn's own require_expiration/max_lifetime, which refuse with the same
# "Jwt verification fails" as a forged signature, leaving a client no way to tell what to fix.
_JWT_FILTER = """\
                  - name: envoy.filters.http.jwt_authn
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
                      providers:
                        agentok:
                          issuer: ${issuer}
                          audiences: [${audience}]
                          # The scheme is case-insensitive (RFC 9110) but value_prefix is not: every spelling of
                          # "Bearer" is listed. Any other Authorization header reaches the key check and is refused.
                          from_headers:
${bearer_prefixes}
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
class JwtConfig:
    """Where bearer tokens come from: a local JWKS file (default) or a remote JWKS URI."""

    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_uri: str | None = None
    # CA bundle an https jwks_uri's certificate must chain to.
    jwks_ca_file: Path = SYSTEM_CA_FILE


def jwt_fragments(config: JwtConfig | None) -> tuple[str, str]:
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
    flt = Template(_JWT_FILTER).substitute(
        issuer=json.dumps(config.issuer),
        audience=json.dumps(config.audience),
        jwks=jwks,
        bearer_prefixes="\n".join(
            f'                            - {{name: Authorization, value_prefix: "{p} "}}' for p in _bearer_spellings()
        ),
    )
    return flt, cluster


def _bearer_spellings() -> list[str]:
    """ "Bearer" in every combination of upper and lower case (64): jwt_authn matches prefixes exactly."""
    spellings = [""]
    for letter in "bearer":
        spellings = [s + c for s in spellings for c in (letter.upper(), letter)]
    return spellings


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
