"""A real model and a real Parquet lake for the monitor's tests.

One XGBoost model is trained (for real, through :func:`rtfd.ml.train.train_model`) on a small
simulated history once per session and copied into each test's registry; the lake is the same
history with its served features, scored by that model and written as the stream writes it
(Hive-partitioned enriched Parquet, a labels file), with ``processed_at`` set by the test.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from rtfd.config import Settings, load_settings
from rtfd.features.names import FEATURE_NAMES

NOW = datetime(2024, 1, 20, 12, 0, tzinfo=UTC)


@functools.cache
def history() -> pd.DataFrame:
    """12 days of 600 cards, 2 % fraud, with their features (what the stream would serve)."""
    from rtfd.ml.data import labelled_features, simulated_history

    raw = simulated_history(
        12,
        seed=7,
        users=600,
        merchants=150,
        fraud_rate=0.02,
        start=datetime(2024, 1, 1, tzinfo=UTC),
    )
    feats = labelled_features(raw, label_delay_s=2 * 86_400)
    return pd.concat([raw, feats[FEATURE_NAMES]], axis=1)


@functools.cache
def _trained() -> Path:
    """The registry directory of one real training on :func:`history` (60 boosting rounds)."""
    from rtfd.ml import models
    from rtfd.ml.train import train_model

    home = Path(tempfile.mkdtemp(prefix="rtfd-monitor-model-"))
    settings = load_settings({"home": str(home)})
    settings.ensure_dirs()
    rounds = models.XGB_ROUNDS
    models.XGB_ROUNDS = 60
    try:
        train_model(settings, algo="xgboost", data=history(), force=True)
    finally:
        models.XGB_ROUNDS = rounds
    return settings.models_dir


def install_model(settings: Settings) -> str:
    """Copy the trained registry into ``settings``; returns the live version."""
    shutil.copytree(_trained(), settings.models_dir, dirs_exist_ok=True)
    return "v0001"


def training_rows() -> pd.DataFrame:
    """The rows the model was fitted on (the first 75 % by time, as train_model splits)."""
    from rtfd.ml.train import time_split

    return time_split(history())[0]


def scored(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """``frame`` with the live model's score, alert flag and version, as the stream adds them."""
    from rtfd.ml.registry import Registry

    model = Registry(settings.models_dir).load()
    out = frame.drop(columns=["label", "fraud_type"], errors="ignore").copy()
    out["fraud_score"] = model.score(out[FEATURE_NAMES])
    out["is_fraud"] = out["fraud_score"] >= model.threshold
    out["model_version"] = model.version
    return out


def write_enriched(
    settings: Settings,
    frame: pd.DataFrame,
    processed_at: pd.Series | Callable[[int], pd.Series] | None = None,
    *,
    name: str = "part-0",
) -> None:
    """Write scored rows as the stream's sink does; ``processed_at`` defaults to the last
    hour before :data:`NOW`, spread evenly."""
    out = frame.copy()
    if processed_at is None:
        offsets = np.linspace(3599, 0, len(out))
        out["processed_at"] = NOW - pd.to_timedelta(offsets, unit="s")
    elif callable(processed_at):
        out["processed_at"] = processed_at(len(out))
    else:
        out["processed_at"] = processed_at.to_numpy()
    out["processed_at"] = pd.to_datetime(out["processed_at"], utc=True).dt.floor("ms")
    day = pd.to_datetime(out["timestamp"], utc=True).dt.strftime("%Y-%m-%d")
    for date, part in out.groupby(day):
        target = settings.enriched_dir / f"event_date={date}"
        target.mkdir(parents=True, exist_ok=True)
        part.to_parquet(target / f"{name}.parquet", index=False)


def write_labels(settings: Settings, records: list[dict[str, object]], *, name: str) -> None:
    """One labels file; a record without ``source`` is written without the column when none
    of them has it (an older producer's file)."""
    settings.labels_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(records)
    frame["reported_at"] = pd.to_datetime(frame["reported_at"], utc=True)
    frame.to_parquet(settings.labels_dir / f"{name}.parquet", index=False)


def at(days: float = 0.0, hours: float = 0.0) -> datetime:
    """:data:`NOW` less some days and hours."""
    return NOW - timedelta(days=days, hours=hours)
