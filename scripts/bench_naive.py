"""Benchmark section ``naive``: the pipeline as a typical first implementation writes it.

Spark Structured Streaming reads the same Kafka topic with the same admission limit and trigger
as the appliance, parses the JSON with ``from_json``, and hands every micro-batch to
``foreachBatch``, which does the rest on the driver: ``df.toPandas()``, the features recomputed
from the batch alone (:func:`rtfd.features.offline.build_features` from an empty state every
batch — so velocity features are wrong across batches, the mistake FIELD-NOTES describes), the
same live model applied to the whole batch, Parquet written with pandas, alerts (explained, as
the appliance's) sent to Kafka.

Measured like the stream: one query, backlogs produced while it runs, the drain rate from
Spark's own batch times; and, when the budget allows, per-row latency at 1,000 tx/s.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from bench_common import (
    LoadGenerator,
    ProgressLog,
    Watermarks,
    blast,
    create_topics,
    drain_rate,
    install_models,
    payload_files,
    row_latencies,
    scale_of,
    sub_settings,
    time_breakdown,
    unique_prefix,
    wait_rows,
    warm_rows,
)

SECTION = "naive"


class NaiveSink:
    """The ``foreachBatch`` function of the naive pipeline."""

    def __init__(self, settings: Any, *, model: Any, out_dir: Path, alerts_topic: str) -> None:
        from confluent_kafka import Producer

        from rtfd.broker import client_config

        self.model = model
        self.out_dir = out_dir
        self.alerts_topic = alerts_topic
        self.producer = Producer({**client_config(settings), "linger.ms": 5})
        self.rows = 0
        self.lock = threading.Lock()
        self.steps: dict[int, dict[str, float]] = {}
        out_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, df: Any, batch_id: int) -> None:
        import pandas as pd

        from rtfd.features.offline import build_features
        from rtfd.schemas import TRANSACTION, format_timestamp

        marks = [("start", time.perf_counter())]
        pdf = df.toPandas()  # runs the Spark job: Kafka read, from_json, collect
        marks.append(("toPandas", time.perf_counter()))
        if pdf.empty:
            return
        pdf = pdf.dropna(subset=TRANSACTION.required).reset_index(drop=True)
        pdf["timestamp"] = pd.to_datetime(pdf["timestamp"], utc=True)
        feats = build_features(pdf)  # this batch alone: an empty state every time
        marks.append(("features", time.perf_counter()))
        scores = self.model.score(feats)
        marks.append(("score", time.perf_counter()))
        out = pd.concat([pdf, feats], axis=1)
        out["fraud_score"] = scores
        out["is_fraud"] = scores >= self.model.threshold
        out.to_parquet(self.out_dir / f"batch-{batch_id:06d}.parquet", index=False)
        marks.append(("parquet", time.perf_counter()))
        flagged = out[out["is_fraud"]]
        if len(flagged):
            reasons = self.model.explain(flagged[list(self.model.features)], top=3)
            for row, why in zip(flagged.itertuples(index=False), reasons, strict=True):
                alert = {
                    "transaction_id": row.transaction_id,
                    "user_id": row.user_id,
                    "fraud_score": float(row.fraud_score),
                    "timestamp": format_timestamp(row.timestamp.to_pydatetime()),
                    "amount": float(row.amount),
                    "merchant_id": row.merchant_id,
                    "reasons": list(why),
                }
                self.producer.produce(
                    self.alerts_topic,
                    key=row.transaction_id.encode(),
                    value=json.dumps(alert).encode(),
                )
            self.producer.flush(60)
        marks.append(("alerts", time.perf_counter()))
        steps = {name: 1000.0 * (t - marks[i][1]) for i, (name, t) in enumerate(marks[1:])}
        steps["sink"] = 1000.0 * (marks[-1][1] - marks[0][1])
        with self.lock:
            self.rows += len(pdf)
            self.steps[int(batch_id)] = steps


def start_naive_query(spark: Any, settings: Any, *, topic: str, sink: NaiveSink) -> Any:
    """The naive query: Kafka -> from_json -> foreachBatch(sink)."""
    from pyspark.sql import functions as F

    from rtfd.broker import bootstrap_servers
    from rtfd.schemas import TRANSACTION
    from rtfd.stream.spark_types import spark_schema

    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers(settings))
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(settings.stream_max_offsets_per_trigger))
        .load()
    )
    parsed = raw.select(
        F.from_json(F.col("value").cast("string"), spark_schema(TRANSACTION)).alias("t"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_ts"),
    ).select("t.*", "kafka_partition", "kafka_offset", "kafka_ts")
    writer = parsed.writeStream.foreachBatch(sink).option(
        "checkpointLocation", str(settings.checkpoints_dir / "naive")
    )
    if settings.stream_trigger_s > 0:
        writer = writer.trigger(processingTime=f"{settings.stream_trigger_s} seconds")
    return writer.queryName("rtfd-bench-naive").start()


def bench_naive(report: Any, settings: Any, runs: int) -> None:
    """Drain rate (and latency at 1,000 tx/s) of the naive pipeline."""
    from rtfd.ml.registry import Registry
    from rtfd.stream.procs import checkpoint_tag
    from rtfd.stream.session import start_spark, stop_spark

    scale = scale_of(report)
    s = sub_settings(settings, "naive")
    s.ensure_dirs()
    install_models(settings, s, scale)
    model = Registry(s.models_dir).load()
    topics = create_topics(s, unique_prefix("naive"))
    out_dir = s.data_dir / "naive_parquet"
    sink = NaiveSink(s, model=model, out_dir=out_dir, alerts_topic=topics.alerts)
    files = payload_files(settings, scale, runs)
    t0 = time.perf_counter()
    handle = start_spark(s, tag=checkpoint_tag(s.checkpoints_dir), app_name="rtfd-bench-naive")
    query = None
    try:
        query = start_naive_query(handle.spark, s, topic=topics.transactions, sink=sink)
        progress = ProgressLog()

        def count() -> int:
            with sink.lock:
                return sink.rows

        def failed() -> str:
            return "" if query.isActive else f"the naive query stopped: {query.exception()}"

        blast(s, topics.transactions, files[0])
        wait_rows(count, warm_rows(scale), 300, "naive warm-up", failed)
        started_s = time.perf_counter() - t0
        fig = report.figure(
            SECTION,
            "naive drain rate (Spark, toPandas, features per batch, driver scoring)",
            "rows/s",
            note=f"{scale.backlog:,}-transaction backlog; same trigger and admission limit",
        )
        t_drains = time.time()
        for run in range(runs):
            target = count() + scale.backlog
            since = time.time()
            blast(s, topics.transactions, files[1 + run])
            wait_rows(count, target, 900, "naive drain", failed)
            time.sleep(0.5)  # the progress of the last batch follows its commit
            fig.values.append(drain_rate(progress, query, since, scale.backlog))
        report.shared["naive_drain"] = fig
        table, avg = time_breakdown(progress.between(t_drains, time.time()), sink.steps)
        report.shared["breakdown naive drain"] = avg
        note = f"Spark start and first batch: {started_s:.0f} s."
        if scale.naive_latency:
            note += " " + _naive_latency(report, s, topics, out_dir, scale)
        report.notes[SECTION] = (
            "A typical first implementation of the same pipeline (see scripts/bench_naive.py): "
            "`from_json` in Spark, then per batch in the driver `toPandas()`, features recomputed "
            "from the batch alone (wrong across batches: no per-user state), the same model, "
            "Parquet with pandas, explained alerts to Kafka. "
            + note
            + "\n\nWhere its time goes in the drains (`sink.toPandas` runs the Spark job: Kafka "
            "read, `from_json`, collect to the driver): " + table
        )
    finally:
        if query is not None:
            try:
                query.stop()
            except Exception as e:  # stopping a query mid-batch can raise; Spark stops anyway
                print(f"bench: naive query stop: {e}", flush=True)
        stop_spark(handle)


def _naive_latency(report: Any, s: Any, topics: Any, out_dir: Path, scale: Any) -> str:
    """Per-row latency of the naive pipeline at 1,000 tx/s (warm-up excluded)."""
    rate = 1_000
    tx = Watermarks(s, topics.transactions)
    al = Watermarks(s, topics.alerts)
    tx0, al0 = tx.now(), al.now()
    since = time.time()
    gen = LoadGenerator(
        s,
        topic=topics.transactions,
        labels_topic=topics.labels,
        rate=rate,
        seconds=scale.latency_warm_s + scale.latency_measure_s,
    )
    rc = gen.wait(scale.latency_warm_s + scale.latency_measure_s + 60)
    if rc != 0:
        raise RuntimeError(f"load generator failed ({rc}): {gen.output()}")
    tx1 = tx.now()
    # Let the pipeline catch up with the end of the run (bounded: a slow pipeline's unfinished
    # rows then count as missing, and the report says how many).
    target = sum(tx1.values()) - sum(tx0.values())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _caught_up(out_dir, since, target):
        time.sleep(0.5)
    time.sleep(1.0)  # alerts follow the Parquet write
    al1 = al.now()
    tx.close()
    al.close()
    lat = row_latencies(
        s,
        enriched_dir=out_dir,
        tx_topic=topics.transactions,
        alerts_topic=topics.alerts,
        tx_start=tx0,
        tx_end=tx1,
        alerts_start=al0,
        alerts_end=al1,
        since=since - 1.0,
        warm_s=scale.latency_warm_s,
        measure_s=scale.latency_measure_s,
    )
    for which, label in (("parquet", "produce → Parquet"), ("alert", "produce → alert")):
        windows = lat.windows(which)
        for q in ("p50", "p99"):
            fig = report.figure(
                SECTION,
                f"naive {label} {q} at {rate:,} tx/s",
                "ms",
                note=f"per row, 3 windows of {scale.latency_measure_s / 3:.0f} s",
            )
            fig.values = [w[q] for w in windows]
            report.shared[f"naive_{which}_{q}"] = fig
    return (
        f"Latency run at {rate:,} tx/s: {lat.committed:,} of {lat.expected:,} measured "
        f"transactions found in Parquet, {len(lat.alert_ms):,} alerts."
    )


def _caught_up(out_dir: Path, since: float, target: int) -> bool:
    """Whether the Parquet files written since ``since`` hold ``target`` rows."""
    import pyarrow.parquet as pq

    total = 0
    for path in out_dir.glob("*.parquet"):
        try:
            if path.stat().st_mtime >= since - 1.0:
                total += pq.read_metadata(path).num_rows
        except OSError:
            continue
    return total >= target


SECTIONS = {SECTION: bench_naive}
BUDGET_S = {SECTION: 180}
