"""Hyperparameter search: time-ordered folds with the label delay left out, a seed, a time and a
trial budget, progress, and a manifest that says what was searched and found."""

from __future__ import annotations

import functools
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtfd.cli import main
from rtfd.config import Settings, load_settings
from rtfd.errors import ConfigError, DataError
from rtfd.ml import models
from rtfd.ml.data import labelled_features, simulated_history
from rtfd.ml.registry import Registry
from rtfd.ml.train import time_split, train_model
from rtfd.ml.tuning import SPACES, TuneSpec, search_space, time_folds, tune

pytestmark = pytest.mark.unit


@functools.cache
def history() -> pd.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return simulated_history(12, seed=7, users=600, merchants=150, fraud_rate=0.02, start=start)


@functools.cache
def train_part() -> pd.DataFrame:
    """The rows a model is fitted on: the first 75 % of the history's features, by time."""
    train, _ = time_split(labelled_features(history(), label_delay_s=2 * 86_400))
    return train


@pytest.fixture(autouse=True)
def fewer_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 rounds by default (and a space that holds it): a trial costs a fraction of a second."""
    monkeypatch.setattr(models, "XGB_ROUNDS", 30)
    monkeypatch.setitem(SPACES["xgboost"], "rounds", ("int", 20, 80, 10))


@pytest.fixture
def settings() -> Settings:
    return load_settings({"label_maturity_days": 2})


def _times(days: float, n: int, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0.0, days * 86_400.0, n))
    return pd.Series(pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(offsets, unit="s"))


@pytest.mark.parametrize(
    ("days", "folds", "delay_days"),
    [(15.75, 3, 7.0), (9.0, 3, 2.0), (30.0, 5, 0.0), (4.0, 2, 0.01), (2.0, 3, 7.0)],
)
def test_folds_expand_in_time_with_the_label_delay_left_out(
    days: float, folds: int, delay_days: float
) -> None:
    ts = _times(days, 20_000, seed=int(days * 10))
    out, gap_s = time_folds(ts, folds=folds, label_delay_s=delay_days * 86_400)
    window_s = (ts.iloc[-1] - ts.iloc[0]).total_seconds()
    assert gap_s == pytest.approx(min(delay_days * 86_400, window_s / 2), rel=1e-6)
    assert len(out) == folds
    seconds = (ts - ts.iloc[0]).dt.total_seconds().to_numpy()
    for k, fold in enumerate(out):
        train_t, val_t = seconds[fold.train], seconds[fold.validation]
        # Expanding: every fold trains on everything from the start up to its end.
        assert fold.train[0] == 0 and np.array_equal(fold.train, np.arange(len(fold.train)))
        if k:
            assert len(fold.train) > len(out[k - 1].train)
        # The label delay separates train and validation; validation never precedes it.
        assert val_t.min() - train_t.max() >= gap_s * (1 - 1e-9)
        assert (fold.validation_start - fold.train_end).total_seconds() == pytest.approx(gap_s)
        if k:
            assert val_t.min() >= seconds[out[k - 1].validation].max()
    # The validation parts tile the end of the window: the last reaches its last row.
    assert out[-1].validation[-1] == len(ts) - 1
    lengths = [(f.validation_end - f.validation_start).total_seconds() for f in out]
    assert max(lengths) == pytest.approx(min(lengths), rel=1e-6)


def test_folds_refuse_rows_out_of_time_order() -> None:
    ts = _times(5.0, 1000, seed=1).sample(frac=1.0, random_state=3)
    with pytest.raises(ValueError, match="time order"):
        time_folds(ts, folds=3, label_delay_s=3600)


def test_the_search_starts_from_the_defaults_and_never_ends_worse(settings: Settings) -> None:
    messages: list[tuple[str, float | None]] = []
    result = tune(
        train_part(),
        algo="xgboost",
        label_delay_s=2 * 86_400,
        spec=TuneSpec(budget_s=300, trials=8, seed=42),
        progress=lambda m, f: messages.append((m, f)),
    )
    assert result.defaults == {
        name: models.default_params("xgboost")[name] for name in SPACES["xgboost"]
    }
    assert result.best_score >= result.default_score
    assert len(result.best_fold_scores) == 3 == len(result.folds)
    assert all(0.0 < s <= 1.0 for s in result.best_fold_scores)
    assert result.trials + result.trials_pruned == 8 and result.stopped_by == "trials"
    assert set(result.best_params) == set(SPACES["xgboost"])
    for name, entry in search_space("xgboost").items():
        assert entry["low"] <= result.best_params[name] <= entry["high"], name
    # Progress: every trial reported, fractions in [0, 1] and never going back.
    trial_lines = [m for m, _ in messages if "trial" in m and "fold" not in m]
    assert len(trial_lines) == 8 and "best" in trial_lines[-1]
    fractions = [f for _, f in messages if f is not None]
    assert fractions == sorted(fractions) and fractions[0] >= 0.0 and fractions[-1] <= 1.0
    doc = json.loads(json.dumps(result.to_dict()))  # JSON as the manifest stores it
    assert doc["best_params"] == result.best_params and doc["budget"]["seed"] == 42


def test_the_same_seed_finds_the_same_parameters() -> None:
    def run(seed: int) -> dict[str, object]:
        spec = TuneSpec(budget_s=300, trials=5, seed=seed)
        return tune(train_part(), algo="logreg", label_delay_s=2 * 86_400, spec=spec).best_params

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_the_time_budget_stops_the_search() -> None:
    started = time.monotonic()
    result = tune(
        train_part(),
        algo="xgboost",
        label_delay_s=2 * 86_400,
        spec=TuneSpec(budget_s=1.0, trials=10_000),
    )
    assert result.stopped_by == "time"
    assert result.trials >= 1 and result.trials + result.trials_pruned < 10_000
    # The defaults always run in full; past the budget, a trial stops at its next fold.
    one_trial = result.seconds / max(result.trials + result.trials_pruned, 1)
    assert time.monotonic() - started < 1.0 + 10 * one_trial + 5.0


def test_logistic_regression_tunes_its_c() -> None:
    result = tune(
        train_part(),
        algo="logreg",
        label_delay_s=2 * 86_400,
        spec=TuneSpec(budget_s=300, trials=6),
    )
    assert result.space["C"]["type"] == "float_log"
    assert 1e-3 <= result.best_params["C"] <= 100.0
    assert result.defaults["C"] == 1.0


def test_folds_without_fraud_are_a_clear_error() -> None:
    train = train_part().copy()
    cut = train["timestamp"].iloc[len(train) // 2]
    train.loc[train["timestamp"] > cut, "label"] = 0  # no fraud in the newer half
    with pytest.raises(DataError, match="no fraud"):
        tune(train, algo="xgboost", label_delay_s=86_400, spec=TuneSpec(trials=2))


def test_unsupervised_models_cannot_be_tuned() -> None:
    with pytest.raises(ConfigError, match="xgboost, logreg"):
        search_space("iforest")


def test_train_tune_records_the_search_in_the_manifest(settings: Settings) -> None:
    messages: list[str] = []
    result = train_model(
        settings,
        algo="xgboost",
        data=history(),
        tune=TuneSpec(budget_s=300, trials=6, seed=9),
        progress=lambda m, f: messages.append(m),
    )
    manifest = Registry(settings.models_dir).manifest(result.version)
    t = manifest["tuning"]
    for key in ("space", "best_params", "best_fold_scores", "trials", "seconds", "folds"):
        assert t[key] is not None, key
    assert t["trials"] + t["trials_pruned"] == 6 and t["budget"]["seed"] == 9
    assert t["gap_s"] == t["label_delay_s"] == 2 * 86_400
    assert manifest["params"] == {**models.default_params("xgboost"), **t["best_params"]}
    assert result.metrics["tuned"] is True and result.extra["tuning"] == t
    # Every fold lies inside the training part, before the validation window.
    validation_start = pd.Timestamp(manifest["data"]["validation_start"])
    for fold in t["folds"]:
        assert pd.Timestamp(fold["validation"][1]) <= validation_start
        gap = pd.Timestamp(fold["validation"][0]) - pd.Timestamp(fold["train"][1])
        assert gap >= timedelta(days=2) - timedelta(seconds=1)
    assert any(m.startswith("tuning xgboost: trial") for m in messages)


def test_the_cli_tunes_and_refuses_what_it_cannot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = str(tmp_path / "history.parquet")
    history().to_parquet(path)
    assert main(["train", "--data", path, "--tune", "--trials", "3", "--budget-s", "120"]) == 0
    out = capsys.readouterr()
    assert "tuned: " in out.out and "time-ordered folds" in out.out
    assert "tuning xgboost: trial" in out.err
    assert main(["train", "--data", path, "--budget-s", "10"]) == 2
    assert "add --tune" in capsys.readouterr().err
    assert main(["train", "--data", path, "--algo", "iforest", "--tune"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not iforest" in err
    for bad in (["--budget-s", "nan"], ["--budget-s", "-5"], ["--trials", "0"], ["--trials", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main(["train", "--data", path, "--tune", *bad])
        assert exit_.value.code == 2 and bad[0] in capsys.readouterr().err
