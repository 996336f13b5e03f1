"""README's performance table is what scripts/perf_table.py renders from the committed
docs/benchmarks.json and docs/reliability.json: a hand-edited or stale figure fails here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]


def perf_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rtfd_perf_table", ROOT / "scripts/perf_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_readme_performance_table_is_the_committed_json() -> None:
    pt = perf_table()
    bench = pt.load(pt.BENCH_JSON)
    assert bench, "docs/benchmarks.json is missing: run `just bench`"
    want = pt.render(bench, pt.load(pt.CHAOS_JSON))
    got = pt.block(pt.README.read_text(encoding="utf-8"))
    assert got == want, (
        "README's performance table is stale or edited by hand: run `just bench` or `just "
        "chaos` (or `python -c 'import perf_table; perf_table.rewrite_readme()'` in scripts/)"
    )


def test_a_figure_that_was_not_measured_says_so() -> None:
    text = perf_table().render({"sustained_tx_per_s": None, "machine": {}}, None)
    assert "not measured tx/s" in text
    assert "nan" not in text.lower().replace("naive", "")
