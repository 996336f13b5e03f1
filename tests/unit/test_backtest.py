"""Backtests: windows, the label delay, the report, the CLI on any transactions file."""

from __future__ import annotations

import functools
import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtfd.cli import main
from rtfd.errors import DataError
from rtfd.ml import models
from rtfd.ml.backtest import JSON_KEYS, make_windows, run_backtest
from rtfd.ml.data import simulated_history
from rtfd.ml.tuning import TuneSpec

pytestmark = pytest.mark.unit


@functools.cache
def history() -> pd.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return simulated_history(14, seed=3, users=600, merchants=150, fraud_rate=0.02, start=start)


@pytest.fixture(autouse=True)
def fewer_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """60 boosting rounds instead of 300 keep the tests fast; IsolationForest keeps its 200
    trees (with 50 its figures move with the forest's seed more than the gates allow)."""
    monkeypatch.setattr(models, "XGB_ROUNDS", 60)


# What each algorithm must reach on history() (seed 3; 7 days train, 2 delay, 3 test: 1.65 %
# fraud), model seed 42. Measured on 2026-12-04: the figure at seed 42, min–max over model seeds
# 42, 1–9 on the same data, then at seed 42 with one feature family zeroed in the kernel's output
# (velocity / amount / location; a scratch run, never committed). Each gate is the minimum over
# seeds less 0.01–0.04; zeroing the velocity features fails every gate.
QUALITY_GATES: dict[str, dict[str, float]] = {
    # average_precision: 0.653, 0.653–0.699; zeroed 0.548 / 0.505 / 0.509
    # auc_roc: 0.976, 0.970–0.976; zeroed 0.949 / 0.920 / 0.960
    "xgboost": {"average_precision": 0.62, "auc_roc": 0.96},
    # average_precision: 0.627, 0.593–0.629; zeroed 0.350 / 0.552 / 0.601
    # auc_roc: 0.945, 0.937–0.948; zeroed 0.911 / 0.898 / 0.940
    "iforest": {"average_precision": 0.55, "auc_roc": 0.925},
}


def test_default_windows_end_with_the_data() -> None:
    ts = history()["timestamp"]
    w = make_windows(ts, train_start=None, train_days=7, delay_days=2, test_days=3)
    assert w.test_end == pd.Timestamp("2024-01-15", tz="UTC")
    assert (w.test_start, w.train_end, w.train_start) == (
        pd.Timestamp("2024-01-12", tz="UTC"),
        pd.Timestamp("2024-01-10", tz="UTC"),
        pd.Timestamp("2024-01-03", tz="UTC"),
    )
    explicit = make_windows(
        ts, train_start=date(2024, 1, 2), train_days=5, delay_days=1, test_days=2
    )
    assert explicit.test_end == pd.Timestamp("2024-01-10", tz="UTC")
    with pytest.raises(DataError, match="before the data"):
        make_windows(ts, train_start=None, train_days=20, delay_days=2, test_days=3)


@pytest.mark.parametrize("algo", ["xgboost", "iforest"])
def test_backtest_reports_holdout_metrics_and_plots(algo: str, tmp_path: Path) -> None:
    result = run_backtest(
        history(), train_days=7, delay_days=2, test_days=3, algo=algo, plots_dir=tmp_path
    )
    assert list(result.to_json()) == list(JSON_KEYS)
    m = result.metrics
    w = result.windows
    ts = history()["timestamp"]
    assert m["n_train"] == ((ts >= w.train_start) & (ts < w.train_end)).sum()
    assert m["n_test"] == ((ts >= w.test_start) & (ts < w.test_end)).sum()
    for name, gate in QUALITY_GATES[algo].items():
        assert m[name] >= gate, f"{algo} {name} {m[name]:.3f} < {gate}"
    assert m["auc_roc"] <= 1.0
    assert 0.0 <= m["card_precision_at_100"] <= 1.0
    assert 0.0 <= m["card_precision_at_100_new_cards"] <= 1.0
    assert 0.0 < m["budget_precision"] <= 1.0
    assert 0.0 <= m["brier"] < 0.05
    d = result.details
    per_day = ts[(ts >= w.test_start) & (ts < w.test_end)].dt.floor("D").value_counts()
    assert d["budget_alerts_per_day"] == pytest.approx(np.mean(np.floor(5.0 * per_day / 1000)))
    assert d["calibration"]["test"]["brier"] == m["brier"]
    assert 0.0 < m["threshold"] <= 1.0
    assert {p.name for p in result.plots} == {
        f"backtest_{algo}_pr.png",
        f"backtest_{algo}_scores.png",
    }
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result.plots)


def test_backtest_cli_on_a_csv_without_location(tmp_path: Path) -> None:
    cols = ["transaction_id", "timestamp", "user_id", "merchant_id", "amount", "label"]
    frame = history()[cols].copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    csv = tmp_path / "tx.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "report.json"
    code = main(
        [
            "backtest", "--data", str(csv), "--train-days", "7", "--delay-days", "2",
            "--test-days", "3", "--algo", "logreg", "--json", str(out),
            "--plots", str(tmp_path / "plots"),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert list(report) == list(JSON_KEYS)
    # Logistic regression without locations, model seed 42 (the settings default). Measured on
    # 2026-12-04 as QUALITY_GATES above: average precision 0.564, 0.550–0.568 over model seeds,
    # 0.201 / 0.477 with velocity / amount features zeroed (locations are absent already);
    # ROC AUC 0.929, 0.927–0.931, zeroed 0.855 / 0.850.
    assert report["average_precision"] >= 0.50
    assert report["auc_roc"] >= 0.91


def test_backtest_cli_refuses_a_file_without_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "tx.csv"
    history().drop(columns=["label"]).iloc[:100].to_csv(csv, index=False)
    assert main(["backtest", "--data", str(csv)]) == 2
    assert "missing column(s) label" in capsys.readouterr().err


def test_a_tuned_backtest_searches_only_before_its_validation_and_test_windows() -> None:
    result = run_backtest(
        history(), train_days=7, delay_days=2, test_days=3, algo="xgboost",
        tune=TuneSpec(budget_s=300, trials=4, seed=1),
    )  # fmt: skip
    t = result.details["tuning"]
    w = result.windows
    # Folds lie in the fitting part: the first 75 % of the train window, by time.
    ts = history()["timestamp"]
    train_ts = ts[(ts >= w.train_start) & (ts < w.train_end)].sort_values()
    validation_start = train_ts.iloc[round(len(train_ts) * 0.75)]
    window_s = (train_ts.iloc[round(len(train_ts) * 0.75) - 1] - train_ts.iloc[0]).total_seconds()
    for fold in t["folds"]:
        assert pd.Timestamp(fold["validation"][1]) <= validation_start < w.test_start
    # The gap is the backtest's delay (2 days: less than half the 5.25-day fitting part).
    assert t["label_delay_s"] == 2 * 86_400
    assert window_s > 4 * 86_400 and t["gap_s"] == 2 * 86_400
    assert t["trials"] + t["trials_pruned"] == 4
    assert result.details["params"] == {**models.default_params("xgboost"), **t["best_params"]}
    assert list(result.to_json()) == list(JSON_KEYS)


def test_backtest_cli_tune_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tx.parquet"
    history().to_parquet(path)
    args = ["backtest", "--data", str(path), "--train-days", "7", "--delay-days", "2",
            "--test-days", "3", "--plots", str(tmp_path / "plots")]  # fmt: skip
    assert main([*args, "--algo", "logreg", "--tune", "--trials", "3"]) == 0
    out = capsys.readouterr().out
    assert "tuned: 3 trials" in out or "tuned: " in out
    assert "card_precision_at_100_new_cards" in out and "calibration: " in out
    assert main([*args, "--trials", "3"]) == 2
    assert "add --tune" in capsys.readouterr().err
    assert main([*args, "--algo", "iforest", "--tune"]) == 2
    assert "not iforest" in capsys.readouterr().err
