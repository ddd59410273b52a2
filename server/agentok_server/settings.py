"""Typed settings: one object, read from environment variables prefixed AGENTOK_ (and DATABASE_URL)."""

from __future__ import annotations

import socket
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .storage.urls import private_sqlite_file


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTOK_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the default SQLite file lives.")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTOK_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; default is an SQLite file in data_dir.",
    )

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # Envoy's ext_authz asks this loopback HTTP endpoint (same host as the gRPC server) about every request.
    authz_port: int = 50052
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    envoy_concurrency: int = 1
    # Browser pages on other origins that may call the API through Envoy (gRPC-web or REST): comma-separated
    # `scheme://host[:port]`. None by default: the console at /console/ is served by Envoy itself, same-origin.
    cors_allowed_origins: str = ""
    # Envoy's own log (data_dir/envoy/envoy.log, 0600). Credentials are dropped from it at every level,
    # debug and trace included (which print every request's headers): see edge/log_redaction.py.
    envoy_log_level: str = Field(default="warn", pattern="^(trace|debug|info|warn|warning|error|critical|off)$")

    # Envoy bounds each unary call to this (WatchChat has no bound). The signed identity the edge hands the
    # server lives this long plus a clock allowance, so a request whose body is slow to arrive is still
    # served within its route's time (the identity is made at headers and read once the body is in).
    route_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Each credential's request rate through Envoy (a token bucket per API key or bearer token): sustained
    # requests a second, and the burst above it; beyond, 429 / RESOURCE_EXHAUSTED with Retry-After.
    # 0 switches the limit off (benchmarks).
    rate_limit_per_second: int = Field(default=100, ge=0)
    rate_limit_burst: int = Field(default=200, ge=0)

    # Prometheus metrics of this replica at http://127.0.0.1:<port>/metrics (loopback only, whatever grpc_host
    # says: they tell how busy the replica is); 0 switches the endpoint off. `agentok run --replicas N` moves
    # replica n's port like its other ports.
    metrics_port: int = Field(default=9464, ge=0, lt=65536)
    # One line per request on stderr (transport/request_log.py): JSON, or plain text for a person's terminal.
    log_format: str = Field(default="json", pattern="^(json|text)$")

    # Turning auth off exists only to measure its cost (make bench); never in a deployment.
    auth_enabled: bool = True
    key_cache_seconds: float = Field(default=1.0, ge=0, le=1.0, description="Revocation takes effect within this.")

    # Bearer tokens (Authorization: Bearer <JWT>), verified by Envoy. By default against the development
    # key pair that `make run` creates in data_dir/dev-jwt (and `agentok token` signs with).
    tokens_enabled: bool = True
    jwt_issuer: str = "agentok-dev"
    jwt_audience: str = "agentok"
    jwks_file: Path | None = Field(default=None, description="Local JWKS; default: the development key pair's.")
    jwks_uri: str | None = Field(default=None, description="Remote JWKS URL; wins over jwks_file.")
    jwks_ca_file: Path = Field(
        default=Path("/etc/ssl/certs/ca-certificates.crt"),
        description="CA bundle an https jwks_uri's certificate must chain to (it must also name the host).",
    )
    # Tokens must carry exp; one that expires further ahead than this is refused (a leaked long-lived token
    # would work for as long as it says). `agentok token --ttl` is capped at it too.
    jwt_max_lifetime_seconds: int = Field(default=24 * 3600, gt=0)

    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str | None = None
    llm_timeout_seconds: float = 60.0
    llm_attempts: int = Field(default=3, ge=1)
    # The most one model call may take, its retries and a streamed answer included: the timeout above is per
    # read, so a provider that sends a byte now and then (a tenant's URL may be anything) would otherwise hold
    # the run, and its slot in the owner's concurrent runs, for ever.
    llm_call_deadline_seconds: float = Field(default=600.0, gt=0)
    # Hosts a tenant's URL (a flow's llm_config.base_url) may reach although they are not public addresses
    # (loopback, private, link-local, metadata ...): comma-separated `host` or `host:port`. The host:port of
    # llm_base_url is always allowed. Enforced by engine/egress.py.
    egress_allowed_hosts: str = ""

    watch_keepalive_seconds: float = Field(default=15.0, gt=0)

    # Running the code blocks agents write (enable_code_execution): off, because it runs model-written code
    # on this machine. On, each run gets a scratch directory, a time limit and an output cap.
    code_execution_enabled: bool = False
    code_execution_timeout_seconds: float = Field(default=10.0, gt=0)
    code_execution_output_limit: int = Field(default=10_000, gt=0)

    # HTTP tools: how long one call may take and how large its answer may be (over either, the model sees an
    # error result). Their hosts must be listed in egress_allowed_hosts; python tools use the code execution
    # settings above and run only where it is enabled.
    tool_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    tool_response_limit: int = Field(default=100_000, gt=0, le=10_000_000)
    # What tool calls may consume: a model (a tenant's own endpoint, say) may answer with any number of calls.
    # Past the first N of one message each call gets an error result unrun (engine: domain/run_task.py); and at
    # most M calls (requests, subprocesses) run at once on this replica, whichever runs they belong to.
    max_tool_calls_per_message: int = Field(default=16, ge=1, le=128)
    tool_concurrency: int = Field(default=8, ge=1, le=256)

    # Budgets a chat gets unless CreateChat sets its own. No run is unlimited: a client's 0 means this
    # default, and neither the default nor a client's budget may pass the limit (checked below and in
    # ChatService.create), so one chat cannot keep the server busy for good.
    default_max_agent_turns: int = Field(default=200, ge=1)
    max_agent_turns_limit: int = Field(default=1000, ge=1, le=2**31 - 1)
    # Runs in progress (running or waiting for a person) one owner may have at once; SendMessage that would
    # start one more is RESOURCE_EXHAUSTED. Answering a waiting run is never refused.
    max_concurrent_runs_per_owner: int = Field(default=100, ge=1)
    default_input_timeout_seconds: float = Field(default=0.0, ge=0, description="0: wait for people forever")
    default_input_timeout_action: str = Field(default="skip", pattern="^(skip|end)$")
    # Tokens (the provider's total_tokens, summed over a run's model calls) a run may use unless CreateChat
    # sets max_tokens_per_run; a run that reaches it ends `completed`, saying why. 0: no token limit.
    default_max_tokens_per_run: int = Field(default=0, ge=0)
    shutdown_grace_seconds: float = 5.0

    # Replicas (several servers on one PostgreSQL). A run is executed by the replica holding its lease; the
    # holder renews it every lease_renew_seconds, and when it lapses (the replica died) another one takes
    # the run over from its journal. The id must differ between live replicas and should stay the same
    # across one replica's restarts (it then reclaims its runs at once): the default is host:grpc_port.
    replica_id: str = ""
    lease_seconds: float = Field(default=5.0, gt=0)
    lease_renew_seconds: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _default_budget_within_limit(self) -> Settings:
        if self.default_max_agent_turns > self.max_agent_turns_limit:
            raise ValueError(
                f"AGENTOK_DEFAULT_MAX_AGENT_TURNS ({self.default_max_agent_turns}) must be at most "
                f"AGENTOK_MAX_AGENT_TURNS_LIMIT ({self.max_agent_turns_limit})"
            )
        return self

    @property
    def effective_replica_id(self) -> str:
        return self.replica_id or f"{socket.gethostname()}:{self.grpc_port}"

    @property
    def dev_jwt_dir(self) -> Path:
        return self.data_dir / "dev-jwt"

    def usable_database_url(self) -> str:
        """effective_database_url, with the SQLite default's directory created (it may not exist yet)."""
        if self.database_url is None:
            # 0700: the database holds the edge identity's signing secret (and the key hashes).
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_sqlite_file(self.effective_database_url)
        return self.effective_database_url

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'agentok.db').resolve()}"
