"""The driver-side half of each micro-batch: risk features, scoring, and the sinks.

Spark runs parsing, validation and the per-user state; ``foreachBatch`` hands the batch's output
to :class:`TransactionSink`, which collects it once as Arrow (one Spark action per batch), adds
the merchant-risk features from the periodically refreshed table, scores the whole batch with one
vectorised call, writes Parquet (exactly once), sends alerts and dead letters, and reports.

Errors are never swallowed here: a batch that returns normally is committed by Spark, so a
half-written batch must fail and be replayed instead.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfd.config import Settings
from rtfd.stream.progress import BatchStats, ProgressHub
from rtfd.stream.scoring import BatchLog, ModelHolder
from rtfd.stream.sinks import (
    LABEL_PARTITION_COLUMN,
    PARTITION_COLUMN,
    KafkaPublisher,
    ParquetBatchWriter,
    alert_records,
    dead_letter_records,
    enriched_arrow_schema,
    format_alert_line,
    labels_arrow_schema,
)
from rtfd.stream.state import KIND_DEAD, KIND_DUPLICATE, KIND_VALID

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# Explaining an alert costs milliseconds (SHAP on the whole model). In an alert flood (a bad
# model, a new fraud wave) explaining them all would stall the stream, so a batch explains at
# most this many, highest scores first; the others say why they have no explanation.
MAX_EXPLAINED_ALERTS = 2_000
UNEXPLAINED = "explanation skipped: too many alerts in this batch"


def query_id_of(checkpoint: Path) -> str:
    """The id Spark keeps for a query in ``<checkpoint>/metadata`` (stable across restarts)."""
    data = json.loads((checkpoint / "metadata").read_text(encoding="utf-8"))
    return str(data["id"]).replace("-", "")


def _percentiles(values: np.ndarray) -> tuple[float | None, float | None]:
    if len(values) == 0:
        return None, None
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99)


def _ms(ts: pd.Series) -> np.ndarray:
    from rtfd.features.kernel import timestamps_ms

    return timestamps_ms(ts)


def explain_alerts(model: Any, flagged: pd.DataFrame) -> list[list[str]]:
    """Reasons for each flagged row (at most :data:`MAX_EXPLAINED_ALERTS` explained)."""
    features = flagged[list(model.features)]
    if len(flagged) <= MAX_EXPLAINED_ALERTS:
        return [list(r) for r in model.explain(features, top=3)]
    order = np.argsort(-flagged["fraud_score"].to_numpy(), kind="stable")
    chosen = order[:MAX_EXPLAINED_ALERTS]
    reasons: list[list[str]] = [[UNEXPLAINED] for _ in range(len(flagged))]
    for i, r in zip(chosen, model.explain(features.iloc[chosen], top=3), strict=True):
        reasons[int(i)] = list(r)
    log.warning(
        "alert flood: %d alerts in one batch, %d explained", len(flagged), MAX_EXPLAINED_ALERTS
    )
    return reasons


class RiskTableProvider:
    """The merchant-risk table, rebuilt from Parquet in the background once per period."""

    def __init__(self, settings: Settings, *, clock: Clock = time.time) -> None:
        from rtfd.features.merchant_risk import DEFAULT_PERIOD_S

        self.settings = settings
        self.period_s = DEFAULT_PERIOD_S
        self._clock = clock
        self._table: Any = None
        self._period: int | None = None
        self._lock = threading.Lock()
        self._refreshing = False

    def _build(self) -> Any:
        from datetime import datetime as dt

        from rtfd.features.merchant_risk import refresh_from_parquet

        now = dt.fromtimestamp(self._clock(), tz=UTC)
        return refresh_from_parquet(self.settings, now=now, period_s=self.period_s)

    def refresh_now(self) -> None:
        """Rebuild synchronously (at start, so the first batch already has the table)."""
        table = self._build()
        with self._lock:
            self._table = table
            self._period = int(self._clock() // self.period_s)
        log.info("merchant risk table: %d merchants", len(table))

    def table(self) -> Any:
        """The current table; starts a background rebuild when a new period began."""
        period = int(self._clock() // self.period_s)
        with self._lock:
            due = self._period != period and not self._refreshing
            if due:
                self._refreshing = True
            table = self._table
        if due:
            threading.Thread(target=self._refresh_bg, args=(period,), daemon=True).start()
        if table is None:
            from rtfd.features.merchant_risk import MerchantRiskTable

            table = MerchantRiskTable.empty(
                label_delay_s=self.settings.label_maturity_days * 86_400.0, period_s=self.period_s
            )
        return table

    def _refresh_bg(self, period: int) -> None:
        try:
            table = self._build()
            with self._lock:
                self._table, self._period = table, period
            log.info("merchant risk table refreshed: %d merchants", len(table))
        except Exception:
            log.exception("merchant risk refresh failed; keeping the previous table")
        finally:
            with self._lock:
                self._refreshing = False


class TransactionSink:
    """``foreachBatch`` of the transactions query."""

    def __init__(
        self,
        settings: Settings,
        *,
        checkpoint: Path,
        alerts_topic: str,
        dlq_topic: str,
        publisher: KafkaPublisher,
        hub: ProgressHub,
        models: ModelHolder,
        risk: RiskTableProvider,
        console: Callable[[str], None] | None = None,
        clock: Clock = time.time,
        name: str = "transactions",
    ) -> None:
        self.settings = settings
        self.checkpoint = checkpoint
        self.alerts_topic = alerts_topic
        self.dlq_topic = dlq_topic
        self.publisher = publisher
        self.hub = hub
        self.models = models
        self.risk = risk
        self.console = console
        self.clock = clock
        self.name = name
        self.writer = ParquetBatchWriter(
            settings.enriched_dir, partition_column=PARTITION_COLUMN, date_source="timestamp"
        )
        self.batch_log = BatchLog(checkpoint / "rtfd" / "batches")
        self.schema = enriched_arrow_schema()
        self.bucket_users: dict[int, int] = {}
        self._query_id: str | None = None

    def __call__(self, df: Any, batch_id: int) -> None:
        self.process(df.toArrow().to_pandas(), int(batch_id))

    def process(self, pdf: pd.DataFrame, batch_id: int) -> BatchStats:
        """Score and write one batch (the operator's output as pandas)."""
        from rtfd.features.names import RISK_FEATURES

        t0 = time.monotonic()
        if self._query_id is None:
            self._query_id = query_id_of(self.checkpoint)
        kind = pdf["row_kind"].to_numpy()
        folded = (kind == KIND_VALID) | (kind == KIND_DUPLICATE)
        counted = pdf.loc[folded, ["bucket", "state_users"]]
        if len(counted):
            for b, users in counted.groupby("bucket")["state_users"].max().items():
                self.bucket_users[int(b)] = int(users)
        dead = pdf[kind == KIND_DEAD]
        n_dupes = int((kind == KIND_DUPLICATE).sum())
        valid = pdf[kind == KIND_VALID].reset_index(drop=True)
        model_version: str | None = None
        alerts: list[dict[str, Any]] = []
        marks: dict[str, float] = {}
        if len(valid):
            model = self.models.for_batch(self.batch_log, batch_id)
            model_version = str(model.version)
            marks["model"] = time.monotonic()
            risk = self.risk.table().lookup_ms(
                valid["merchant_id"].to_numpy(dtype=object), _ms(valid["timestamp"])
            )
            for n in RISK_FEATURES:
                valid[n] = np.asarray(risk[n], dtype=np.float64)
            features = valid[list(model.features)]
            marks["risk"] = time.monotonic()
            scores = np.asarray(model.score(features), dtype=np.float64)
            marks["score"] = time.monotonic()
            threshold = float(model.threshold)
            now = datetime.fromtimestamp(self.clock(), tz=UTC)
            valid["fraud_score"] = scores
            valid["is_fraud"] = scores >= threshold
            valid["model_version"] = model_version
            valid["processed_at"] = now
            self.writer.write(
                valid[[*self.schema.names]],
                self.schema,
                query_id=self._query_id,
                batch_id=batch_id,
            )
            marks["parquet"] = time.monotonic()
            flagged = valid[valid["is_fraud"]]
            if len(flagged):
                reasons = explain_alerts(model, flagged)
                marks["explain"] = time.monotonic()
                alerts = alert_records(
                    flagged,
                    flagged["fraud_score"].to_numpy(),
                    reasons,
                    model_version=model_version,
                    threshold=threshold,
                    scored_at=now,
                )
                self.publisher.send(self.alerts_topic, ((a["transaction_id"], a) for a in alerts))
        if len(dead):
            seen = datetime.fromtimestamp(self.clock(), tz=UTC)
            records = dead_letter_records(dead, seen_at=seen)
            self.publisher.send(
                self.dlq_topic,
                ((f"{r['topic']}:{r['partition']}:{r['offset']}", r) for r in records),
            )
        if len(alerts) or len(dead):
            self.publisher.flush()
            marks["flush"] = time.monotonic()
        committed_ms = self.clock() * 1000.0
        lat50 = lat99 = ev50 = ev99 = None
        if len(valid):
            lat50, lat99 = _percentiles(committed_ms - _ms(valid["kafka_ts"]))
            ev50, ev99 = _percentiles(committed_ms - _ms(valid["timestamp"]))
        if self.console is not None:
            for a in alerts:
                self.console(format_alert_line(a))
        stats = BatchStats(
            query=self.name,
            batch_id=batch_id,
            rows=len(valid),
            alerts=len(alerts),
            dead_letters=len(dead),
            duplicates=n_dupes,
            state_users=sum(self.bucket_users.values()) if self.bucket_users else None,
            model_version=model_version or self.models.current_version,
            latency_p50_ms=lat50,
            latency_p99_ms=lat99,
            event_latency_p50_ms=ev50,
            event_latency_p99_ms=ev99,
            sink_ms=(time.monotonic() - t0) * 1000.0,
        )
        steps, last = [], t0
        for step, at in marks.items():
            steps.append(f"{step} {1000 * (at - last):.0f}")
            last = at
        # scripts/bench_common.py (SinkSteps) reads this line's arguments: keep their order.
        log.info(
            "batch %d sink: %d rows, %d alerts, %d dead, %.0f ms (%s ms)",
            batch_id,
            len(valid),
            len(alerts),
            len(dead),
            stats.sink_ms,
            ", ".join(steps),
        )
        if n_dupes:
            log.warning("batch %d: dropped %d duplicate transaction(s)", batch_id, n_dupes)
        self.hub.record_batch(stats)
        return stats


class LabelSink:
    """``foreachBatch`` of the labels query: valid labels to Parquet, the rest to the DLQ."""

    def __init__(
        self,
        settings: Settings,
        *,
        checkpoint: Path,
        dlq_topic: str,
        publisher: KafkaPublisher,
        hub: ProgressHub,
        clock: Clock = time.time,
        name: str = "labels",
    ) -> None:
        self.checkpoint = checkpoint
        self.dlq_topic = dlq_topic
        self.publisher = publisher
        self.hub = hub
        self.clock = clock
        self.name = name
        self.writer = ParquetBatchWriter(
            settings.labels_dir, partition_column=LABEL_PARTITION_COLUMN, date_source="reported_at"
        )
        self.schema = labels_arrow_schema()
        self._query_id: str | None = None

    def __call__(self, df: Any, batch_id: int) -> None:
        self.process(df.toArrow().to_pandas(), int(batch_id))

    def process(self, pdf: pd.DataFrame, batch_id: int) -> BatchStats:
        if self._query_id is None:
            self._query_id = query_id_of(self.checkpoint)
        bad = pdf["reason"].notna().to_numpy()
        valid = pdf[~bad]
        dead = pdf[bad]
        self.writer.write(
            valid[[*self.schema.names]], self.schema, query_id=self._query_id, batch_id=batch_id
        )
        if len(dead):
            records = dead_letter_records(
                dead, seen_at=datetime.fromtimestamp(self.clock(), tz=UTC)
            )
            self.publisher.send(
                self.dlq_topic,
                ((f"{r['topic']}:{r['partition']}:{r['offset']}", r) for r in records),
            )
            self.publisher.flush()
        stats = BatchStats(
            query=self.name, batch_id=batch_id, rows=len(valid), dead_letters=len(dead)
        )
        self.hub.record_batch(stats)
        return stats
