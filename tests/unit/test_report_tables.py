"""The backtest tables in README.md and docs/ml.md are what `just report` renders from the
committed docs/backtest.json: a hand-edited or stale table fails here."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rtfd.ml.backtest import JSON_KEYS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]


@functools.cache
def report_script() -> ModuleType:
    """scripts/report.py, imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("rtfd_report_script", ROOT / "scripts/report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def committed_report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "docs/backtest.json").read_text(encoding="utf-8"))
    return data


def doc_block(name: str) -> str:
    return str(report_script().block((ROOT / name).read_text(encoding="utf-8")))


def test_readme_backtest_table_is_the_committed_json() -> None:
    assert doc_block("README.md") == report_script().readme_table(committed_report()), (
        "README's backtest table is stale: run `just report` (or `scripts/report.py "
        "--render-only` after editing the renderer)"
    )


def test_ml_doc_backtest_tables_are_the_committed_json() -> None:
    assert doc_block("docs/ml.md") == report_script().ml_doc_block(committed_report()), (
        "docs/ml.md's backtest tables are stale: run `just report` (or `scripts/report.py "
        "--render-only` after editing the renderer)"
    )


def test_ml_doc_tuning_table_is_the_committed_json() -> None:
    script = report_script()
    text = (ROOT / "docs/ml.md").read_text(encoding="utf-8")
    assert script.block(text, (script.TUNE_START, script.TUNE_END)) == script.tuning_block(
        committed_report()
    ), "docs/ml.md's tuning tables are stale: run `just report --tune` (or --render-only)"


def test_the_tuned_comparison_holds_its_figures_and_how_it_was_made() -> None:
    t = committed_report()["tuning"]
    for key in ("command", "date", "spec", "seconds", "git_commit"):
        assert t[key], key
    assert list(t["default"]["metrics"]) == list(JSON_KEYS) == list(t["tuned"]["metrics"])
    search = t["search"]
    assert search["best_params"] and set(search["best_params"]) == set(search["space"])
    assert len(search["best_fold_scores"]) == len(search["folds"]) == 3
    assert search["trials"] >= 1 and search["seconds"] > 0
    assert search["label_delay_s"] == 7 * 86_400
    assert t["tuned"]["params"] == {**t["default"]["params"], **search["best_params"]}
    # The default figures it compares with are the default run's, on the same split.
    default = committed_report()["algorithms"][t["algo"]]["metrics"]
    assert t["default"]["metrics"]["n_test"] == default["n_test"]


def test_the_json_holds_every_figure_and_how_it_was_made() -> None:
    report = committed_report()
    assert set(report["algorithms"]) == {"xgboost", "logreg", "iforest"}
    for key in ("command", "date", "libraries", "seconds", "history", "split", "machine"):
        assert report[key], key
    assert {"numpy", "pandas", "scikit-learn", "xgboost"} <= set(report["libraries"])
    assert (report["history"]["days"], report["history"]["seed"]) == (60, 42)
    split = report["split"]
    assert (split["train_days"], split["delay_days"], split["test_days"]) == (21, 7, 7)
    for entry in report["algorithms"].values():
        assert list(entry["metrics"]) == list(JSON_KEYS)
        assert entry["details"]["seconds"] > 0
        assert entry["details"]["recall_by_fraud_type"]
        calibration = entry["details"]["calibration"]
        assert calibration["method"] in ("isotonic", "platt")
        assert len(calibration["test"]["deciles"]) == 10
        assert set(calibration["held_out"]) == {"isotonic", "platt", "uncalibrated"}


def test_every_plot_the_docs_show_was_written_by_the_run() -> None:
    report = committed_report()
    plots = [p for entry in report["algorithms"].values() for p in entry["plots"]]
    assert len(plots) == 6
    for plot in plots:
        assert (ROOT / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    shown = re.findall(r"\]\((img/backtest_[^)]+)\)", (ROOT / "docs/ml.md").read_text())
    assert sorted(f"docs/{p}" for p in shown) == sorted(plots)


def test_every_column_of_the_tables_has_a_definition_in_ml_doc() -> None:
    script, report = report_script(), committed_report()
    ml_doc = (ROOT / "docs/ml.md").read_text(encoding="utf-8")
    tables = (script.readme_table(report), script.ml_doc_block(report))
    headers = [
        line
        for table in (*tables, script.tuning_block(report))
        for line in table.splitlines()
        if line.startswith("| algorithm")
    ]
    assert len(headers) == 4  # README, the acceptance and calibration tables, the tuned one
    for header in headers:
        for column in [c.strip() for c in header.strip("|").split("|")][1:]:
            assert f"- **{column}**" in ml_doc, f"{column!r} has no definition in docs/ml.md"


@pytest.mark.parametrize(
    ("algo", "key", "value"),
    [
        ("xgboost", "average_precision", 0.1234),
        ("logreg", "recall", 0.4321),
        ("iforest", "card_precision_at_100", 0.0101),
        ("xgboost", "auc_roc", 0.5555),
        ("logreg", "card_precision_at_100_new_cards", 0.2468),
        ("iforest", "budget_precision", 0.1357),
    ],
)
def test_a_changed_figure_changes_both_tables(algo: str, key: str, value: float) -> None:
    """The staleness tests can fail: every figure in the JSON reaches the rendered tables."""
    script, report = report_script(), committed_report()
    changed = copy.deepcopy(report)
    changed["algorithms"][algo]["metrics"][key] = value
    assert script.readme_table(changed) != script.readme_table(report)
    assert script.ml_doc_block(changed) != script.ml_doc_block(report)


def test_replace_block_rewrites_only_between_the_markers() -> None:
    script = report_script()
    text = f"before\n{script.START}\nold\n{script.END}\nafter\n"
    out = script.replace_block(text, "new table", where="x")
    assert out == f"before\n{script.START}\nnew table\n{script.END}\nafter\n"
    assert script.block(out) == "new table"
    with pytest.raises(SystemExit, match=r"no .* block"):
        script.replace_block("no markers here", "new", where="x")


@pytest.mark.parametrize(
    ("part", "key", "value"),
    [("tuned", "average_precision", 0.1234), ("default", "average_precision", 0.4321),
     ("tuned", "card_precision_at_100_new_cards", 0.2222)],
)  # fmt: skip
def test_a_changed_tuning_figure_changes_the_tuning_table(
    part: str, key: str, value: float
) -> None:
    script, report = report_script(), committed_report()
    changed = copy.deepcopy(report)
    changed["tuning"][part]["metrics"][key] = value
    assert script.tuning_block(changed) != script.tuning_block(report)


def test_a_changed_calibration_figure_changes_the_ml_doc() -> None:
    script, report = report_script(), committed_report()
    changed = copy.deepcopy(report)
    changed["algorithms"]["xgboost"]["details"]["calibration"]["test"]["deciles"][9][
        "observed_rate"
    ] = 0.5
    assert script.ml_doc_block(changed) != script.ml_doc_block(report)


def test_without_a_tuned_run_the_docs_say_so() -> None:
    script, report = report_script(), committed_report()
    bare = {k: v for k, v in report.items() if k != "tuning"}
    assert "just report --tune" in script.tuning_block(bare)
    assert "Tuned" not in script.readme_table(bare)
