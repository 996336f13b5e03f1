"""Where training and backtest data come from.

* :func:`rtfd.query.lake_reads.read_training_table` — the default: the enriched Parquet the
  stream wrote (the features that were actually served) joined with the labels Parquet, matured
  transactions only (a DuckDB read, so it lives with the other reads of the lake);
* :func:`read_transactions` — any transactions file (CSV or Parquet) with a label column;
* :func:`simulated_history` — the simulator's offline history, for bootstrapping;
* :func:`labelled_features` — kernel features plus point-in-time merchant risk for a labelled
  history.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rtfd.errors import DataError
from rtfd.features.names import FEATURE_NAMES
from rtfd.progress import Progress, no_progress

if TYPE_CHECKING:
    from rtfd.features.arithmetic import KernelConfig

BACKTEST_COLUMNS = ("transaction_id", "timestamp", "user_id", "merchant_id", "amount", "label")


def read_transactions(
    path: Path | str, *, required: tuple[str, ...] = BACKTEST_COLUMNS
) -> pd.DataFrame:
    """A transactions file (``.parquet``, a Parquet directory, or ``.csv``), sorted by time.

    Timestamps become tz-aware UTC (naive ones are taken as UTC); ids are read as text.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    try:
        if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        elif p.suffix.lower() in (".csv", ".gz") or p.name.endswith(".csv.gz"):
            frame = pd.read_csv(
                p, dtype={"transaction_id": str, "user_id": str, "merchant_id": str}
            )
        else:
            raise DataError(f"{p}: unknown format (use .parquet or .csv)")
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: cannot read it ({e})") from e
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{p}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise DataError(f"{p}: no transactions in it")
    try:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as e:
        raise DataError(f"{p}: unreadable timestamps ({e})") from e
    if "label" in frame.columns and frame["label"].isna().any():
        raise DataError(f"{p}: the label column has missing values")
    for col in ("label", "amount", "lat", "lon"):
        if col in frame.columns:
            try:
                frame[col] = pd.to_numeric(frame[col])
            except (ValueError, TypeError) as e:
                raise DataError(f"{p}: the {col} column is not numeric ({e})") from e
    if "label" in frame.columns:
        frame["label"] = (frame["label"] > 0).astype(np.int8)
    for col in ("transaction_id", "user_id", "merchant_id"):
        if col in frame.columns:
            frame[col] = frame[col].astype(str)
    return frame.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)


def simulated_history(
    days: float,
    *,
    seed: int = 42,
    users: int = 10_000,
    merchants: int = 2_000,
    fraud_rate: float = 0.01,
    start: datetime | None = None,
    time_scale: float = 1.0,
    progress: Progress = no_progress,
) -> pd.DataFrame:
    """A labelled history from the simulator (imported lazily)."""
    from rtfd.generator.history import simulate_history

    return simulate_history(
        days,
        seed=seed,
        users=users,
        merchants=merchants,
        fraud_rate=fraud_rate,
        start=start,
        time_scale=time_scale,
        progress=progress,
    )


def labelled_features(
    history: pd.DataFrame,
    *,
    label_delay_s: float,
    config: KernelConfig | None = None,
) -> pd.DataFrame:
    """Kernel features of a labelled history with point-in-time merchant risk.

    Returns the feature columns plus ``transaction_id``, ``user_id``, ``timestamp`` and
    ``label``, aligned with ``history``'s rows.
    """
    from rtfd.features.arithmetic import DEFAULT_CONFIG
    from rtfd.features.merchant_risk import point_in_time
    from rtfd.features.offline import build_features

    risk = point_in_time(history, label_delay_s=label_delay_s)
    feats = build_features(history, merchant_risk=risk, config=config or DEFAULT_CONFIG)
    for col in ("transaction_id", "user_id", "timestamp", "label"):
        feats[col] = history[col].to_numpy()
    feats["timestamp"] = pd.to_datetime(feats["timestamp"], utc=True)
    return feats


def has_features(frame: pd.DataFrame) -> bool:
    """Whether a frame already holds every feature column (an enriched table)."""
    return all(f in frame.columns for f in FEATURE_NAMES)
