"""The stream's batch step, pure: decoded rows in; the enriched rows, alerts and dead letters out.

Both paths run it, the driver's (:mod:`rtfd.stream.engine`) and the cluster's
(:mod:`rtfd.stream.cluster`): risk features from the merchant-risk table, one vectorised score,
the model's threshold, then the records that leave the batch (:func:`alert_records`,
:func:`dead_letter_records`). Nothing here reads or writes anything: Parquet, Kafka and the
console are :mod:`rtfd.stream.sinks`, which only write what this module made. Tests run it on
plain pandas frames and Arrow tables, without Spark or Kafka. The same inputs always give the
same outputs (``alert_id`` hashes the transaction and the model version), which is what lets a
replayed batch send exactly the alerts it sent the first time.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfd.features.names import FEATURE_NAMES, RISK_FEATURES
from rtfd.schemas import DEAD_LETTER, TRANSACTION, format_timestamp

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

# Explaining an alert costs milliseconds (SHAP on the whole model). In an alert flood a batch
# explains at most this many, highest scores first; the others say why they have none.
MAX_EXPLAINED_ALERTS = 2_000
UNEXPLAINED = "explanation skipped: too many alerts in this batch"

# A dead letter keeps the whole raw message up to about 1.1 MiB (Spark's base64, line breaks
# included, up to MAX_RAW_B64_CHARS); a bigger one (a broker that allows bigger messages) keeps
# its first MAX_DEAD_RAW_BYTES, so that the dead letter still fits MAX_RECORD_BYTES.
MAX_RAW_B64_CHARS = 1_500_000
MAX_DEAD_RAW_BYTES = 1024 * 1024

_TXN = TRANSACTION.names


@dataclass
class Scored:
    """One batch scored: the enriched rows (Arrow, the Parquet schema), and what the alerts
    need without going back through pandas."""

    table: pa.Table
    features: pd.DataFrame  # FEATURE_NAMES, one row per table row
    scores: np.ndarray
    flagged: np.ndarray  # row indices at or above the threshold


def score_rows(
    rows: pd.DataFrame,
    user_features: pd.DataFrame,
    *,
    model: Any,
    risk: Any,
    processed_at: datetime,
    schema: pa.Schema,
) -> Scored:
    """Decoded transactions + their user features -> enriched rows: risk features, score,
    flag. Pure: the same inputs give the same rows (tests run it on plain frames)."""
    import pandas as pd
    import pyarrow as pa

    from rtfd.features.kernel import timestamps_ms

    n = len(rows)
    x = user_features.reindex(columns=FEATURE_NAMES, fill_value=0.0).to_numpy(
        dtype=np.float64, copy=True
    )
    if n:
        looked = risk.lookup_ms(
            rows["merchant_id"].to_numpy(dtype=object), timestamps_ms(rows["timestamp"])
        )
        for name in RISK_FEATURES:
            x[:, FEATURE_NAMES.index(name)] = looked[name]
    features = pd.DataFrame(x, columns=FEATURE_NAMES, copy=False)
    scores = (
        np.asarray(model.score(features), dtype=np.float64) if n else np.zeros(0, dtype=np.float64)
    )
    flags = scores >= float(model.threshold)
    columns: dict[str, Any] = {f: rows[f].to_numpy() for f in _TXN if f != "timestamp"}
    columns["timestamp"] = rows["timestamp"].array
    for j, name in enumerate(FEATURE_NAMES):
        columns[name] = x[:, j]
    columns["fraud_score"] = scores
    columns["is_fraud"] = flags
    columns["model_version"] = pa.array([str(model.version)] * n, pa.string())
    columns["kafka_partition"] = rows["kafka_partition"].to_numpy()
    columns["kafka_offset"] = rows["kafka_offset"].to_numpy()
    columns["processed_at"] = pa.array(
        np.full(n, int(processed_at.timestamp() * 1000), dtype=np.int64),
        pa.timestamp("ms", tz="UTC"),
    )
    arrays = [
        columns[f.name]
        if isinstance(columns[f.name], pa.Array)
        else pa.array(columns[f.name], type=f.type, from_pandas=True)
        for f in schema
    ]
    table = pa.Table.from_arrays(arrays, schema=schema)
    return Scored(table, features, scores, np.flatnonzero(flags))


def explain_alerts(model: Any, features: pd.DataFrame, scores: np.ndarray) -> list[list[str]]:
    """Reasons for each flagged row (at most :data:`MAX_EXPLAINED_ALERTS` explained, highest
    scores first)."""
    if len(features) <= MAX_EXPLAINED_ALERTS:
        return [list(r) for r in model.explain(features, top=3)]
    order = np.argsort(-scores, kind="stable")
    chosen = order[:MAX_EXPLAINED_ALERTS]
    reasons: list[list[str]] = [[UNEXPLAINED] for _ in range(len(features))]
    for i, r in zip(chosen, model.explain(features.iloc[chosen], top=3), strict=True):
        reasons[int(i)] = list(r)
    log.warning(
        "alert flood: %d alerts in one batch, %d explained", len(features), MAX_EXPLAINED_ALERTS
    )
    return reasons


def percentiles(values: np.ndarray) -> tuple[float | None, float | None]:
    """(median, 99th percentile) of ``values``; (None, None) for none."""
    if len(values) == 0:
        return None, None
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99)


def alert_id(transaction_id: str, model_version: str) -> str:
    """Deterministic: the same transaction scored by the same model always has the same id."""
    return hashlib.sha256(f"{transaction_id}|{model_version}".encode()).hexdigest()[:32]


def alert_records(
    rows: pd.DataFrame,
    scores: Any,
    reasons: list[list[str]],
    *,
    model_version: str,
    threshold: float,
    scored_at: datetime,
) -> list[dict[str, Any]]:
    """ALERT records (JSON-ready) for scored rows at or above the threshold (``rows`` holds
    the transaction fields, ``scores`` their scores, in the same order)."""
    scored = format_timestamp(scored_at)
    stamps = [format_timestamp(t) for t in rows["timestamp"].tolist()]
    out = []
    for tid, uid, score, ts, amount, merchant, why in zip(
        rows["transaction_id"].tolist(),
        rows["user_id"].tolist(),
        [float(v) for v in scores],
        stamps,
        rows["amount"].tolist(),
        rows["merchant_id"].tolist(),
        reasons,
        strict=True,
    ):
        out.append(
            {
                "transaction_id": tid,
                "user_id": uid,
                "fraud_score": score,
                "timestamp": ts,
                "alert_id": alert_id(tid, model_version),
                "model_version": model_version,
                "threshold": float(threshold),
                "amount": float(amount),
                "merchant_id": merchant,
                "reasons": [str(r) for r in why],
                "scored_at": scored,
            }
        )
    return out


def _fit_raw(raw_b64: str) -> str:
    """The dead letter's ``raw_b64``: the whole message, or its first MAX_DEAD_RAW_BYTES."""
    if len(raw_b64) <= MAX_RAW_B64_CHARS:
        return raw_b64
    return base64.b64encode(base64.b64decode(raw_b64)[:MAX_DEAD_RAW_BYTES]).decode("ascii")


def dead_letter_records(rows: pd.DataFrame, *, seen_at: datetime) -> list[dict[str, Any]]:
    """DEAD_LETTER records (JSON-ready) for rows that failed validation."""
    seen = format_timestamp(seen_at)
    out = []
    for row in rows.itertuples(index=False):
        record = {
            "raw_b64": _fit_raw(row.raw_b64 or ""),
            "raw_preview": row.raw_preview,
            "reason": row.reason,
            "topic": row.kafka_topic,
            "partition": int(row.kafka_partition),
            "offset": int(row.kafka_offset),
            "seen_at": seen,
        }
        out.append({name: record[name] for name in DEAD_LETTER.names})
    return out


@dataclass(frozen=True)
class BatchRecords:
    """What one batch sends besides its rows: ALERT and DEAD_LETTER records, JSON-ready."""

    alerts: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]


def batch_records(
    scored: Scored,
    rows: pd.DataFrame,
    dead: pd.DataFrame,
    *,
    model: Any,
    model_version: str,
    at: datetime,
) -> BatchRecords:
    """The alerts of ``scored`` (its flagged rows of ``rows``, explained) and the dead letters of
    ``dead``, stamped ``at``."""
    alerts: list[dict[str, Any]] = []
    if len(scored.flagged):
        flagged = scored.flagged
        reasons = explain_alerts(model, scored.features.iloc[flagged], scored.scores[flagged])
        alerts = alert_records(
            rows.iloc[flagged],
            scored.scores[flagged],
            reasons,
            model_version=model_version,
            threshold=float(model.threshold),
            scored_at=at,
        )
    dead_letters = dead_letter_records(dead, seen_at=at) if len(dead) else []
    return BatchRecords(alerts, dead_letters)


@dataclass(frozen=True)
class BatchOutput:
    """One batch's step done: the enriched rows for Parquet and the records for Kafka."""

    scored: Scored
    records: BatchRecords

    @property
    def table(self) -> pa.Table:
        return self.scored.table


def score_batch(
    rows: pd.DataFrame,
    user_features: pd.DataFrame,
    dead: pd.DataFrame,
    *,
    model: Any,
    risk: Any,
    model_version: str,
    at: datetime,
    schema: pa.Schema,
) -> BatchOutput:
    """The whole step: decoded, de-duplicated ``rows`` with their ``user_features`` (and the
    batch's ``dead`` records) -> enriched rows, alerts, dead letters (:func:`score_rows`, then
    :func:`batch_records`)."""
    scored = score_rows(rows, user_features, model=model, risk=risk, processed_at=at, schema=schema)
    records = batch_records(scored, rows, dead, model=model, model_version=model_version, at=at)
    return BatchOutput(scored, records)


def latency_percentiles(
    rows: pd.DataFrame, committed_ms: float
) -> tuple[float | None, float | None, float | None, float | None]:
    """(p50, p99) of the time from Kafka (``kafka_ts``) to ``committed_ms``, then (p50, p99) of
    the time from the event (``timestamp``): what the progress shows per batch."""
    from rtfd.features.kernel import timestamps_ms

    if not len(rows):
        return None, None, None, None
    lat50, lat99 = percentiles(committed_ms - timestamps_ms(rows["kafka_ts"]))
    ev50, ev99 = percentiles(committed_ms - timestamps_ms(rows["timestamp"]))
    return lat50, lat99, ev50, ev99
