"""Where a scored batch goes: the shapes of its Parquet rows, alerts and dead letters.

Parquet is written through :mod:`rtfd.lake` (files named by the batches they hold, written whole
or not at all). Alerts and dead letters go to Kafka with an idempotent producer and are flushed
before the batch returns (so before Spark commits it): at least once. A replay re-sends them
with the same deterministic ``alert_id`` (hash of transaction id and model version), so
consumers can de-duplicate.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rtfd.schemas import DEAD_LETTER, TRANSACTION, format_timestamp

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

PARTITION_COLUMN = "event_date"
LABEL_PARTITION_COLUMN = "report_date"
FLUSH_TIMEOUT_S = 60.0
# The DLQ topic accepts records up to 2 MiB (its max.message.bytes, rtfd.broker.admin), so that a
# message at the transactions topic's 1 MiB limit still fits once base64-encoded. The producer
# must allow that much too: librdkafka's default (1,000,000 bytes) refused such a dead letter at
# produce time, failed the batch, and the replay failed again (a poison message).
MAX_RECORD_BYTES = 2 * 1024 * 1024
# A dead letter keeps the whole raw message up to about 1.1 MiB (Spark's base64, line breaks
# included, up to MAX_RAW_B64_CHARS); a bigger one (a broker that allows bigger messages) keeps
# its first MAX_DEAD_RAW_BYTES, so that the dead letter still fits MAX_RECORD_BYTES.
MAX_RAW_B64_CHARS = 1_500_000
MAX_DEAD_RAW_BYTES = 1024 * 1024


def enriched_arrow_schema() -> pa.Schema:
    """Columns of enriched_transactions (``event_date`` is the Hive partition directory)."""
    import pyarrow as pa

    from rtfd.features.names import FEATURE_NAMES

    fields = list(TRANSACTION.arrow_schema())
    fields += [pa.field(n, pa.float64()) for n in FEATURE_NAMES]
    fields += [
        pa.field("fraud_score", pa.float64()),
        pa.field("is_fraud", pa.bool_()),
        pa.field("model_version", pa.string()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("processed_at", pa.timestamp("ms", tz="UTC")),
    ]
    return pa.schema(fields)


def labels_arrow_schema() -> pa.Schema:
    """Columns of the labels Parquet (``report_date`` is the Hive partition directory)."""
    import pyarrow as pa

    from rtfd.schemas import LABEL

    return pa.schema(
        [
            *LABEL.arrow_schema(),
            pa.field("kafka_partition", pa.int32()),
            pa.field("kafka_offset", pa.int64()),
        ]
    )


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


class KafkaPublisher:
    """An idempotent producer that sends JSON records and waits until all are acknowledged."""

    def __init__(self, config: Mapping[str, str]) -> None:
        from confluent_kafka import Producer

        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._producer = Producer(
            {
                **config,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.max.bytes": MAX_RECORD_BYTES,
                "log_level": 3,
                "logger": logging.getLogger("rtfd.kafka.client"),
            }
        )

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(str(err))

    def send(self, topic: str, records: Iterable[tuple[str | None, dict[str, Any]]]) -> int:
        """Queue (key, record) pairs; returns how many."""
        n = 0
        for key, record in records:
            value = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
            while True:
                try:
                    self._producer.produce(
                        topic,
                        value=value,
                        key=key.encode() if key is not None else None,
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
            n += 1
        self._producer.poll(0)
        return n

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Wait for every queued record; raise if any is undelivered (the batch then fails and
        Spark replays it)."""
        remaining = self._producer.flush(timeout)
        with self._lock:
            errors, self._errors = self._errors, []
        if remaining or errors:
            raise RuntimeError(
                f"Kafka: {remaining} record(s) undelivered after {timeout:.0f} s, "
                f"{len(errors)} failed" + (f" (first: {errors[0]})" if errors else "")
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._producer.flush(5)


def format_alert_line(record: Mapping[str, Any]) -> str:
    """One compact, readable console line per alert."""
    reasons = ", ".join(record.get("reasons") or []) or "-"
    return (
        f"ALERT {record['timestamp']} tx={record['transaction_id']} user={record['user_id']} "
        f"merchant={record['merchant_id']} amount={record['amount']:.2f} "
        f"score={record['fraud_score']:.3f}>={record['threshold']:.3f} "
        f"model={record['model_version']} | {reasons}"
    )


ConsoleWriter = Callable[[str], None]
