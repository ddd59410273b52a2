"""Session fixtures: one fake model server, and one real server + Envoy stack over a fresh SQLite file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentok_server.edge.envoy_config import JwtConfig

from .support.fake_llm import FakeLlm, FakeLlmServer
from .support.stack import Stack, create_key
from .support.tokens import AUDIENCE, ISSUER, TokenFactory

# Servers the tests start serve no metrics unless a test gives them a port: they inherit this environment,
# and many of them at once (replicas, several stacks) would all want the default port.
os.environ["AGENTOK_METRICS_PORT"] = "0"


@dataclass(frozen=True)
class Keys:
    alice: str
    bob: str
    alice_id: str


@pytest.fixture(scope="session")
def llm_server() -> Iterator[FakeLlmServer]:
    server = FakeLlmServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_llm(llm_server: FakeLlmServer) -> FakeLlm:
    return llm_server.fake


@pytest.fixture(scope="session")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> TokenFactory:
    return TokenFactory(tmp_path_factory.mktemp("jwks"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer, tokens: TokenFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("stack")
    # 127.0.0.1:9 (the discard port, nothing listens): a flow's model URL that is allowed but down.
    allowed = {"AGENTOK_EGRESS_ALLOWED_HOSTS": "127.0.0.1:9"}
    s = Stack(root, llm_server.base_url, extra_env=allowed, jwt=JwtConfig(ISSUER, AUDIENCE, jwks_file=tokens.jwks_file))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def keys(stack: Stack) -> Keys:
    alice_id, alice = create_key(stack.env, "alice-dev", "alice")
    _, bob = create_key(stack.env, "bob-dev", "bob")
    return Keys(alice=alice, bob=bob, alice_id=alice_id)
