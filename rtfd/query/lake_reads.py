"""The library's own DuckDB reads of the Parquet lake (the SQL panel's are in :mod:`.service`).

* :func:`read_training_table` — the served features joined with their labels, for training;
* :func:`refresh_from_parquet` — the stream's merchant risk table, rebuilt from the labels and
  the enriched Parquet.

Both read the files a reader should see (:func:`rtfd.lake.visible_files`: each row once, even
during a compaction), never a glob. The computation on what they read stays in the feature and
ML packages, which do no I/O.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rtfd.errors import DataError
from rtfd.features.merchant_risk import DEFAULT_PERIOD_S, MerchantRiskTable, refresh_window
from rtfd.features.names import FEATURE_NAMES

if TYPE_CHECKING:
    from rtfd.config import Settings

log = logging.getLogger(__name__)

# Every read of a Parquet dataset: partition columns from the directory names, and files of
# older feature versions read side by side (missing columns are NULL).
_SCAN = "read_parquet({param}, hive_partitioning = true, union_by_name = true)"


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

    from rtfd.lake import visible_files
    from rtfd.query.labels import effective_labels_sql, label_columns

    enriched = visible_files(settings.enriched_dir)
    if not enriched:
        raise DataError(
            f"no enriched Parquet under {settings.enriched_dir}: run the stream first, or "
            "train on a file with --data, or bootstrap from a simulated history with --bootstrap"
        )
    labels = visible_files(settings.labels_dir)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.label_maturity_days)
    con = duckdb.connect()
    try:
        columns = {
            row[0]
            for row in con.execute(
                f"DESCRIBE SELECT * FROM {_SCAN.format(param='$p')}", {"p": enriched}
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
                FROM {_SCAN.format(param="$p")}
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


def refresh_from_parquet(
    settings: Settings,
    *,
    now: datetime | None = None,
    label_delay_s: float | None = None,
    period_s: float = DEFAULT_PERIOD_S,
) -> MerchantRiskTable:
    """Rebuild the stream's merchant risk table with DuckDB from the labels and enriched Parquet.

    ``now`` defaults to the current time, aligned down to the period; the label delay defaults to
    ``settings.label_maturity_days``. Missing or empty directories give an empty (neutral) table.
    A label counts only if it was reported by ``now``; enriched rows are de-duplicated by
    transaction_id (a replayed micro-batch can leave a second copy).
    """
    import duckdb

    from rtfd.lake import visible_files
    from rtfd.query.labels import chargeback_labels_sql, label_columns

    delay_s = settings.label_maturity_days * 86_400.0 if label_delay_s is None else label_delay_s
    window = refresh_window(now or datetime.now(UTC), label_delay_s=delay_s, period_s=period_s)
    enriched = visible_files(settings.enriched_dir)
    if not enriched:
        log.info("merchant risk: no enriched Parquet under %s yet", settings.enriched_dir)
        return MerchantRiskTable.empty(label_delay_s=delay_s, period_s=period_s, as_of=window.as_of)
    labels = visible_files(settings.labels_dir)
    con = duckdb.connect()
    try:
        # Chargebacks only: analysts' labels are not in the offline point-in-time risk either.
        label_cte = (
            chargeback_labels_sql(
                label_columns(con, labels),
                param="labels",
                where="reported_at <= make_timestamptz($as_of * 1000)",
            )
            if labels
            else "SELECT NULL::VARCHAR AS transaction_id, NULL::INTEGER AS label WHERE false"
        )
        sql = f"""
            WITH raw AS (
                SELECT transaction_id, merchant_id, CAST(timestamp AS TIMESTAMPTZ) AS ts
                FROM {_SCAN.format(param="$enriched")}
            ), tx AS (
                SELECT transaction_id, any_value(merchant_id) AS merchant_id,
                       epoch_ms(any_value(ts)) AS ts
                FROM raw
                WHERE ts >= make_timestamptz($lo * 1000) AND ts < make_timestamptz($hi * 1000)
                GROUP BY transaction_id
            ), lb AS ({label_cte})
            SELECT tx.merchant_id, (tx.ts // $period)::BIGINT AS bucket, count(*) AS vol,
                   sum(coalesce(lb.label, 0))::BIGINT AS fraud
            FROM tx LEFT JOIN lb USING (transaction_id)
            GROUP BY 1, 2
        """
        params: dict[str, Any] = {
            "enriched": enriched,
            "lo": window.lo_ms,
            "hi": window.hi_ms,
            "period": window.period_ms,
        }
        if labels:  # DuckDB refuses parameters the SQL does not use: only with the labels' CTE
            params["labels"] = labels
            params["as_of"] = window.as_of_ms
        agg = con.execute(sql, params).df()
    finally:
        con.close()
    return MerchantRiskTable.from_aggregates(
        agg["merchant_id"].astype(str).to_numpy(dtype=object),
        agg["bucket"].to_numpy(dtype=np.int64),
        agg["vol"].to_numpy(dtype=np.int64),
        agg["fraud"].to_numpy(dtype=np.int64),
        label_delay_s=delay_s,
        period_s=period_s,
        as_of=window.as_of,
    )
