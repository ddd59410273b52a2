"""gen/ is produced by `make gen` from proto/ and committed: fail when it is stale."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _files(top: Path) -> dict[str, Path]:
    return {str(p.relative_to(top)): p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_gen_matches_proto(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen.py"), str(tmp_path)], check=True)
    fresh, committed = _files(tmp_path), _files(ROOT / "gen")
    assert sorted(fresh) == sorted(committed), "gen/ has missing or extra files: run `make gen`"
    stale = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert not stale, f"gen/ is stale ({stale}): run `make gen` and commit"


def test_typescript_gen_matches_proto(tmp_path: Path) -> None:
    """clients/typescript/src/gen (protoc-gen-es by buf) is made by `make gen` too, and committed."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen.py"), "--typescript", str(tmp_path)], check=True)
    gen = Path("clients") / "typescript" / "src" / "gen"
    fresh, committed = _files(tmp_path / gen), _files(ROOT / gen)
    assert fresh, "buf generated nothing"
    assert sorted(fresh) == sorted(committed), f"{gen} has missing or extra files: run `make gen`"
    stale = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert not stale, f"{gen} is stale ({stale}): run `make gen` and commit"
