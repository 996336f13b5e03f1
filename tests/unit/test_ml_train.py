"""Training: time-ordered split, every algorithm, the data sources, bootstrap."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtfd.components import State
from rtfd.config import Settings, load_settings
from rtfd.errors import ConfigError, DataError
from rtfd.features import FEATURE_NAMES
from rtfd.ml import models, train
from rtfd.ml.data import labelled_features, simulated_history
from rtfd.ml.metrics import ranking_metrics
from rtfd.ml.registry import Registry
from rtfd.ml.train import ensure_bootstrap_model, resolve_mode_algo, time_split, train_model
from rtfd.query.lake_reads import read_training_table

pytestmark = pytest.mark.unit


@functools.cache
def small_history() -> pd.DataFrame:
    """12 days of 600 cards, 2 % fraud: enough to learn, seconds to build."""
    return simulated_history(
        12,
        seed=7,
        users=600,
        merchants=150,
        fraud_rate=0.02,
        start=datetime(2024, 1, 1, tzinfo=UTC),
    )


@pytest.fixture(autouse=True)
def fewer_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """60 boosting rounds instead of 300 keep the tests fast. IsolationForest keeps its 200
    trees: with 50, its average precision moved by ±0.07 with the forest's seed, more than the
    quality gates below can allow."""
    monkeypatch.setattr(models, "XGB_ROUNDS", 60)


# What each algorithm must reach on small_history() (seed 7) with model seed 42, the settings
# default. Measured on 2026-12-04: the figure at seed 42, then min–max over model seeds
# 42, 1–9 (same data; the forest's and the sampler's randomness is the noise a fixed-seed test
# sees when a library changes its draws), then at seed 42 with one feature family zeroed in the
# kernel's output (velocity / amount / location, a scratch run, never committed). Each gate is
# the minimum over seeds less about 0.02; every algorithm fails at least one gate with any of
# the three families zeroed. ROC AUC saturates near 0.98 here: it catches amount and location,
# not velocity, which the average precision catches.
QUALITY_GATES: dict[str, dict[str, float]] = {
    # ap_last_3000: 0.725, 0.690–0.725; zeroed 0.629 / 0.606 / 0.456
    # validation_auc: 0.988, 0.986–0.990; zeroed 0.987 / 0.961 / 0.953
    "xgboost": {"ap_last_3000": 0.67, "validation_auc": 0.975},
    # ap_last_3000: 0.621, 0.598–0.621; zeroed 0.598 / 0.595 / 0.407
    # validation_auc: 0.984, 0.982–0.984; zeroed 0.981 / 0.962 / 0.920
    # validation_ap: 0.822, 0.810–0.824; zeroed 0.730 / 0.739 / 0.611
    "logreg": {"ap_last_3000": 0.58, "validation_auc": 0.97, "validation_ap": 0.78},
    # ap_last_3000: 0.621, 0.568–0.621; zeroed 0.475 / 0.553 / 0.395
    # validation_auc: 0.967, 0.960–0.971; zeroed 0.966 / 0.946 / 0.865
    "iforest": {"ap_last_3000": 0.54, "validation_auc": 0.95},
}


@pytest.fixture
def settings() -> Settings:
    return load_settings({"label_maturity_days": 2})


@pytest.mark.parametrize("algo", ["xgboost", "logreg", "iforest"])
def test_each_algorithm_trains_registers_and_scores(settings: Settings, algo: str) -> None:
    result = train_model(settings, algo=algo, data=small_history())
    assert result.promoted and result.version == "v0001"
    assert result.mode == ("unsupervised" if algo == "iforest" else "supervised")
    model = Registry(settings.models_dir).load()
    assert model.features == FEATURE_NAMES and model.algo == algo
    feats = labelled_features(small_history().iloc[-3000:], label_delay_s=2 * 86_400)
    scores = model.score(feats)
    assert scores.shape == (3000,) and scores.min() >= 0.0 and scores.max() <= 1.0
    assert scores.dtype == np.float64
    labels = feats["label"].to_numpy()  # 3.6 % fraud
    figures = {
        "ap_last_3000": ranking_metrics(labels, scores)["average_precision"],
        "validation_auc": result.metrics["auc_roc"],
        "validation_ap": result.metrics["average_precision"],
    }
    for name, gate in QUALITY_GATES[algo].items():
        assert figures[name] >= gate, f"{algo} {name} {figures[name]:.3f} < {gate}"
    reasons = model.explain(feats.iloc[:50])
    assert len(reasons) == 50 and all(len(r) <= 3 for r in reasons)
    assert any(reasons) and all(isinstance(p, str) and p for r in reasons for p in r)
    # Every model is calibrated on its validation labels (IsolationForest is still fitted
    # without them); IsolationForest's score is first normalised by the training min and max.
    assert model.calibration is not None
    assert model.calibration["method"] in ("isotonic", "platt")
    assert result.metrics["calibration"]["method"] == model.calibration["method"]
    assert ("min" in model.calibration) == (algo == "iforest")
    if algo == "iforest":
        assert model.calibration["max"] > model.calibration["min"]


def test_flagged_fraud_is_explained_by_what_gives_it_away(settings: Settings) -> None:
    train_model(settings, algo="xgboost", data=small_history())
    model = Registry(settings.models_dir).load()
    history = small_history()
    feats = labelled_features(history, label_delay_s=2 * 86_400)
    card_testing = feats[(history["fraud_type"] == "card_testing").to_numpy()].iloc[-20:]
    reasons = [p for r in model.explain(card_testing) for p in r]
    assert any("merchant" in p or "last 10 minutes" in p or "last hour" in p for p in reasons)


def test_split_is_by_time_never_shuffled() -> None:
    frame = labelled_features(small_history(), label_delay_s=86_400).sample(frac=1, random_state=1)
    tr, va = time_split(frame)
    assert tr["timestamp"].max() <= va["timestamp"].min()
    assert len(va) == pytest.approx(0.25 * len(frame), abs=1)


def test_mode_follows_the_algorithm_and_conflicts_are_errors() -> None:
    r = resolve_mode_algo
    assert r(None, "iforest", default_mode="supervised", default_algo="xgboost") == (
        "unsupervised",
        "iforest",
    )
    assert r("unsupervised", None, default_mode="supervised", default_algo="xgboost") == (
        "unsupervised",
        "iforest",
    )
    assert r(None, None, default_mode="supervised", default_algo="logreg") == (
        "supervised",
        "logreg",
    )
    with pytest.raises(ConfigError, match="unsupervised"):
        r("supervised", "iforest", default_mode="supervised", default_algo="xgboost")


def test_supervised_training_without_fraud_is_a_clear_error(settings: Settings) -> None:
    clean = small_history().assign(label=0)
    with pytest.raises(DataError, match="no fraud label"):
        train_model(settings, algo="xgboost", data=clean)


def _write_enriched(settings: Settings, now: datetime) -> pd.DataFrame:
    """The stream's outputs for the small history: enriched Parquet (no labels) + labels."""
    history = small_history()
    feats = labelled_features(history, label_delay_s=2 * 86_400)
    enriched = pd.concat(
        [history.drop(columns=["label", "fraud_type"]), feats[FEATURE_NAMES]], axis=1
    )
    enriched["fraud_score"] = 0.0
    day = enriched["timestamp"].dt.strftime("%Y-%m-%d")
    for date, part in enriched.groupby(day):
        out = settings.enriched_dir / f"event_date={date}"
        out.mkdir(parents=True)
        part.to_parquet(out / "part-0.parquet", index=False)
        if date == day.iloc[0]:  # a replayed micro-batch left a duplicate file
            part.to_parquet(out / "part-1.parquet", index=False)
    fraud = history[history["label"] == 1]
    settings.labels_dir.mkdir(parents=True)
    pd.DataFrame(
        {
            "transaction_id": fraud["transaction_id"],
            "label": 1,
            "fraud_type": fraud["fraud_type"],
            "reported_at": fraud["timestamp"] + timedelta(hours=1),
        }
    ).to_parquet(settings.labels_dir / "part-0.parquet", index=False)
    return history


def test_default_data_is_enriched_parquet_with_matured_labels(settings: Settings) -> None:
    history = _write_enriched(settings, datetime.now(UTC))
    now = history["timestamp"].max() + timedelta(days=1)
    table = read_training_table(settings, now=now.to_pydatetime())
    matured = history[history["timestamp"] <= now - timedelta(days=2)]
    assert len(table) == len(matured)  # the duplicate file is counted once
    assert table["label"].sum() == matured["label"].sum()
    assert table["timestamp"].is_monotonic_increasing
    result = train_model(settings, algo="xgboost")
    assert "enriched Parquet" in result.source
    assert result.n_train + result.n_validation == len(history)


def test_enriched_data_without_matured_rows_says_what_to_do(settings: Settings) -> None:
    history = _write_enriched(settings, datetime.now(UTC))
    early = (history["timestamp"].min() + timedelta(days=1)).to_pydatetime()
    with pytest.raises(DataError, match="RTFD_LABEL_MATURITY_DAYS"):
        read_training_table(settings, now=early)


def test_a_young_appliance_retrains_on_a_simulated_history_and_says_why(
    settings: Settings,
) -> None:
    """Served rows exist but none has matured yet: the retrain key must still give a model."""
    settings = settings.replace(label_maturity_days=3650)  # nothing has matured
    _write_enriched(settings, datetime.now(UTC))
    messages: list[str] = []
    result = train_model(settings, algo="xgboost", progress=lambda m, f: messages.append(m))
    assert result.source.startswith("simulated history")
    assert "no matured transaction yet" in result.source
    assert any("training on a simulated history instead" in m for m in messages)


def test_missing_enriched_data_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(DataError, match="--bootstrap"):
        read_training_table(settings)


def test_training_from_a_file(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    small_history().to_parquet(path)
    result = train_model(settings, algo="logreg", data=path)
    assert result.source == str(path)
    # A file runs in its own time: no live time-lapse is claimed for it.
    info = Registry(settings.models_dir).info(result.version)
    assert info.time_scale is None


def test_bootstrap_trains_once_from_a_simulated_history(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train, "BOOTSTRAP_DAYS", 10)
    monkeypatch.setattr(train, "BOOTSTRAP_USERS", 500)
    seen: list[float] = []
    version = ensure_bootstrap_model(settings, progress=lambda m, f: seen.append(f or 0.0))
    assert version == "v0001" and Registry(settings.models_dir).current() == "v0001"
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert ensure_bootstrap_model(settings) == "v0001"  # already there: nothing trained
    assert Registry(settings.models_dir).versions() == ["v0001"]
    # Issue 15: the live time-lapse the model was trained for is recorded with it.
    assert Registry(settings.models_dir).info("v0001").time_scale == settings.generator_time_scale


def test_a_model_for_another_time_lapse_is_shown_degraded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model was trained for time-lapse 600 and the generator is set to 3000: the status
    bar's model says so (velocity features would be five times off), and a model trained for
    3000 is running again."""
    from rtfd.supervisor import Supervisor

    monkeypatch.setattr(train, "BOOTSTRAP_DAYS", 10)
    monkeypatch.setattr(train, "BOOTSTRAP_USERS", 500)
    ensure_bootstrap_model(settings)
    faster = settings.replace(generator_time_scale=3000.0)
    sup = Supervisor(faster, with_stream=False, with_generator=False)
    sup._start_model()
    status = sup.statuses()["model"]
    assert status.state == State.DEGRADED
    assert status.detail.startswith("v0001 xgboost supervised thr ")
    assert status.detail.endswith(" · trained for time-lapse 600, generator at 3000: retrain")
    assert "precision ~" not in status.detail  # a promise made for another time-lapse
    train_model(faster, algo="xgboost", bootstrap=True, force=True)
    sup._model_live()
    assert sup.statuses()["model"].state == State.RUNNING


def test_the_live_models_promise_reaches_the_status_bar(settings: Settings) -> None:
    """Issue 14: the status bar's model shows the threshold's expected precision and alerts a
    day, as training measured them on the validation window (calibrated scores)."""
    from rtfd.supervisor import Supervisor

    train_model(settings, algo="xgboost", data=small_history())
    expected = Registry(settings.models_dir).load().expected()
    info = Supervisor(settings, with_stream=False, with_generator=False).model_info()
    assert info is not None and expected.precision is not None
    assert expected.alerts_per_day is not None and expected.alerts_per_day > 0
    assert info.expected_precision == pytest.approx(expected.precision)
    assert info.expected_alerts_per_day == pytest.approx(expected.alerts_per_day)
    assert 0 < info.expected_precision <= 1
    summary = info.summary()
    assert f"precision ~{expected.precision:.0%}" in summary
    assert f"~{expected.alerts_per_day:,.0f} alerts/day" in summary
