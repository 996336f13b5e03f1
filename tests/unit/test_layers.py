"""The layering is a contract (pyproject's ``[tool.importlinter]``), checked here so CI checks it.

import-linter builds the import graph of rtfd (imports inside functions included) and checks: the
layers (cli > tui > supervisor > stream, ml, generator, monitor > query, broker, labels >
features > base), textual only under rtfd.tui, pyspark only under rtfd.stream, and no circle
between the modules or packages of one package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def broken(done: subprocess.CompletedProcess[str]) -> set[str]:
    """The names of the contracts a run reports broken."""
    return {
        ln.rsplit(" ", 1)[0].strip() for ln in done.stdout.splitlines() if ln.endswith(" BROKEN")
    }


@pytest.fixture(scope="module")
def tree() -> subprocess.CompletedProcess[str]:
    return lint(ROOT)


def test_the_tree_keeps_its_layers(tree: subprocess.CompletedProcess[str]) -> None:
    assert tree.returncode == 0, tree.stdout[-4000:] + tree.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in tree.stdout, tree.stdout[-2000:]


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("rtfd/ml/__init__.py", "import textual", "textual only in rtfd.tui"),
        ("rtfd/query/__init__.py", "import pyspark", "pyspark only in rtfd.stream"),
        ("rtfd/stream/__init__.py", "from rtfd.cli import flags", "layers"),
        ("rtfd/features/__init__.py", "from rtfd import broker", "layers"),
        ("rtfd/schemas.py", "def f():\n    from rtfd.tui import app", "layers"),
        ("rtfd/broker/__init__.py", "from rtfd.generator import wire", "layers"),
        ("rtfd/ml/psi.py", "from rtfd.ml import train", "no import circles"),
    ],
)
def test_each_contract_fails_on_a_violation(
    tree: subprocess.CompletedProcess[str], tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """A copy of the tree with one forbidden import added (lazy ones too) breaks its contract."""
    assert contract not in broken(tree), "the tree itself breaks it: this case would prove nothing"
    shutil.copytree(ROOT / "rtfd", tmp_path / "rtfd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    done = lint(tmp_path)
    assert done.returncode != 0, done.stdout[-2000:]
    assert contract in broken(done), done.stdout[-3000:]
