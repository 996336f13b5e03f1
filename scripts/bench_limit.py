"""Benchmark section ``limit``: the same work as the stream without Spark, in one process.

The fastest path this machine offers for the pipeline, to know how far the stream is from it:
one confluent-kafka consumer drains a backlog; each chunk of messages is parsed at once
(Arrow's JSON reader), validated with vectorised checks derived from
:data:`rtfd.schemas.TRANSACTION`, run through the feature kernel (one
:class:`~rtfd.features.kernel.KernelState` for the whole drain), scored by the registry's live
model (the object the stream's :class:`~rtfd.stream.scoring.ModelHolder` loads), written to
Parquet by the stream's :class:`~rtfd.stream.sinks.ParquetBatchWriter`, and its alerts
(explained) are sent and flushed, as the stream does per batch.

Left out, and said so in the report: merchant-risk features (an empty table: zeros, as the
stream has before labels mature), de-duplication of re-delivered ids, dead letters to Kafka
(invalid rows are counted and dropped; the backlog has none).
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
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
CHUNK = 50_000  # messages per processing step (the stream's batches are of this order too)


def _read_options() -> tuple[Any, Any]:
    import pyarrow as pa
    import pyarrow.json as pj

    from rtfd.schemas import TRANSACTION

    arrow = TRANSACTION.arrow_schema()
    # Timestamps are read as text and converted after the format check.
    fields = [
        pa.field(f.name, pa.string() if f.type == "timestamp" else arrow.field(f.name).type)
        for f in TRANSACTION.fields
    ]
    parse = pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
    read = pj.ReadOptions(use_threads=False, block_size=64 << 20)
    return parse, read


def parse_chunk(values: list[bytes], options: tuple[Any, Any]) -> Any:
    """The messages as one Arrow table (JSON lines), or None when Arrow's reader refuses the
    chunk (malformed JSON, a wrong type): the caller then falls back to record-by-record."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        return pj.read_json(
            io.BytesIO(b"\n".join(v.replace(b"\n", b" ") for v in values)),
            parse_options=options[0],
            read_options=options[1],
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def validate_table(
    table: Any, kafka_ts_ms: np.ndarray, *, max_future_s: float, max_amount: float
) -> tuple[Any, np.ndarray]:
    """(frame, valid mask): the table as pandas with parsed timestamps, and which rows pass
    every constraint of TRANSACTION (the rules of ``RecordSchema.validate``, vectorised)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from rtfd.features.kernel import timestamps_ms
    from rtfd.schemas import MIN_TIMESTAMP, TIMESTAMP_RE, TRANSACTION

    n = table.num_rows
    ok = np.ones(n, dtype=bool)
    stamps: dict[str, Any] = {}
    for f in TRANSACTION.fields:
        col = table.column(f.name)
        present = pc.is_valid(col).to_numpy(zero_copy_only=False)
        if f.required:
            ok &= present
        if f.type == "string":
            if f.max_length is not None:
                ok &= ~(pc.fill_null(pc.utf8_length(col), 0).to_numpy() > f.max_length)
            if f.required:
                ok &= pc.fill_null(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0).to_numpy() > 0
            if f.pattern is not None:
                match = pc.match_substring_regex(col, f"^(?:{f.pattern})$")
                ok &= pc.fill_null(match, True).to_numpy(zero_copy_only=False)
        elif f.type in ("double", "long", "int"):
            x = pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy()
            bad = present & ~np.isfinite(x)
            with np.errstate(invalid="ignore"):
                if f.positive:
                    bad |= present & (x <= 0)
                if f.name == "amount":
                    bad |= present & (x > max_amount)
                if f.min_value is not None:
                    bad |= present & (x < f.min_value)
                if f.max_value is not None:
                    bad |= present & (x > f.max_value)
            ok &= ~bad
        elif f.type == "timestamp":
            pattern = f"^\\s*(?:{TIMESTAMP_RE.pattern})\\s*$"
            ok &= pc.fill_null(pc.match_substring_regex(col, pattern), False).to_numpy(
                zero_copy_only=False
            )
            try:
                ts = pc.cast(col, pa.timestamp("ms", tz="UTC"))
                stamps[f.name] = ts.to_pandas()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                stamps[f.name] = pd.to_datetime(
                    col.to_pandas(), utc=True, format="ISO8601", errors="coerce"
                )
            ok &= stamps[f.name].notna().to_numpy()
            ms = timestamps_ms(stamps[f.name])  # NaT rows are already refused
            ok &= ms >= int(MIN_TIMESTAMP.timestamp() * 1000)
            ok &= ms <= kafka_ts_ms + int(max_future_s * 1000)
    frame = table.to_pandas()
    for name, values in stamps.items():
        frame[name] = values
    return frame, ok


def _fallback(values: list[bytes], kafka_ts_ms: np.ndarray, settings: Any) -> tuple[Any, Any]:
    """Record-by-record parse and validation for a chunk Arrow's reader refused."""
    import json
    from datetime import timedelta

    import pandas as pd

    from rtfd.errors import ValidationError
    from rtfd.schemas import TRANSACTION

    records, ok = [], []
    for v, ts in zip(values, kafka_ts_ms.tolist(), strict=True):
        try:
            rec = TRANSACTION.validate(
                json.loads(v),
                now=datetime.fromtimestamp(ts / 1000, tz=UTC),
                max_future=timedelta(seconds=settings.stream_max_future_s),
                max_amount=settings.stream_max_amount,
            )
            records.append(rec)
            ok.append(True)
        except (ValueError, ValidationError):
            records.append(dict.fromkeys(TRANSACTION.names))
            ok.append(False)
    frame = pd.DataFrame.from_records(records, columns=TRANSACTION.names)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame, np.asarray(ok, dtype=bool)


class LimitPipeline:
    """One process: consume -> parse -> validate -> kernel -> score -> Parquet -> alerts."""

    def __init__(self, settings: Any, *, topic: str, alerts_topic: str, run: int) -> None:
        from rtfd.broker import client_config
        from rtfd.features.kernel import KernelState
        from rtfd.stream.scoring import ModelHolder
        from rtfd.stream.sinks import (
            PARTITION_COLUMN,
            KafkaPublisher,
            ParquetBatchWriter,
            enriched_arrow_schema,
        )

        self.settings = settings
        self.topic = topic
        self.alerts_topic = alerts_topic
        self.run = run
        self.state = KernelState()
        self.model = ModelHolder(settings).current()
        self.schema = enriched_arrow_schema()
        self.writer = ParquetBatchWriter(
            settings.enriched_dir / f"run{run}",
            partition_column=PARTITION_COLUMN,
            date_source="timestamp",
        )
        self.publisher = KafkaPublisher(client_config(settings))
        self.options = _read_options()
        self.invalid = 0
        self.alerts = 0
        self.batches = 0
        self.steps: dict[str, float] = {}

    def _step(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.steps[name] = self.steps.get(name, 0.0) + now - t0
        return now

    def process(self, msgs: list[Any]) -> int:
        """Run one chunk of messages through the whole pipeline; returns the rows written."""
        import pandas as pd

        from rtfd.features.kernel import step_batch
        from rtfd.stream.sinks import alert_records

        t = time.perf_counter()
        values = [m.value() for m in msgs]
        parts = np.fromiter((m.partition() for m in msgs), dtype=np.int32, count=len(msgs))
        offsets = np.fromiter((m.offset() for m in msgs), dtype=np.int64, count=len(msgs))
        kafka_ms = np.fromiter((m.timestamp()[1] for m in msgs), dtype=np.int64, count=len(msgs))
        t = self._step("consume", t)
        table = parse_chunk(values, self.options)
        if table is None:
            frame, ok = _fallback(values, kafka_ms, self.settings)
        else:
            frame, ok = validate_table(
                table,
                kafka_ms,
                max_future_s=self.settings.stream_max_future_s,
                max_amount=self.settings.stream_max_amount,
            )
        frame["kafka_partition"] = parts
        frame["kafka_offset"] = offsets
        self.invalid += int((~ok).sum())
        valid = frame[ok].reset_index(drop=True)
        t = self._step("parse+validate", t)
        self.state, feats = step_batch(self.state, valid)
        t = self._step("kernel", t)
        model = self.model
        scores = np.asarray(model.score(feats), dtype=np.float64)
        t = self._step("score", t)
        out = pd.concat([valid, feats], axis=1)
        out["fraud_score"] = scores
        out["is_fraud"] = scores >= float(model.threshold)
        out["model_version"] = str(model.version)
        now = datetime.now(UTC)
        out["processed_at"] = now
        self.writer.write(
            out[self.schema.names], self.schema, query_id="limit000", batch_id=self.batches
        )
        t = self._step("parquet", t)
        flagged = out[out["is_fraud"]]
        if len(flagged):
            reasons = model.explain(flagged[list(model.features)], top=3)
            alerts = alert_records(
                flagged,
                flagged["fraud_score"].to_numpy(),
                [list(r) for r in reasons],
                model_version=str(model.version),
                threshold=float(model.threshold),
                scored_at=now,
            )
            self.publisher.send(self.alerts_topic, ((a["transaction_id"], a) for a in alerts))
            self.publisher.flush()
            self.alerts += len(alerts)
        self._step("alerts", t)
        self.batches += 1
        return len(valid)

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
            self.publisher.close()
        return time.perf_counter() - t0


def bench_limit(report: Any, settings: Any, runs: int) -> None:
    """Drain the same backlog ``runs`` times through the no-Spark pipeline."""
    scale = scale_of(report)
    s = sub_settings(settings, "limit")
    s.ensure_dirs()
    install_models(settings, s, scale)
    topics = create_topics(s, unique_prefix("limit"))
    n = scale.backlog
    blast(s, topics.transactions, payload_files(settings, scale, runs)[1])
    fig = report.figure(
        SECTION,
        "drain rate, no Spark (consume → parse → validate → kernel → score → Parquet → alerts)",
        "rows/s",
        note=f"{n:,}-transaction backlog, one process, {CHUNK:,}-message chunks",
    )
    steps: dict[str, list[float]] = {}
    for run in range(runs):
        pipeline = LimitPipeline(s, topic=topics.transactions, alerts_topic=topics.alerts, run=run)
        took = pipeline.drain(n)
        fig.values.append(n / took)
        for k, v in pipeline.steps.items():
            steps.setdefault(k, []).append(1e6 * v / n)
        if pipeline.invalid:
            fig.note += f"; run {run}: {pipeline.invalid} invalid rows dropped"
    report.shared["limit_drain"] = fig
    per_row_us = {k: float(np.median(v)) for k, v in steps.items()}
    report.shared["limit_steps_us"] = per_row_us
    per_row = ", ".join(f"{k} {v:.1f}" for k, v in per_row_us.items())
    report.notes[SECTION] = (
        "The fastest path for the same work on this machine, without Spark: one process, one "
        "core for the pipeline (librdkafka's threads aside). Per row (µs, median of the runs): "
        f"{per_row}. Not done here (the stream does them): merchant-risk features (an empty "
        "table, zeros — as in the stream before labels mature), de-duplication of re-delivered "
        "transaction ids, dead letters to Kafka (the backlog has no invalid row)."
    )


SECTIONS = {SECTION: bench_limit}
BUDGET_S = {SECTION: 45}
