"""Fakes of the supervisor and the services for the TUI's pure UI tests and screenshots.

``FakeSupervisor`` has the real supervisor's interface and emits the same event types
(``rtfd.supervisor``), from a background thread where the real one does, so the app is exercised
exactly as in production; only the components behind it are make-believe.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from rtfd.components import ComponentStatus, GeneratorInfo, ModelInfo, State
from rtfd.config import Settings
from rtfd.errors import BrokerUnavailable, RtfdError
from rtfd.supervisor import (
    COMPONENTS,
    ComponentChanged,
    Event,
    ModelLive,
    Notice,
    StreamProgressEvent,
    TrainingProgress,
)
from rtfd.tui.backends import ModelCatalog, Services
from rtfd.tui.format import ModelRow

T0 = datetime(2025, 6, 14, 18, 30, 0, tzinfo=UTC)


class FakeGenerator:
    def __init__(self, rate: float = 200.0) -> None:
        self.rate = rate
        self.paused = False
        self.running = True
        self.sent = 48_213

    def toggle(self) -> bool:
        self.paused = not self.paused
        return not self.paused

    def set_rate(self, rate: float) -> None:
        self.rate = rate

    def stats(self) -> SimpleNamespace:
        actual = 0.0 if self.paused else self.rate * 0.995
        return SimpleNamespace(
            sent=self.sent, acked=self.sent, failed=0, labels_sent=402, actual_rate=actual
        )


class FakeBroker:
    name = "kafka"
    bootstrap_servers = "127.0.0.1:9092"
    started_here = True

    def client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap_servers}


@dataclass
class FakeSupervisor:
    """Same methods and events as ``rtfd.supervisor.Supervisor``; nothing real behind them."""

    settings: Settings
    fail_broker: bool = False
    bootstrap_steps: int = 3
    start_gate: threading.Event | None = None
    retrain_gate: threading.Event | None = None
    model_version: str = "v0002"
    broker: Any = None
    generator: Any = None
    stream: Any = None
    calls: list[str] = field(default_factory=list)
    stop_threads: list[str] = field(default_factory=list)
    #: LABEL records "published" by the triage keys; set ``labels_gate`` to hold them.
    labels: list[dict[str, Any]] = field(default_factory=list)
    fail_labels: bool = False
    labels_gate: threading.Event | None = None

    def __post_init__(self) -> None:
        self._statuses = {n: ComponentStatus(n, State.STOPPED) for n in COMPONENTS}
        self._subscribers: list[Callable[[Event], None]] = []
        self._lock = threading.RLock()
        self._training = threading.Lock()

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> None:
        self._subscribers.append(fn)

    def emit(self, event: Event) -> None:
        for fn in list(self._subscribers):
            fn(event)

    def set(self, name: str, state: State, detail: str = "") -> None:
        with self._lock:
            status = ComponentStatus(name, state, detail, since=0.0)
            self._statuses[name] = status
        self.emit(ComponentChanged(status))

    def statuses(self) -> dict[str, ComponentStatus]:
        with self._lock:
            return dict(self._statuses)

    @property
    def training(self) -> bool:
        return self._training.locked()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.calls.append("start")
        self.set("broker", State.STARTING, "starting")
        if self.fail_broker:
            self.set("broker", State.FAILED, "no broker answers at 127.0.0.1:9092")
            raise BrokerUnavailable("no broker answers at 127.0.0.1:9092")
        self.broker = FakeBroker()
        self.set("broker", State.RUNNING, "kafka 127.0.0.1:9092")
        self.set("model", State.STARTING, "checking the registry")
        for i in range(self.bootstrap_steps):
            fraction = (i + 1) / (self.bootstrap_steps + 1)
            self.emit(TrainingProgress(f"bootstrap step {i + 1}", fraction))
        if self.start_gate is not None:
            self.start_gate.wait(10)
        self.model_live()
        self.stream = object()
        self.set("stream", State.RUNNING, "query running")
        self.generator = FakeGenerator(self.settings.generator_rate)
        self.set("generator", State.RUNNING, self.generator_summary())

    def stop(self, timeout: float = 15.0) -> None:
        self.calls.append("stop")
        self.stop_threads.append(threading.current_thread().name)
        for name in ("generator", "stream", "broker"):
            self.set(name, State.STOPPED)

    # -- controls -----------------------------------------------------------------------------
    def model_info(self) -> ModelInfo | None:
        return ModelInfo(self.model_version, "xgboost", "supervised", 0.42)

    def model_live(self) -> None:
        info = self.model_info()
        assert info is not None
        self.set("model", State.RUNNING, info.summary())
        self.emit(ModelLive(info))

    def generator_info(self) -> GeneratorInfo | None:
        gen = self.generator
        if gen is None:
            return None
        stats = gen.stats()
        return GeneratorInfo(gen.rate, gen.paused, actual_rate=stats.actual_rate, failed=0)

    def generator_summary(self) -> str:
        info = self.generator_info()
        return "off" if info is None else info.summary()

    def client_config(self) -> dict[str, str]:
        if self.broker is not None:
            return dict(self.broker.client_config())
        return {"bootstrap.servers": "127.0.0.1:9092"}

    def toggle_generator(self) -> bool:
        self.calls.append("toggle_generator")
        if self.generator is None:
            raise RtfdError("the generator is not running", title="Generator")
        self.generator.toggle()
        self.set("generator", State.RUNNING, self.generator_summary())
        return not self.generator.paused

    def set_generator_rate(self, rate: float) -> float:
        self.calls.append(f"rate {rate:g}")
        if self.generator is None:
            raise RtfdError("the generator is not running", title="Generator")
        self.generator.set_rate(rate)
        self.set("generator", State.RUNNING, self.generator_summary())
        return rate

    def retrain(self, *, mode: str | None = None, algo: str | None = None) -> Any:
        if not self._training.acquire(blocking=False):
            raise RtfdError("a training run is already in progress", title="Retrain")
        try:
            self.calls.append("retrain")
            self.emit(Notice("information", "retraining started"))
            self.emit(TrainingProgress("building features", 0.3))
            if self.retrain_gate is not None:
                self.retrain_gate.wait(10)
            self.emit(TrainingProgress("evaluating", 0.9))
            number = int(self.model_version[1:]) + 1
            self.model_version = f"v{number:04d}"
            self.model_live()
            return SimpleNamespace(
                version=self.model_version,
                promoted=True,
                decision="the challenger wins",
                metrics={"average_precision": 0.912, "auc_roc": 0.991},
            )
        finally:
            self._training.release()

    def publish_label(self, decision: Any) -> dict[str, Any]:
        self.calls.append("publish_label")
        if self.labels_gate is not None:
            self.labels_gate.wait(10)
        if self.fail_labels:
            raise BrokerUnavailable("no broker acknowledged the label at 127.0.0.1:9092")
        record: dict[str, Any] = decision.record()
        self.labels.append(record)
        return record

    # -- test helpers -------------------------------------------------------------------------
    def progress(self, **overrides: Any) -> None:
        """Emit one progress record: the stream's real ``StreamProgress`` with these fields
        changed, and ``recent`` scored rows with it (which the real stream does not send)."""
        from rtfd.stream.progress import StreamProgress

        recent = overrides.pop("recent", None)
        record = StreamProgress(
            query="transactions",
            batch_id=17,
            timestamp=T0,
            input_rows=201,
            input_rows_per_s=201.0,
            processed_rows_per_s=1_985.0,
            batch_duration_ms=412,
            rows=201,
            alerts=1,
            dead_letters=0,
            latency_p50_ms=640.0,
            latency_p99_ms=1_180.0,
            state_rows=16,
            state_users=9_412,
            offsets_behind=0,
            model_version="v0002",
        )
        self.emit(StreamProgressEvent(replace(record, **overrides), tuple(recent or ())))


def scored_rows(n: int, *, seed: int = 7, start: datetime = T0) -> list[dict[str, Any]]:
    """Realistic scored rows, oldest first."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        score = rnd.betavariate(0.6, 9.0)
        if i % 23 == 5:
            score = 0.55 + rnd.random() * 0.44
        rows.append(
            {
                "transaction_id": f"tx_{rnd.randrange(16**24):024x}",
                "user_id": f"u{rnd.randrange(1, 10_001):06d}",
                "amount": round(rnd.lognormvariate(3.6, 1.0), 2),
                "fraud_score": score,
                "is_fraud": score >= 0.42,
                "model_version": "v0002",
                "timestamp": (start + timedelta(milliseconds=137 * i)).isoformat(),
            }
        )
    return rows


REASONS = (
    ["amount 14.2x the user's median", "first purchase at this merchant", "3 cities in 1 h"],
    ["9 transactions in 10 min", "small amounts at new merchants", "night-time activity"],
    ["2,140 km from the previous transaction", "implied speed 1,900 km/h", "new city"],
    ["merchant fraud rate 8.1% (30 d)", "amount 3.1x the user's median", "online channel"],
)


def alerts(n: int, *, seed: int = 3, start: datetime = T0) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        tx = f"tx_{rnd.randrange(16**24):024x}"
        out.append(
            {
                "alert_id": f"{tx}:v0002",
                "transaction_id": tx,
                "user_id": f"u{rnd.randrange(1, 10_001):06d}",
                "fraud_score": 0.45 + rnd.random() * 0.54,
                "timestamp": (start + timedelta(seconds=7 * i)).isoformat(),
                "model_version": "v0002",
                "threshold": 0.42,
                "amount": round(rnd.lognormvariate(5.0, 1.0), 2),
                "merchant_id": f"m{rnd.randrange(2_000):04d}",
                "reasons": REASONS[i % len(REASONS)],
                "scored_at": (start + timedelta(seconds=7 * i, milliseconds=830)).isoformat(),
            }
        )
    return out


class FakeAlertFeed:
    """Records its config; tests push alerts with :meth:`push` (from any thread)."""

    instances: ClassVar[list[FakeAlertFeed]] = []

    def __init__(self, config: dict[str, str], on_alerts: Any, on_state: Any) -> None:
        self.config = config
        self.on_alerts = on_alerts
        self.on_state = on_state
        self.started = False
        self.stopped = False
        FakeAlertFeed.instances.append(self)

    def start(self) -> None:
        self.started = True
        self.on_state(True, "reading fraud_alerts")

    def stop(self, timeout: float = 3.0) -> None:
        self.stopped = True

    def push(self, items: list[dict[str, Any]]) -> None:
        self.on_alerts([dict(a) for a in items])


@dataclass
class FakeResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    row_count: int
    truncated: bool
    elapsed_s: float


class FakeQueryService:
    """Canned answers: 'bad' in the SQL raises the real QueryError type."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queries: list[str] = []
        self.exports: list[tuple[str, Path]] = []
        self.closed = False

    def run(self, sql: str, limit: int | None = None) -> FakeResult:
        from rtfd.query.service import QueryError

        self.queries.append(sql)
        if "bad" in sql.lower():
            raise QueryError('Parser Error: syntax error at or near "bad"')
        if "enriched_transactions" in sql and "LIMIT 50" in sql and "timestamp" in sql:
            return FakeResult([], [], 0, False, 0.001)
        rows = [(f"u{i:05d}", 40 - i, round(0.99 - i * 0.03, 3)) for i in range(25)]
        cap = limit or len(rows)
        return FakeResult(
            ["user_id", "txns", "max_score"], rows[:cap], len(rows), cap < len(rows), 0.0123
        )

    def examples(self) -> dict[str, str]:
        return {
            "Top risky users": "SELECT user_id, count(*) AS txns FROM enriched_transactions",
            "Score distribution": "SELECT floor(fraud_score * 20) AS b FROM enriched_transactions",
        }

    def export_csv(self, sql: str, path: Path | str) -> int:
        self.exports.append((sql, Path(path)))
        Path(path).write_text("user_id\nu1\n", encoding="utf-8")
        return 25

    def close(self) -> None:
        self.closed = True


def fake_catalog_rows() -> list[ModelRow]:
    return [
        ModelRow(
            "v0002",
            True,
            "xgboost",
            "supervised",
            0.42,
            {"auc_roc": 0.991, "average_precision": 0.874, "precision": 0.81, "recall": 0.77},
            "2025-06-14 18:02:11",
            decided_by="0.862 vs 0.845",
            promotion="promoted 2025-06-14 18:02:12 · challenger vs v0001: AP 0.8620 vs 0.8450 "
            "for v0001 on v0002's holdout (41,200 rows, newer: decides)",
        ),
        ModelRow(
            "v0001",
            False,
            "xgboost",
            "supervised",
            0.38,
            {"auc_roc": 0.982, "average_precision": 0.801, "precision": 0.74, "recall": 0.72},
            "2025-06-14 17:41:53",
        ),
    ]


@dataclass
class FakeRegistry:
    rows: list[ModelRow] = field(default_factory=fake_catalog_rows)
    rollbacks: int = 0

    def catalog(self, settings: Settings) -> ModelCatalog:
        current = next((r.version for r in self.rows if r.live), None)
        return ModelCatalog(list(self.rows), current)

    def rollback(self, settings: Settings) -> str | None:
        self.rollbacks += 1
        live = next(i for i, r in enumerate(self.rows) if r.live)
        target = min(live + 1, len(self.rows) - 1)
        self.rows = [
            ModelRow(r.version, i == target, r.algo, r.mode, r.threshold, r.metrics, r.created)
            for i, r in enumerate(self.rows)
        ]
        return self.rows[target].version


def fake_services(
    registry: FakeRegistry | None = None,
    query: Callable[[Settings], Any] = FakeQueryService,
) -> Services:
    registry = registry or FakeRegistry()
    return Services(
        query_service=query,
        alert_feed=FakeAlertFeed,
        model_catalog=registry.catalog,
        rollback=registry.rollback,
    )


def write_enriched(settings: Settings, rows: int, *, seed: int = 5) -> None:
    """A day of scored transactions laid out like the stream's Parquet sink (hive partition)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    t0 = datetime(2025, 6, 14, tzinfo=UTC)
    scores = rng.beta(0.6, 9.0, rows)
    table = pa.table(
        {
            "transaction_id": [f"tx_{i:024x}" for i in range(rows)],
            "user_id": [f"u{int(u):06d}" for u in rng.integers(1, 40, rows)],
            "merchant_id": [f"m{int(m):06d}" for m in rng.integers(1, 20, rows)],
            "amount": np.round(rng.lognormal(3.5, 1.0, rows), 2),
            "currency": ["EUR"] * rows,
            "location": ["Lyon"] * rows,
            "timestamp": pa.array(
                [t0 + timedelta(seconds=10 * i) for i in range(rows)], pa.timestamp("ms", "UTC")
            ),
            "fraud_score": scores,
            "is_fraud": scores >= 0.42,
            "model_version": ["v0001"] * rows,
        }
    )
    part = settings.enriched_dir / "event_date=2025-06-14"
    part.mkdir(parents=True)
    pq.write_table(table, part / "part-00000.parquet")
