"""Several real `agentok serve` replicas on one real PostgreSQL database and one real Envoy in front of
them, as `make run-cluster` deploys them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from agentok_server.edge.envoy_process import EnvoyProcess

from .postgres import create_database, drop_database
from .stack import LOOPBACK, BehindEnvoy, ServerProcess, agentok_cli, check_secret, create_key, free_port


class Cluster(BehindEnvoy):
    def __init__(
        self, root: Path, llm_base_url: str, replicas: int = 2, settings: dict[str, str] | None = None
    ) -> None:
        """`settings` overrides the AGENTOK_* defaults below for every replica."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.database_url = create_database()
        self.base_env = {
            **os.environ,
            "AGENTOK_DATA_DIR": str(root / "data"),
            "AGENTOK_DATABASE_URL": self.database_url,
            "AGENTOK_LLM_BASE_URL": llm_base_url,
            "AGENTOK_LLM_MODEL": "echo",
            "AGENTOK_LLM_ATTEMPTS": "2",
            "AGENTOK_WATCH_KEEPALIVE_SECONDS": "1",
            # Short leases: a dead replica's runs are taken over within ~2 s instead of ~6 s.
            "AGENTOK_LEASE_SECONDS": "1.5",
            "AGENTOK_LEASE_RENEW_SECONDS": "0.3",
            **(settings or {}),
        }
        self.replicas: list[ServerProcess] = []
        for n in range(1, replicas + 1):
            env = {
                **self.base_env,
                "AGENTOK_GRPC_PORT": str(free_port()),
                "AGENTOK_AUTHZ_PORT": str(free_port()),
                "AGENTOK_REPLICA_ID": f"replica-{n}",
            }
            self.replicas.append(ServerProcess(env, int(env["AGENTOK_GRPC_PORT"]), root / f"replica-{n}.log"))
        agentok_cli(self.base_env, "db", "upgrade")
        self.envoy = EnvoyProcess(
            work_dir=root / "envoy",
            listen_host=LOOPBACK,
            listen_port=free_port(),
            upstreams=[r.upstream for r in self.replicas],
            check_secret=check_secret(self.base_env),
        )

    def start(self) -> Cluster:
        try:
            for replica in self.replicas:
                replica.start()
            self.envoy.start()
        except BaseException:
            self.stop()  # no process outlives a cluster that failed to start
            raise
        return self

    def key(self, owner: str) -> str:
        return create_key(self.base_env, f"{owner}-key", owner)[1]

    def stop(self) -> None:
        self.envoy.stop()
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.stop(signal.SIGTERM)
        drop_database(self.database_url)
