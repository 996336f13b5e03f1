"""The training table: served features joined with their effective labels, read with DuckDB
from the Parquet lake (the query package holds every read of the lake; :mod:`rtfd.ml.train`
calls this)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from rtfd.errors import DataError
from rtfd.features.names import FEATURE_NAMES
from rtfd.lake import dataset
from rtfd.query.labels import effective_labels_sql, label_columns

if TYPE_CHECKING:
    from rtfd.config import Settings


def read_training_table(settings: Settings, *, now: datetime | None = None) -> pd.DataFrame:
    """Served features joined with their labels, sorted by event time.

    A transaction counts once its label could no longer change: older than
    ``label_maturity_days`` at ``now``; a matured transaction without a fraud report is
    legitimate. One an analyst labelled counts at once, unless a chargeback disagrees (the
    chargeback wins) or the analyst withdrew it (the rule: :mod:`rtfd.query.labels`). Copies of a
    transaction left by a replayed micro-batch are counted once.
    Raises :class:`DataError` with what to do when there is nothing to train on.
    """
    import duckdb

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
