"""Benchmark section ``limit``: the stream's own work without Spark, in one process.

The fastest path this machine offers for the pipeline, to know how far the stream is from it.
Since the local stream's work happens in the driver (:class:`rtfd.stream.engine.TransactionEngine`:
decode and validate, de-duplicate, the per-user state, score, the redo record, alerts, the
Parquet flush), the limit runs *that same engine*, fed by one confluent-kafka consumer instead of
Spark: the difference between the stream and the limit is exactly what Spark costs (its Kafka
read and Arrow hand-over, its offset and commit logs, its scheduling). The batches are the size
the stream's admission limit allows.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from bench_common import (
    blast,
    create_topics,
    install_models,
    payload_files,
    scale_of,
    sub_settings,
    unique_prefix,
)

SECTION = "limit"
CHUNK = 20_000  # messages per batch


class LimitPipeline:
    """A confluent-kafka consumer feeding the stream's engine, batch after batch."""

    def __init__(self, settings: Any, *, topic: str, topics: Any, run: int) -> None:
        from rtfd.broker import client_config
        from rtfd.stream.engine import TransactionEngine
        from rtfd.stream.progress import ProgressHub
        from rtfd.stream.risk import RiskTables
        from rtfd.stream.scoring import ModelHolder
        from rtfd.stream.sinks import KafkaPublisher, Outlets

        self.settings = settings
        self.topic = topic
        self.checkpoint = settings.checkpoints_dir / f"limit-{run}"
        (self.checkpoint / "commits").mkdir(parents=True, exist_ok=True)
        self.publisher = KafkaPublisher(client_config(settings))
        self.engine = TransactionEngine(
            settings,
            checkpoint=self.checkpoint,
            topic=topic,
            outlets=Outlets(self.publisher, alerts_topic=topics.alerts, dlq_topic=topics.dlq),
            hub=ProgressHub(),
            models=ModelHolder(settings),
            risk=RiskTables(settings, self.checkpoint / "rtfd" / "risk"),
        )
        self.engine.recover()
        self.batches = 0
        self.steps: dict[str, float] = {}

    def process(self, msgs: list[Any]) -> int:
        """One batch through the engine, then Spark's part played by hand: the commit, and the
        Parquet flush the engine's timer would do."""
        import pyarrow as pa

        t = time.perf_counter()
        table = pa.table(
            {
                "value": pa.array([m.value() for m in msgs], pa.binary()),
                "partition": pa.array([m.partition() for m in msgs], pa.int32()),
                "offset": pa.array([m.offset() for m in msgs], pa.int64()),
                "timestamp": pa.array(
                    [m.timestamp()[1] for m in msgs], pa.timestamp("ms", tz="UTC")
                ),
            }
        )
        self.steps["consume"] = self.steps.get("consume", 0.0) + time.perf_counter() - t
        stats = self.engine.process(table, self.batches)
        for k, v in stats.steps_ms.items():
            self.steps[k] = self.steps.get(k, 0.0) + v / 1000.0
        (self.checkpoint / "commits" / str(self.batches)).write_text("v1\n{}")
        t = time.perf_counter()
        self.engine.lake.flush(self.batches)
        self.steps["parquet"] = self.steps.get("parquet", 0.0) + time.perf_counter() - t
        self.batches += 1
        return stats.rows

    def drain(self, n: int, timeout: float = 600.0) -> float:
        """Consume ``n`` messages from the start of the topic through the pipeline; seconds."""
        import uuid

        from confluent_kafka import Consumer, TopicPartition

        from rtfd.broker import client_config

        t0 = time.perf_counter()
        consumer = Consumer(
            {
                **client_config(self.settings),
                "group.id": f"rtfd-bench-limit-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.min.bytes": 1 << 16,
                "queued.max.messages.kbytes": 262_144,
            }
        )
        md = consumer.list_topics(self.topic, timeout=10)
        consumer.assign(
            [TopicPartition(self.topic, p, 0) for p in md.topics[self.topic].partitions]
        )
        seen = 0
        deadline = time.monotonic() + timeout
        try:
            while seen < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"limit: {seen:,} of {n:,} messages after {timeout:.0f} s")
                # Never ask for more than is left: consume() waits its timeout for a full chunk.
                ask = min(CHUNK, n - seen)
                msgs = [m for m in consumer.consume(ask, timeout=0.5) if m.error() is None]
                if msgs:
                    self.process(msgs)
                    seen += len(msgs)
        finally:
            consumer.close()
            self.engine.stop()
            self.publisher.close()
        return time.perf_counter() - t0


def bench_limit(report: Any, settings: Any, runs: int) -> None:
    """Drain the same backlog ``runs`` times through the engine without Spark."""
    scale = scale_of(report)
    s = sub_settings(settings, "limit")
    s.ensure_dirs()
    install_models(settings, s, scale)
    topics = create_topics(s, unique_prefix("limit"))
    n = scale.backlog
    blast(s, topics.transactions, payload_files(settings, scale, runs)[1])
    fig = report.figure(
        SECTION,
        "drain rate, no Spark (consume → the stream's engine → Parquet → alerts)",
        "rows/s",
        note=f"{n:,}-transaction backlog, one process, {CHUNK:,}-message batches",
    )
    steps: dict[str, list[float]] = {}
    for run in range(runs):
        pipeline = LimitPipeline(s, topic=topics.transactions, topics=topics, run=run)
        took = pipeline.drain(n)
        fig.values.append(n / took)
        for k, v in pipeline.steps.items():
            steps.setdefault(k, []).append(1e6 * v / n)
    report.shared["limit_drain"] = fig
    per_row_us = {k: float(np.median(v)) for k, v in steps.items()}
    report.shared["limit_steps_us"] = per_row_us
    per_row = ", ".join(f"{k} {v:.1f}" for k, v in per_row_us.items())
    report.notes[SECTION] = (
        "The stream's own engine (rtfd.stream.engine) fed by one confluent-kafka consumer, "
        "without Spark: one process (librdkafka's threads aside). The stream does the same work "
        f"plus Spark's. Per row (µs, median of the runs): {per_row}."
    )


SECTIONS = {SECTION: bench_limit}
BUDGET_S = {SECTION: 45}
