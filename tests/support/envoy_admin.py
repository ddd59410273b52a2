"""Reading Envoy's admin interface in tests: one parser of its /clusters text, for the tests that check how
Envoy spreads requests over replicas and routes around a dead one."""

from __future__ import annotations

from agentok_server.edge.envoy_process import EnvoyProcess


def cluster_hosts(envoy: EnvoyProcess, cluster: str) -> dict[int, dict[str, str]]:
    """Envoy's view of one cluster's hosts, by port: rq_success, health_flags, ... (over its admin socket)."""
    hosts: dict[int, dict[str, str]] = {}
    for line in envoy.admin_get("/clusters").text.splitlines():
        # <cluster>::<host:port>::<stat>::<value>; cluster-wide lines have no host:port.
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and ":" in parts[1]:
            hosts.setdefault(int(parts[1].rsplit(":", 1)[1]), {})[parts[2]] = parts[3]
    return hosts
