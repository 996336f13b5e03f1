"""Where a batch's output goes, and nothing else: Parquet, Kafka, the console.

What is written is made by the pure step (:mod:`rtfd.stream.batch`); this module only writes it.
Parquet goes through :mod:`rtfd.lake` (files named by the batches they hold, written whole or not
at all: a replay rewrites the same files). Alerts and dead letters go to Kafka with an
idempotent producer and are flushed before the batch returns (so before Spark commits it): at
least once. A replay re-sends them with the same deterministic ``alert_id`` (hash of transaction
id and model version), so consumers can de-duplicate. Alert lines go to the console after that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtfd.schemas import TRANSACTION

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from rtfd.stream.batch import BatchRecords

log = logging.getLogger(__name__)

PARTITION_COLUMN = "event_date"
LABEL_PARTITION_COLUMN = "report_date"
FLUSH_TIMEOUT_S = 60.0
# The DLQ topic accepts records up to 2 MiB (its max.message.bytes, rtfd.broker.admin), so that a
# message at the transactions topic's 1 MiB limit still fits once base64-encoded. The producer
# must allow that much too: librdkafka's default (1,000,000 bytes) refused such a dead letter at
# produce time, failed the batch, and the replay failed again (a poison message).
MAX_RECORD_BYTES = 2 * 1024 * 1024


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


class KafkaPublisher:
    """An idempotent producer that sends JSON records and waits until all are acknowledged."""

    def __init__(self, config: Mapping[str, str]) -> None:
        from rtfd.broker.clients import QUIET, producer

        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._producer = producer(
            config, **{"linger.ms": 5, "message.max.bytes": MAX_RECORD_BYTES, **QUIET}
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


@dataclass(frozen=True)
class Outlets:
    """Where a batch's records go: alerts and dead letters to their topics through one
    publisher (shared by the stream's queries), alert lines to ``console`` when there is one."""

    publisher: KafkaPublisher
    alerts_topic: str
    dlq_topic: str
    console: ConsoleWriter | None = None

    def write(self, records: BatchRecords) -> bool:
        """Send ``records`` and wait until Kafka has them all (raises if any is undelivered:
        the batch then fails and Spark replays it), then print the alerts. True when anything
        was sent (so a flush was waited for)."""
        if records.alerts:
            self.publisher.send(
                self.alerts_topic, ((a["transaction_id"], a) for a in records.alerts)
            )
        if records.dead_letters:
            self.publisher.send(
                self.dlq_topic,
                ((f"{r['topic']}:{r['partition']}:{r['offset']}", r) for r in records.dead_letters),
            )
        sent = bool(records.alerts or records.dead_letters)
        if sent:
            self.publisher.flush()
        if self.console is not None:
            for a in records.alerts:
                self.console(format_alert_line(a))
        return sent


def write_by_date(
    root: Path, partition_column: str, name: str, table: pa.Table, dates: np.ndarray
) -> None:
    """``table`` as one Parquet file per date (``dates[i]`` is row i's ``YYYY-MM-DD``), each
    named ``name`` under ``<root>/<partition_column>=<date>``: a batch run again replaces its
    own files (exactly once)."""
    import pyarrow as pa

    from rtfd.lake import write_file

    for date in sorted(set(dates.tolist())):
        part = table.filter(pa.array(dates == date))
        write_file(root / f"{partition_column}={date}", name, part)
