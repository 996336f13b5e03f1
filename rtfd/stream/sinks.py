"""Where a scored batch goes: Parquet (exactly once), alerts and dead letters (at least once).

Exactly-once Parquet (FIELD-NOTES: a plain ``foreachBatch`` append wrote a batch twice after a
SIGKILL between the write and Spark's commit). Each batch is written as one file per event-date
partition whose name is keyed by the query's id and the batch id
(``event_date=2026-01-01/part-<query>-<batch>.parquet``). A file is written under a hidden
temporary name and renamed into place (atomic on POSIX), so a reader never sees half a file and
an interrupted batch leaves no stray ``*.parquet``. Spark replays an uncommitted batch with the
same offsets and the same state, so the replay produces the same rows and simply replaces the
same files: every transaction lands exactly once.

Alerts and dead letters go to Kafka with an idempotent producer and are flushed before the batch
returns (so before Spark commits it): at least once. A replay re-sends them with the same
deterministic ``alert_id`` (hash of transaction id and model version), so consumers can
de-duplicate.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtfd.errors import RtfdError
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


class ParquetBatchWriter:
    """Writes one micro-batch as atomically renamed files keyed by (query id, batch id)."""

    def __init__(self, root: Path, *, partition_column: str, date_source: str) -> None:
        self.root = root
        self.partition_column = partition_column
        self.date_source = date_source

    def file_name(self, query_id: str, batch_id: int) -> str:
        return f"part-{query_id[:8]}-{batch_id:010d}.parquet"

    def write(self, frame: pd.DataFrame, schema: pa.Schema, *, query_id: str, batch_id: int) -> int:
        """Write ``frame`` (one file per date partition); return the rows written."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if frame.empty:
            return 0
        dates = frame[self.date_source].dt.strftime("%Y-%m-%d")
        name = self.file_name(query_id, batch_id)
        for date, part in frame.groupby(dates, sort=True):
            table = pa.Table.from_pandas(part, schema=schema, preserve_index=False, safe=False)
            directory = self.root / f"{self.partition_column}={date}"
            final = directory / name
            tmp = directory / f".{name}.tmp"
            try:
                directory.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, tmp, compression="zstd")
                os.replace(tmp, final)
            except OSError as e:
                # A full disk: the half-written temporary would keep the space taken (and the
                # replay of this batch would meet a full disk again), so it goes.
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                raise _write_error(e, self.root, batch_id) from e
        return len(frame)


def _write_error(e: OSError, root: Path, batch_id: int) -> RtfdError:
    """A one-line error that names the disk problem; the batch then fails and is replayed."""
    what = f"writing batch {batch_id} to {root} (nothing of it is visible; it is retried"
    what += " when the stream restarts)"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return RtfdError(
            f"the disk is full ({e.strerror or 'no space left'}) while {what}: free some space",
            title="Disk full",
        )
    return RtfdError(f"cannot write ({e.strerror or e}) while {what}", title="Write failed")


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
