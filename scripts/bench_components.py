"""Benchmark section ``components``: each part of the pipeline alone, in this process.

* producer: the simulator's producer (:func:`rtfd.generator.live.produce_transactions`): draw,
  encode JSON, send with the idempotent producer (acks=all) until every message is acknowledged;
* feature kernel: :func:`rtfd.features.kernel.step_batch` over micro-batches with one state, and
  the offline path (:func:`rtfd.features.offline.build_features`) in one batch;
* scoring per algorithm: the registry's vectorised ``score`` on micro-batches (tiny models
  trained on a small simulated history, see :func:`bench_common.bench_models`);
* decode: :func:`rtfd.stream.decode.decode` (Arrow's JSON reader and the schema's rules) on the
  generator's JSON messages;
* the stream's per-user state: :class:`rtfd.features.store.UserStore` folding micro-batches with
  the history's users in state (what the local stream does per batch);
* the cluster path's state function: what Spark's ``applyInPandasWithState`` calls per bucket
  (:func:`rtfd.stream.state.make_bucket_function`), with the compact state blob
  (de)serialised, in pandas only (no Spark);
* Parquet: :class:`rtfd.lake.LakeWriter` flushing micro-batches with the enriched schema.

All rates are per process on one core (these paths are single-threaded Python/NumPy).
"""

from __future__ import annotations

import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import (
    ALGOS,
    bench_models,
    create_topics,
    enriched_table,
    scale_of,
    simulated_rows,
    sub_settings,
    unique_prefix,
)

SECTION = "components"
ALGO_NAMES = {"xgboost": "XGBoost", "logreg": "logistic regression", "iforest": "isolation forest"}


def _batches(n: int, size: int) -> list[slice]:
    return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]


class _GroupState:
    """What ``applyInPandasWithState`` hands the function: the bucket's state row."""

    def __init__(self, row: tuple[Any, ...] | None) -> None:
        self.row = row

    @property
    def exists(self) -> bool:
        return self.row is not None

    @property
    def get(self) -> tuple[Any, ...]:
        assert self.row is not None
        return self.row

    def update(self, row: tuple[Any, ...]) -> None:
        self.row = row


def bench_components(report: Any, settings: Any, runs: int) -> None:
    """Producer, kernel, scoring, stateful operator and Parquet sink rates."""
    import pandas as pd
    import pyarrow as pa

    from rtfd.features.kernel import KernelState, step_batch
    from rtfd.features.offline import build_features
    from rtfd.features.store import UserStore
    from rtfd.generator.live import produce_transactions
    from rtfd.lake import LakeWriter
    from rtfd.ml.registry import Registry
    from rtfd.stream.sinks import enriched_arrow_schema
    from rtfd.stream.state import bucket_values, make_bucket_function

    scale = scale_of(report)
    s = sub_settings(settings, "components")
    s.ensure_dirs()

    def timed(name: str, note: str, rows: int, fn: Callable[[], Any]) -> Any:
        fig = report.figure(SECTION, name, "tx/s" if name.startswith("producer") else "rows/s")
        fig.note = note
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            fig.values.append(rows / (time.perf_counter() - t0))
        return fig

    # Producer: fresh transactions every run, into a fresh topic.
    topics = create_topics(s, unique_prefix("producer"))
    n_prod = scale.producer_rows
    timed(
        "producer (simulator → JSON → idempotent producer, acks=all, all acked)",
        f"{n_prod:,} tx per run, one process",
        n_prod,
        lambda: produce_transactions(s, n_prod, topic=topics.transactions, labels=False),
    )

    history = simulated_rows(s, scale.component_rows)
    n = len(history)
    b = scale.batch_rows
    parts = _batches(n, b)
    build_features(history.iloc[:1000])  # imports and first-call caches out of the timing

    def kernel_batches() -> None:
        state = KernelState()
        for part in parts:
            state, _ = step_batch(state, history.iloc[part])

    timed(
        "feature kernel (step_batch, micro-batches, one state)",
        f"{n:,} rows in {b:,}-row batches, {s.generator_users:,} users",
        n,
        kernel_batches,
    )

    def store_batches() -> None:
        store = UserStore()
        for part in parts:
            store.step(history.iloc[part])

    timed(
        "per-user state (UserStore.step, micro-batches: the local stream's state)",
        f"{n:,} rows in {b:,}-row batches, {s.generator_users:,} users",
        n,
        store_batches,
    )
    timed(
        "feature kernel (offline build_features, one batch)",
        f"{n:,} rows",
        n,
        lambda: build_features(history),
    )

    # Scoring: the served features of the history, scored in micro-batches.
    registry_dir, versions, train_s = bench_models(settings, scale)
    registry = Registry(registry_dir)
    features = build_features(history.iloc[: scale.scoring_rows])
    score_parts = _batches(len(features), b)
    for algo in ALGOS:
        model = registry.load(versions[algo])
        model.score(features.iloc[:100])  # XGBoost's first call is slow (FIELD-NOTES)

        def score(model: Any = model) -> None:
            for part in score_parts:
                model.score(features.iloc[part])

        timed(
            f"scoring, {ALGO_NAMES.get(algo, algo)} ({model.mode}, vectorised)",
            f"{len(features):,} rows in {b:,}-row batches; trained in "
            f"{train_s[algo]:.1f} s on a {scale.history_days:g}-day history",
            len(features),
            score,
        )

    # Stateful operator alone: the bucket function over B buckets, state serialised each call.
    n_buckets = s.stream_state_buckets
    buckets = bucket_values(n_buckets, s.spark_shuffle_partitions)
    op_input = history.drop(columns=[c for c in ("label", "fraud_type") if c in history])
    # Spark hands the function naive timestamps (session time zone UTC) and the Kafka columns.
    op_input["timestamp"] = op_input["timestamp"].dt.tz_localize(None)
    op_input["kafka_topic"] = "transactions"
    op_input["kafka_partition"] = (np.arange(n) % 3).astype(np.int32)
    op_input["kafka_offset"] = np.arange(n, dtype=np.int64)
    op_input["kafka_ts"] = op_input["timestamp"]
    for c in ("reason", "raw_b64", "raw_preview"):
        op_input[c] = None
    codes = np.array([zlib.crc32(u.encode()) % n_buckets for u in op_input["user_id"]])
    fn = make_bucket_function(ttl_s=s.stream_state_ttl_hours * 3600.0)
    calls = [0]

    def operator() -> None:
        states: dict[int, tuple[Any, ...] | None] = dict.fromkeys(range(n_buckets))
        for part in parts:
            batch = op_input.iloc[part]
            code = codes[part]
            for k in range(n_buckets):
                rows = batch[code == k]
                if len(rows) == 0:
                    continue
                gs = _GroupState(states[k])
                for _ in fn((buckets[k],), iter([rows]), gs):
                    pass
                states[k] = gs.row
                calls[0] += 1

    op = timed(
        f"cluster path's state function alone ({n_buckets} buckets, pandas only)",
        f"the applyInPandasWithState function with the compact state blob (de)serialised; "
        f"{b:,}-row batches; no Spark",
        n,
        operator,
    )
    per_call = 1000.0 * n / op.median / max(1, calls[0] // runs)
    op.note += f"; {per_call:.1f} ms per bucket call"

    # Parquet sink: enriched rows, one file per batch and date partition, renamed into place.
    schema = enriched_arrow_schema()
    enriched = enriched_table(history, versions["xgboost"])
    tables = [enriched.slice(part.start, part.stop - part.start) for part in parts]
    with tempfile.TemporaryDirectory(dir=s.data_dir) as tmp:
        run = [0]

        def sink() -> None:
            run[0] += 1
            writer = LakeWriter(
                Path(tmp) / f"run{run[0]}",
                partition_column="event_date",
                date_source="timestamp",
                query=f"{run[0]:08x}",
                schema=schema,
            )
            for i, table in enumerate(tables):
                writer.add(i, table)
                writer.flush(i)

        timed(
            "Parquet (LakeWriter, one flush per batch, zstd, atomic rename)",
            f"{len(schema)} columns, {b:,}-row batches",
            n,
            sink,
        )

    # Decode: the generator's JSON messages through the stream's validator.
    from rtfd.schemas import TRANSACTION
    from rtfd.stream.decode import decode

    messages: list[bytes] = []

    class _Keep:
        def __init__(self, _c: Any) -> None:
            pass

        def produce(self, topic: str, value: bytes, key: bytes) -> None:
            messages.append(value)

        def poll(self, timeout: float) -> int:
            return 0

        def flush(self, timeout: float) -> int:
            return 0

    produce_transactions(s, min(n, 50_000), labels=False, producer_factory=_Keep)
    values = pa.array(messages, pa.binary())
    kafka_ms = np.full(len(messages), int(time.time() * 1000) + 60_000, dtype=np.int64)
    coords = pd.DataFrame(
        {
            "kafka_topic": "t",
            "kafka_partition": np.zeros(len(messages), np.int32),
            "kafka_offset": np.arange(len(messages), dtype=np.int64),
        }
    )
    chunks = _batches(len(messages), b)

    def decode_batches() -> None:
        for part in chunks:
            decode(
                values[part],
                kafka_ms[part],
                coords.iloc[part],
                TRANSACTION,
                max_future_s=s.stream_max_future_s,
                max_amount=s.stream_max_amount,
            )

    timed(
        "decode and validate (rtfd.stream.decode: Arrow's JSON reader + the schema's rules)",
        f"{len(messages):,} generator messages in {b:,}-row batches",
        len(messages),
        decode_batches,
    )
    report.notes[SECTION] = (
        "Each part alone, in one process (one core). The local stream runs decode, the per-user "
        "state, scoring and the Parquet flush in its driver; the cluster path's state function "
        "is what Spark calls per bucket on an executor (everything Spark adds around it, the "
        "shuffle and the state store, excluded). Scoring excludes explanations of alerts."
    )


SECTIONS = {SECTION: bench_components}
BUDGET_S = {SECTION: 90}
