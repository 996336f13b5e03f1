"""The stream's merchant-risk table, rebuilt with DuckDB from the Parquet lake.

The table and its arithmetic are pure (:mod:`rtfd.features.merchant_risk`); reading the lake is
the query package's job, so the feature package does no I/O.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from rtfd.features.merchant_risk import (
    DAY_MS,
    DEFAULT_PERIOD_S,
    RISK_WINDOWS_DAYS,
    MerchantRiskTable,
)
from rtfd.features.timeutil import timestamp_ms
from rtfd.lake import dataset
from rtfd.query.labels import chargeback_labels_sql, label_columns

if TYPE_CHECKING:
    from rtfd.config import Settings

log = logging.getLogger(__name__)


def refresh_from_parquet(
    settings: Settings,
    *,
    now: datetime | None = None,
    label_delay_s: float | None = None,
    period_s: float = DEFAULT_PERIOD_S,
) -> MerchantRiskTable:
    """Rebuild the stream's table with DuckDB from the labels and enriched Parquet.

    ``now`` defaults to the current time, aligned down to the period; the label delay defaults to
    ``settings.label_maturity_days``. Missing or empty directories give an empty (neutral) table.
    A label counts only if it was reported by ``now``; enriched rows are de-duplicated by
    transaction_id (a replayed micro-batch can leave a second copy).
    """
    delay_s = settings.label_maturity_days * 86_400.0 if label_delay_s is None else label_delay_s
    period_ms = round(period_s * 1000)
    now_ms = timestamp_ms(now or datetime.now(UTC))
    as_of_ms = (now_ms // period_ms) * period_ms
    as_of = datetime.fromtimestamp(as_of_ms / 1000, tz=UTC)
    delay_ms = -(-round(delay_s * 1000) // period_ms) * period_ms
    hi_ms = as_of_ms - delay_ms
    lo_ms = hi_ms - max(RISK_WINDOWS_DAYS) * DAY_MS
    enriched = dataset(settings.enriched_dir)
    if enriched is None:
        log.info("merchant risk: no enriched Parquet under %s yet", settings.enriched_dir)
        return MerchantRiskTable.empty(label_delay_s=delay_s, period_s=period_s, as_of=as_of)
    labels = dataset(settings.labels_dir)
    # Chargebacks only: analysts' labels are not in the offline point-in-time risk either.
    label_cte = (
        chargeback_labels_sql(
            _label_columns(labels),
            param="labels",
            where="reported_at <= make_timestamptz($as_of * 1000)",
        )
        if labels
        else "SELECT NULL::VARCHAR AS transaction_id, NULL::INTEGER AS label WHERE false"
    )
    sql = f"""
        WITH raw AS (
            SELECT transaction_id, merchant_id, CAST(timestamp AS TIMESTAMPTZ) AS ts
            FROM read_parquet($enriched, hive_partitioning = true, union_by_name = true)
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
        "lo": lo_ms,
        "hi": hi_ms,
        "period": period_ms,
    }
    if labels:  # DuckDB refuses parameters the SQL does not use: only with the labels' CTE
        params["labels"] = labels
        params["as_of"] = as_of_ms
    con = duckdb.connect()
    try:
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
        as_of=as_of,
    )


def _label_columns(files: list[str]) -> set[str]:
    """The columns of the labels Parquet (older files lack ``source`` and ``withdrawn``)."""
    con = duckdb.connect()
    try:
        return label_columns(con, files)
    finally:
        con.close()
