"""Renders the Envoy bootstrap from envoy/*.yaml.tmpl for given ports (tests and `make run` differ)."""

from __future__ import annotations

from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parents[3]
ENVOY_DIR = ROOT / "envoy"
DESCRIPTOR = ROOT / "gen" / "agentok_descriptor.pb"


def render_envoy_config(
    *,
    listen_host: str,
    listen_port: int,
    admin_port: int,
    upstream_host: str,
    upstream_port: int,
    descriptor_path: Path = DESCRIPTOR,
    auth: bool = True,
) -> str:
    """`auth=False` drops the ext_authz filter: only `make bench` uses it, to measure what auth costs."""
    authz = (ENVOY_DIR / "authz_filter.yaml.tmpl").read_text().rstrip("\n") if auth else ""
    return Template((ENVOY_DIR / "envoy.yaml.tmpl").read_text()).substitute(
        listen_host=listen_host,
        listen_port=listen_port,
        admin_port=admin_port,
        upstream_host=upstream_host,
        upstream_port=upstream_port,
        descriptor_path=descriptor_path,
        authz_filter=authz,
    )
