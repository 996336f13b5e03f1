"""The stream on a Spark cluster: the per-user state in Spark's state store, on the executors.

With a master that is not local (or ``stream_state = spark``), the driver cannot hold the state:
it must live where the tasks run, and move with them when an executor dies. The query is

    Kafka -> decode (``mapInArrow``, on the executors) -> bucket = hash(user) % B
          -> ``applyInPandasWithState`` (one KernelState blob per bucket, rtfd.stream.state)
          -> ``foreachBatch`` (:class:`ClusterSink`: risk features, score, Parquet, alerts)

Decoding runs :func:`rtfd.stream.decode.decode` — the one validator both paths use — inside each
task. The state blob is the kernel's compact encoding (int32 where values fit, zstd: about a
fifth of the plain bytes), because Spark moves every touched bucket's blob into the Python worker
and back and writes it to the state store each batch. Exactly once: Spark replays an
uncommitted batch from the state of the last committed one, and the sink writes each batch as
its own Parquet files named by the batch (rtfd.lake), so the replay replaces them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfd.config import Settings
from rtfd.features.names import USER_FEATURES
from rtfd.schemas import TRANSACTION
from rtfd.stream.progress import BatchStats, ProgressHub
from rtfd.stream.spark_types import decoded_fields

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from rtfd.stream.sinks import Outlets

log = logging.getLogger(__name__)

COMPACT_EVERY_S = 30.0
DEAD_COLUMNS = ("reason", "raw_b64", "raw_preview")


def decoded_schema() -> Any:
    """The Spark schema of decoded records: the transaction fields (all nullable: a dead
    letter has none), the Kafka coordinates, and the dead-letter columns."""
    from pyspark.sql import types as T

    return T.StructType(decoded_fields())


def decode_batches(
    *, max_future_s: float, max_amount: float, topic: str | None = None
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: Kafka record batches -> decoded record batches."""

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from rtfd.stream.decode import decode, kafka_columns

        for batch in batches:
            if batch.num_rows == 0:
                continue
            values, kafka_ms, coords = kafka_columns(pa.Table.from_batches([batch]), topic)
            out = decode(
                values,
                kafka_ms,
                coords,
                TRANSACTION,
                max_future_s=max_future_s,
                max_amount=max_amount,
            )
            yield from _as_batches(out.valid, out.dead)

    return fn


def _as_batches(valid: Any, dead: Any) -> Iterator[pa.RecordBatch]:
    import pandas as pd
    import pyarrow as pa

    def ts(values: Any) -> pa.Array:
        return pa.array(pd.to_datetime(values, utc=True)).cast(pa.timestamp("us", tz="UTC"))

    arrow = TRANSACTION.arrow_schema()
    n_valid, n_dead = len(valid), len(dead)
    columns: dict[str, pa.Array] = {}
    for f in TRANSACTION.fields:
        kind = pa.timestamp("us", tz="UTC") if f.type == "timestamp" else arrow.field(f.name).type
        good = ts(valid[f.name]) if f.type == "timestamp" else pa.array(valid[f.name], kind)
        columns[f.name] = pa.concat_arrays([good.cast(kind), pa.nulls(n_dead, kind)])
    columns["kafka_topic"] = pa.array(
        [*valid["kafka_topic"].tolist(), *dead["kafka_topic"].tolist()], pa.string()
    )
    columns["kafka_partition"] = pa.array(
        np.concatenate([valid["kafka_partition"], dead["kafka_partition"]]).astype(np.int32)
    )
    columns["kafka_offset"] = pa.array(
        np.concatenate([valid["kafka_offset"], dead["kafka_offset"]]).astype(np.int64)
    )
    columns["kafka_ts"] = pa.concat_arrays(
        [ts(valid["kafka_ts"]), pa.nulls(n_dead, pa.timestamp("us", tz="UTC"))]
    )
    for c in DEAD_COLUMNS:
        # From a list: a batch with no dead letter has empty float64 columns here, which Arrow
        # converts from pandas to a ChunkedArray that concat_arrays refuses.
        columns[c] = pa.concat_arrays(
            [pa.nulls(n_valid, pa.string()), pa.array(dead[c].tolist(), pa.string())]
        )
    yield pa.RecordBatch.from_pydict(columns)


def decode_in_spark(raw: DataFrame, settings: Settings, topic: str) -> DataFrame:
    """Kafka rows (value, partition, offset, timestamp of ``topic``) -> decoded rows, on the
    executors."""
    return raw.mapInArrow(
        decode_batches(
            max_future_s=settings.stream_max_future_s,
            max_amount=settings.stream_max_amount,
            topic=topic,
        ),
        decoded_schema(),
    )


class ClusterSink:
    """``foreachBatch`` of the cluster path: the bucketed operator's output -> risk features,
    score, Parquet (a file per batch and date, named by the batch), alerts, dead letters."""

    def __init__(
        self,
        settings: Settings,
        *,
        checkpoint: Path,
        outlets: Outlets,
        hub: ProgressHub,
        models: Any,
        risk: Any,
        clock: Callable[[], float] = time.time,
        name: str = "transactions",
    ) -> None:
        from rtfd.stream.engine import lake_id
        from rtfd.stream.scoring import BatchLog
        from rtfd.stream.sinks import enriched_arrow_schema

        self.settings = settings
        self.checkpoint = checkpoint
        self.outlets = outlets
        self.hub = hub
        self.models = models
        self.risk = risk
        self.clock = clock
        self.name = name
        self.schema = enriched_arrow_schema()
        self.lake_id = lake_id(checkpoint)
        self.batch_log = BatchLog(checkpoint / "rtfd" / "batches")
        self.bucket_users: dict[int, int] = {}
        self._stop = threading.Event()
        self._compactor: threading.Thread | None = None

    def start_background(self) -> None:
        self._stop.clear()
        self._compactor = threading.Thread(target=self._compact_loop, daemon=True)
        self._compactor.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._compactor is not None:
            self._compactor.join(timeout)

    def _compact_loop(self) -> None:
        from rtfd.lake import compact

        while not self._stop.wait(COMPACT_EVERY_S):
            for root in (self.settings.enriched_dir, self.settings.labels_dir):
                try:
                    compact(root, until=time.monotonic() + 30.0)
                except Exception:
                    log.exception("compacting %s failed", root)

    def __call__(self, df: Any, batch_id: int) -> None:
        t0 = time.monotonic()
        raw = df.toArrow()
        self.process(raw.to_pandas(), int(batch_id), started=t0)

    def process(self, pdf: Any, batch_id: int, *, started: float | None = None) -> BatchStats:
        import pandas as pd

        from rtfd.lake import file_name
        from rtfd.stream.batch import latency_percentiles, score_batch
        from rtfd.stream.sinks import PARTITION_COLUMN, write_by_date
        from rtfd.stream.state import KIND_DEAD, KIND_DUPLICATE, KIND_VALID

        t0 = time.monotonic() if started is None else started
        kind = pdf["row_kind"].to_numpy()
        folded = (kind == KIND_VALID) | (kind == KIND_DUPLICATE)
        counted = pdf.loc[folded, ["bucket", "state_users"]]
        for b, users in counted.groupby("bucket")["state_users"].max().items():
            self.bucket_users[int(b)] = int(users)
        dead = pdf[kind == KIND_DEAD]
        n_dupes = int((kind == KIND_DUPLICATE).sum())
        valid = pdf[kind == KIND_VALID].reset_index(drop=True)
        if len(valid):
            valid["timestamp"] = pd.to_datetime(valid["timestamp"], utc=True)
            valid["kafka_ts"] = pd.to_datetime(valid["kafka_ts"], utc=True)
        model, risk = self.models.for_batch(self.batch_log, batch_id), self.risk.table()
        now = datetime.fromtimestamp(self.clock(), tz=UTC)
        out = score_batch(
            valid,
            valid[USER_FEATURES] if len(valid) else valid.reindex(columns=USER_FEATURES),
            dead,
            model=model,
            risk=risk,
            model_version=str(model.version),
            at=now,
            schema=self.schema,
        )
        if out.table.num_rows:
            dates = pd.Series(valid["timestamp"]).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
            name = file_name(self.lake_id, batch_id, batch_id)
            write_by_date(self.settings.enriched_dir, PARTITION_COLUMN, name, out.table, dates)
        self.outlets.write(out.records)
        lat50, lat99, ev50, ev99 = latency_percentiles(valid, self.clock() * 1000.0)
        alerts = out.records.alerts
        stats = BatchStats(
            query=self.name,
            batch_id=batch_id,
            rows=len(valid),
            alerts=len(alerts),
            dead_letters=len(dead),
            duplicates=n_dupes,
            state_users=sum(self.bucket_users.values()) if self.bucket_users else None,
            model_version=str(model.version),
            latency_p50_ms=lat50,
            latency_p99_ms=lat99,
            event_latency_p50_ms=ev50,
            event_latency_p99_ms=ev99,
            sink_ms=(time.monotonic() - t0) * 1000.0,
        )
        log.info(
            "batch %d: %d rows, %d alerts, %d dead, %.0f ms",
            batch_id,
            len(valid),
            len(alerts),
            len(dead),
            stats.sink_ms,
        )
        self.hub.record_batch(stats)
        return stats
