"""Reading Envoy's admin interface in tests: one parser of its /clusters text, for the tests that check how
Envoy spreads requests over replicas and routes around a dead one."""

from __future__ import annotations

from agentok_server.edge.envoy_process import EnvoyProcess

from .stack import ServerProcess

# The upstream clusters envoy_config renders: the replicas' gRPC ports, and their key-check ports.
GRPC_CLUSTER = "agentok_grpc"
AUTHZ_CLUSTER = "agentok_authz"


def cluster_hosts(envoy: EnvoyProcess, cluster: str) -> dict[int, dict[str, str]]:
    """Envoy's view of one cluster's hosts, by port: rq_success, health_flags, ... (over its admin socket)."""
    hosts: dict[int, dict[str, str]] = {}
    for line in envoy.admin_get("/clusters").text.splitlines():
        # <cluster>::<host:port>::<stat>::<value>; cluster-wide lines have no host:port.
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and ":" in parts[1]:
            hosts.setdefault(int(parts[1].rsplit(":", 1)[1]), {})[parts[2]] = parts[3]
    return hosts


def served(envoy: EnvoyProcess, cluster: str) -> dict[int, int]:
    """Successful requests per host port, as Envoy counted them."""
    return {port: int(stats.get("rq_success", "0")) for port, stats in cluster_hosts(envoy, cluster).items()}


def out_of_rotation(envoy: EnvoyProcess, server: ServerProcess) -> bool:
    """Whether Envoy's health checks have failed both of a server's ports (so it routes around it)."""
    grpc_flags = cluster_hosts(envoy, GRPC_CLUSTER)[server.port].get("health_flags", "")
    authz_flags = cluster_hosts(envoy, AUTHZ_CLUSTER)[server.authz_port].get("health_flags", "")
    return "failed_active_hc" in grpc_flags and "failed_active_hc" in authz_flags
