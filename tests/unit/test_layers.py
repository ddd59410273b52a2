"""The layers' imports point one way: the domain (and its engine) declare what they need from storage
(domain/ports.py) and never import storage itself; storage never imports transport; only the composition
root wires them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "agentok_server"


def _modules(layer: str) -> list[Path]:
    """Every module of a layer, its subpackages' too (storage.repository is a package)."""
    paths = sorted((PACKAGE / layer).rglob("*.py"))
    assert paths, f"no modules under {layer}/"
    return paths


def _imports(path: Path) -> set[str]:
    """Absolute names of everything a module imports (relative imports resolved against the package)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize("layer", ["domain", "engine"])
def test_the_domain_never_imports_storage_or_transport(layer: str) -> None:
    offending = {
        str(path.relative_to(PACKAGE)): sorted(
            n for n in _imports(path) if n.startswith(("agentok_server.storage", "agentok_server.transport"))
        )
        for path in _modules(layer)
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_storage_never_imports_transport() -> None:
    offending = {
        str(path.relative_to(PACKAGE)): sorted(n for n in _imports(path) if n.startswith("agentok_server.transport"))
        for path in _modules("storage")
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_repository_implements_the_domain_ports() -> None:
    """Structurally (mypy checks the signatures where app.py wires it): every port method exists on it."""
    from agentok_server.domain import ports
    from agentok_server.storage.repository import Repository

    for port in (ports.KeyStore, ports.FlowStore, ports.ChatsAndFlows, ports.RunStore, ports.IdempotencyStore):
        missing = [
            name
            for name in dir(port)
            if not name.startswith("_") and not hasattr(Repository, name) and name != "replica_id"
        ]
        assert missing == [], (port.__name__, missing)
