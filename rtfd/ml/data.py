"""Where training and backtest data come from.

* :func:`read_training_table` — the default: the enriched Parquet the stream wrote (the features
  that were actually served) joined with the labels Parquet, matured transactions only;
* :func:`read_transactions` — any transactions file (CSV or Parquet) with a label column;
* :func:`simulated_history` — the simulator's offline history, for bootstrapping;
* :func:`labelled_features` — kernel features plus point-in-time merchant risk for a labelled
  history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rtfd.errors import DataError
from rtfd.features.names import FEATURE_NAMES
from rtfd.ml.progress import Progress, no_progress

if TYPE_CHECKING:
    from rtfd.config import Settings
    from rtfd.features.arithmetic import KernelConfig

BACKTEST_COLUMNS = ("transaction_id", "timestamp", "user_id", "merchant_id", "amount", "label")


def read_training_table(settings: Settings, *, now: datetime | None = None) -> pd.DataFrame:
    """Served features joined with their labels, sorted by event time.

    A transaction counts once its label could no longer change: older than
    ``label_maturity_days`` at ``now``; a matured transaction without a fraud report is
    legitimate. One an analyst labelled counts at once, unless a chargeback disagrees (the
    chargeback wins) or the analyst withdrew it (the rule: :mod:`rtfd.labels`). Copies of a
    transaction left by a replayed micro-batch are counted once.
    Raises :class:`DataError` with what to do when there is nothing to train on.
    """
    import duckdb

    from rtfd.labels import effective_labels_sql, label_columns
    from rtfd.lake import dataset

    enriched = dataset(settings.enriched_dir)
    if enriched is None:
        raise DataError(
            f"no enriched Parquet under {settings.enriched_dir}: run the stream first, or "
            "train on a file with --data, or bootstrap from a simulated history with --bootstrap"
        )
    labels = dataset(settings.labels_dir)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.label_maturity_days)
    con = duckdb.connect()
    try:
        columns = {
            row[0]
            for row in con.execute(
                "DESCRIBE SELECT * FROM read_parquet($p, hive_partitioning = true, "
                "union_by_name = true)",
                {"p": enriched},
            ).fetchall()
        }
        needed = ("transaction_id", "user_id", "timestamp", *FEATURE_NAMES)
        missing = [c for c in needed if c not in columns]
        if missing:
            raise DataError(
                f"the enriched Parquet lacks column(s) {', '.join(missing[:5])}: it was written "
                "by another feature version; train on a file with --data instead"
            )
        label_sql = (
            effective_labels_sql(label_columns(con, labels))
            if labels
            else "SELECT NULL::VARCHAR AS transaction_id, NULL::INTEGER AS label, "
            "NULL::BOOLEAN AS analyst_labelled WHERE false"
        )
        feats = ", ".join(f'any_value("{f}") AS "{f}"' for f in FEATURE_NAMES)
        sql = f"""
            WITH tx AS (
                SELECT transaction_id, any_value(user_id) AS user_id,
                       any_value(CAST(timestamp AS TIMESTAMPTZ)) AS timestamp, {feats}
                FROM read_parquet($p, hive_partitioning = true, union_by_name = true)
                GROUP BY transaction_id
            ), lb AS ({label_sql})
            SELECT tx.*, coalesce(lb.label, 0)::TINYINT AS label
            FROM tx LEFT JOIN lb USING (transaction_id)
            WHERE tx.timestamp <= $cutoff OR lb.analyst_labelled
            ORDER BY tx.timestamp, tx.transaction_id
        """
        params: dict[str, object] = {"p": enriched, "cutoff": cutoff}
        if labels:
            params["l"] = labels
        frame = con.execute(sql, params).df()
    except duckdb.Error as e:
        raise DataError(f"cannot read the enriched or labels Parquet: {e}") from e
    finally:
        con.close()
    if frame.empty:
        raise DataError(
            f"no matured transaction yet (older than label_maturity_days="
            f"{settings.label_maturity_days:g}): wait, or lower RTFD_LABEL_MATURITY_DAYS"
        )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


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
        progress=lambda f: progress(f"simulating {days:g} days of traffic", f),
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
