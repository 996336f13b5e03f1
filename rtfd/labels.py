"""Which label a transaction has, when chargebacks and analysts both speak.

``fraud_labels`` carries two kinds of LABEL record (:data:`rtfd.schemas.LABEL`):

* **chargebacks** (``source = "chargeback"``, or no ``source``: every producer before analyst
  labels existed) — the card network's verdict, days after the payment;
* **analyst decisions** (``source = "analyst"``) — someone triaging an alert confirmed it
  (``label = 1``) or cleared it as a false positive (``label = 0``), seconds after it; an undo is a
  record with ``retracted = true`` that withdraws the analyst's decision.

The rule, in one place for training (:func:`effective_labels_sql`, used by
:func:`rtfd.ml.data.read_training_table`) and for the case screen (:func:`effective_label`):

1. a chargeback wins: if any chargeback record exists, the label is the highest of them, whatever
   an analyst said before or after (it is the ground truth the analyst was guessing);
2. otherwise the analyst's latest record decides (by ``reported_at``, then Kafka offset): its label,
   or no label at all when that latest record is an undo;
3. otherwise there is no label (training then counts a matured transaction as legitimate).

Merchant-risk features count chargebacks only (:func:`chargeback_filter`): they are defined, and
computed offline, from matured chargebacks, and an analyst's guess must not move them.

Nothing here imports DuckDB: these functions build SQL text over columns the caller checked
(:func:`parquet_columns`, on the caller's connection).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rtfd.schemas import LabelSource, parse_timestamp

#: Columns of the labels Parquet this module reads when present (older lakes lack some).
OPTIONAL_COLUMNS = ("source", "retracted", "kafka_partition", "kafka_offset")


def parquet_columns(con: Any, files: list[str]) -> set[str]:
    """Column names of a Parquet dataset (every file's, by name) on a DuckDB connection."""
    rows = con.execute(
        "DESCRIBE SELECT * FROM read_parquet($files, hive_partitioning = true, "
        "union_by_name = true)",
        {"files": files},
    ).fetchall()
    return {row[0] for row in rows}


def chargeback_filter(columns: Iterable[str]) -> str:
    """A SQL condition true for chargeback rows of the labels Parquet with these columns."""
    if "source" not in set(columns):
        return "true"
    return f"coalesce(\"source\", '{LabelSource.CHARGEBACK}') <> '{LabelSource.ANALYST}'"


def effective_labels_sql(columns: Iterable[str], source: str) -> str:
    """SELECT ``transaction_id, label, chargeback, analyst`` — one row per transaction with a
    label under the rule above — from ``source`` (a FROM item over the labels Parquet that has
    ``columns``). ``chargeback`` and ``analyst`` are each side's label (NULL when it has none
    or, for the analyst, after an undo), so a caller can tell who decided."""
    cols = set(columns)
    kind = (
        f"coalesce(\"source\", '{LabelSource.CHARGEBACK}')"
        if "source" in cols
        else f"'{LabelSource.CHARGEBACK}'"
    )
    retracted = "coalesce(retracted, false)" if "retracted" in cols else "false"
    offset = "coalesce(kafka_offset, -1)" if "kafka_offset" in cols else "-1"
    return f"""
        WITH raw AS (
            SELECT transaction_id, CAST(label AS INTEGER) AS label, {kind} AS kind,
                   {retracted} AS retracted,
                   CAST(reported_at AS TIMESTAMPTZ) AS reported_at, {offset} AS kafka_offset
            FROM {source}
        ), cb AS (
            SELECT transaction_id, max(label) AS label
            FROM raw WHERE kind <> '{LabelSource.ANALYST}' GROUP BY 1
        ), an AS (
            SELECT transaction_id, CASE WHEN retracted THEN NULL ELSE label END AS label
            FROM raw WHERE kind = '{LabelSource.ANALYST}'
            QUALIFY row_number() OVER (
                PARTITION BY transaction_id ORDER BY reported_at DESC, kafka_offset DESC,
                retracted DESC
            ) = 1
        )
        SELECT transaction_id, coalesce(cb.label, an.label) AS label,
               cb.label AS chargeback, an.label AS analyst
        FROM cb FULL OUTER JOIN an USING (transaction_id)
        WHERE coalesce(cb.label, an.label) IS NOT NULL
    """


def _order(record: Mapping[str, Any]) -> tuple[float, int, bool]:
    stamp = record.get("reported_at")
    if isinstance(stamp, str):
        stamp = parse_timestamp(stamp)
    if isinstance(stamp, datetime):
        at = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    else:
        at = float("-inf")
    offset = record.get("kafka_offset")
    return (at, offset if isinstance(offset, int) else -1, bool(record.get("retracted")))


def is_analyst(record: Mapping[str, Any]) -> bool:
    """Whether a LABEL record is an analyst's (no ``source`` means a chargeback)."""
    return record.get("source") == LabelSource.ANALYST


def analyst_decision(records: Iterable[Mapping[str, Any]]) -> int | None:
    """The analyst's standing decision among one transaction's LABEL records: 1, 0, or None
    (no decision, or the latest one was undone). Same order as the SQL: ``reported_at``, then
    Kafka offset; an undo at the same instant as a decision comes after it."""
    mine = [r for r in records if is_analyst(r)]
    if not mine:
        return None
    latest = max(mine, key=_order)
    return None if latest.get("retracted") else int(latest["label"])


def effective_label(records: Iterable[Mapping[str, Any]]) -> int | None:
    """One transaction's label under the rule (the Python twin of :func:`effective_labels_sql`,
    for the case screen): a chargeback wins, else the analyst's standing decision."""
    items = list(records)
    chargebacks = [int(r["label"]) for r in items if not is_analyst(r)]
    if chargebacks:
        return max(chargebacks)
    return analyst_decision(items)
