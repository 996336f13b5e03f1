"""Backtests: windows, the label delay, the report, the CLI on any transactions file."""

from __future__ import annotations

import functools
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from rtfd.cli import main
from rtfd.errors import DataError
from rtfd.ml import models
from rtfd.ml.backtest import JSON_KEYS, make_windows, run_backtest
from rtfd.ml.data import simulated_history

pytestmark = pytest.mark.unit


@functools.cache
def history() -> pd.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return simulated_history(14, seed=3, users=600, merchants=150, fraud_rate=0.02, start=start)


@pytest.fixture(autouse=True)
def fewer_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "XGB_ROUNDS", 60)
    monkeypatch.setattr(models, "IFOREST_TREES", 50)


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
    fraud_rate = result.details["fraud_rate_test"]
    assert m["average_precision"] > 5 * fraud_rate
    assert 0.5 < m["auc_roc"] <= 1.0
    assert 0.0 <= m["card_precision_at_100"] <= 1.0
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
    assert report["average_precision"] > 0.05


def test_backtest_cli_refuses_a_file_without_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "tx.csv"
    history().drop(columns=["label"]).iloc[:100].to_csv(csv, index=False)
    assert main(["backtest", "--data", str(csv)]) == 2
    assert "missing column(s) label" in capsys.readouterr().err
