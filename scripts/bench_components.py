"""Benchmark section ``components``: each part of the pipeline alone, in this process.

* producer: the simulator's producer (:func:`rtfd.generator.live.produce_transactions`): draw,
  encode JSON, send with the idempotent producer (acks=all) until every message is acknowledged;
* feature kernel: :func:`rtfd.features.kernel.step_batch` over micro-batches with one state, and
  the offline path (:func:`rtfd.features.offline.build_features`) in one batch;
* scoring per algorithm: the registry's vectorised ``score`` on micro-batches (tiny models
  trained on a small simulated history, see :func:`bench_common.bench_models`);
* stateful operator alone: the function Spark's ``applyInPandasWithState`` calls
  (:func:`rtfd.stream.state.make_bucket_function`) over 16 buckets per micro-batch, with state
  (de)serialisation, in pandas only: no Spark, no Arrow hand-over, no RocksDB;
* Parquet sink: :class:`rtfd.stream.sinks.ParquetBatchWriter` with the enriched schema.

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
from bench_common import ALGOS, bench_models, create_topics, scale_of, sub_settings, unique_prefix

SECTION = "components"
ALGO_NAMES = {"xgboost": "XGBoost", "logreg": "logistic regression", "iforest": "isolation forest"}


def _history(settings: Any, rows: int) -> Any:
    """``rows`` simulated transactions of the configured population, oldest first."""
    from rtfd.generator.history import simulate_history

    users = settings.generator_users
    days = max(1.0, rows / (users * 2.85))
    frame = simulate_history(
        days,
        seed=settings.generator_seed,
        users=users,
        merchants=settings.generator_merchants,
        fraud_rate=settings.generator_fraud_rate,
    )
    return frame.iloc[:rows].reset_index(drop=True)


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

    from rtfd.features.kernel import KernelState, step_batch
    from rtfd.features.names import FEATURE_NAMES
    from rtfd.features.offline import build_features
    from rtfd.generator.live import produce_transactions
    from rtfd.ml.registry import Registry
    from rtfd.stream.sinks import ParquetBatchWriter, enriched_arrow_schema
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

    history = _history(s, scale.component_rows)
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
        f"stateful operator alone ({n_buckets} buckets, pandas only)",
        f"the applyInPandasWithState function with state (de)serialisation; "
        f"{b:,}-row batches; no Spark, Arrow or RocksDB",
        n,
        operator,
    )
    per_call = 1000.0 * n / op.median / max(1, calls[0] // runs)
    op.note += f"; {per_call:.1f} ms per bucket call"

    # Parquet sink: enriched rows, one file per batch and date partition, renamed into place.
    schema = enriched_arrow_schema()
    enriched = history.copy()
    feats = build_features(history)
    for c in FEATURE_NAMES:
        enriched[c] = feats[c].to_numpy()
    enriched["fraud_score"] = np.linspace(0.0, 1.0, n)
    enriched["is_fraud"] = enriched["fraud_score"] >= 0.9
    enriched["model_version"] = versions["xgboost"]
    enriched["kafka_partition"] = (np.arange(n) % 3).astype(np.int32)
    enriched["kafka_offset"] = np.arange(n, dtype=np.int64)
    enriched["processed_at"] = pd.Timestamp.now(tz="UTC")
    enriched = enriched[schema.names]
    with tempfile.TemporaryDirectory(dir=s.data_dir) as tmp:
        writer = ParquetBatchWriter(
            Path(tmp), partition_column="event_date", date_source="timestamp"
        )
        run = [0]

        def sink() -> None:
            run[0] += 1
            for i, part in enumerate(parts):
                writer.write(enriched.iloc[part], schema, query_id=f"run{run[0]:04d}", batch_id=i)

        timed(
            "Parquet sink (ParquetBatchWriter, zstd, atomic rename)",
            f"{len(schema)} columns, {b:,}-row batches",
            n,
            sink,
        )
    report.notes[SECTION] = (
        "Each part alone, in one process (one core). The stateful operator is the function Spark "
        "calls per bucket, driven in-process over the same buckets and batch size as the stream: "
        "it excludes everything Spark adds around it (Kafka read, JSON parsing, shuffle, the "
        "Arrow round trip to the Python worker, RocksDB). Scoring excludes explanations of "
        "alerts."
    )


SECTIONS = {SECTION: bench_components}
BUDGET_S = {SECTION: 90}
