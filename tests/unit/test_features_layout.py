"""The shape of the feature package, checked from its source: no import circle, the per-user
kernel independent of the merchant risk table, and no I/O anywhere in it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import rtfd.features
from rtfd.features.arithmetic import DEFAULT_CONFIG, PAIR_KINDS, RawQuantities, finish
from rtfd.features.names import USER_FEATURES

pytestmark = pytest.mark.unit

PACKAGE = Path(rtfd.features.__file__).parent
KERNEL = ("timeutil", "arithmetic", "reference", "state", "columns", "batch", "kernel")
# What reads or writes files, talks to a service or makes data: never in the feature package.
IO_MODULES = (
    "duckdb",
    "rtfd.lake",
    "rtfd.query",
    "rtfd.config",
    "rtfd.generator",
    "rtfd.query.labels",
)


def _imports(tree: ast.AST) -> set[str]:
    """Every module an import statement in ``tree`` names (``from a import b``: a and a.b)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def _module_level_imports(tree: ast.Module) -> set[str]:
    """Imports run when the module loads (top level and its ``if`` blocks, TYPE_CHECKING
    included), not those inside functions."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.If | ast.Try):
            found |= _imports(node)
    return found


def _sources() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text()) for p in sorted(PACKAGE.glob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level."""
    sources = _sources()
    ours = {f"rtfd.features.{name}": name for name in sources}
    return {
        name: {ours[m] for m in _module_level_imports(tree) if m in ours} - {name}
        for name, tree in sources.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_feature_package_has_no_import_circle() -> None:
    graph = import_graph()
    assert {"kernel", "batch", "merchant_risk", "offline"} <= set(graph)
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_circles() -> None:
    """The check above can fail: a circle of any length is found, a diamond is not one."""
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None
    assert _cycle({"x": {"y"}, "y": {"z"}, "z": {"y"}}) == ["y", "z", "y"]


@pytest.mark.parametrize("module", KERNEL)
def test_the_per_user_kernel_never_imports_the_merchant_risk_table(module: str) -> None:
    names = _imports(_sources()[module])
    assert not any("merchant_risk" in n or n.startswith("rtfd.features.offline") for n in names)


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("*.py")))
def test_no_feature_module_does_io(module: str) -> None:
    """Not even lazily, inside a function: the reads of the lake live in rtfd.query."""
    names = _imports(_sources()[module])
    assert not [n for n in names if any(n == m or n.startswith(m + ".") for m in IO_MODULES)]


def test_the_kernel_computes_exactly_the_named_user_features() -> None:
    """The names are written once (rtfd.features.names); the formulas produce those and no
    other, so the two cannot drift apart."""
    one = np.zeros(1, dtype=np.int64)
    four = np.zeros((4, 1), dtype=np.int64)
    nan = np.full(1, np.nan)
    raw = RawQuantities(
        t_ms=one, amount=np.ones(1), n=one, sum_c=one, sq_hi=one, sq_lo=one,
        counts=four, sums_c=four, new_merchants=four, new_cities=four, gap_ms=one,
        prior={k: one for k in PAIR_KINDS}, has_key={k: one > 0 for k in PAIR_KINDS},
        channel=one, lat=nan, lon=nan, prev_lat=nan, prev_lon=nan,
    )  # fmt: skip
    assert sorted(finish(raw, DEFAULT_CONFIG)) == sorted(USER_FEATURES)
