"""Progress of the stream, per micro-batch, for the TUI and the logs.

Two halves meet here: the batch processor knows what it wrote (rows, alerts, dead letters,
end-to-end latency at the sink commit) and Spark's ``StreamingQueryListener`` knows the rates,
durations, state-store size and Kafka lag. :class:`ProgressHub` joins them by (query, batch id)
and calls every observer with one immutable :class:`StreamProgress`. Observers are called on
Spark's listener thread: they must be quick and must not call back into Spark (the TUI's
observer only posts a message).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchStats:
    """What the sink of one micro-batch did (filled in by the batch processor)."""

    query: str
    batch_id: int
    rows: int = 0  # valid rows written to Parquet
    alerts: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    skipped_offsets: int = 0  # offsets retention deleted before they were read (running total)
    state_users: int | None = None  # users (cards) held in state
    state_bytes: int | None = None  # memory of the per-user state
    state_bytes_written: int | None = None  # bytes of state this batch wrote (redo record)
    model_version: str | None = None
    latency_p50_ms: float | None = None  # Kafka (produce) timestamp -> sink commit
    latency_p99_ms: float | None = None
    event_latency_p50_ms: float | None = None  # event timestamp -> sink commit
    event_latency_p99_ms: float | None = None
    sink_ms: float = 0.0  # time spent in the driver-side sink
    steps_ms: dict[str, float] = field(default_factory=dict)  # the sink's phases


@dataclass(frozen=True)
class StreamProgress:
    """One micro-batch of one query, as the TUI and ``rtfd stream`` show it."""

    query: str  # "transactions" or "labels"
    batch_id: int
    timestamp: datetime
    input_rows: int
    input_rows_per_s: float
    processed_rows_per_s: float
    batch_duration_ms: int
    rows: int = 0
    alerts: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    skipped_offsets: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    event_latency_p50_ms: float | None = None
    event_latency_p99_ms: float | None = None
    state_rows: int | None = None  # Spark state-store rows (one per bucket)
    state_memory_bytes: int | None = None
    state_users: int | None = None
    state_bytes_written: int | None = None
    sink_ms: float | None = None
    steps_ms: dict[str, float] = field(default_factory=dict)
    offsets_behind: int | None = None  # Kafka lag after the batch (sum over partitions)
    model_version: str | None = None
    durations_ms: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """A one-line human summary (for logs and the CLI)."""
        lat = (
            f" lat p50/p99 {self.latency_p50_ms:.0f}/{self.latency_p99_ms:.0f} ms"
            if self.latency_p50_ms is not None and self.latency_p99_ms is not None
            else ""
        )
        lag = f" lag {self.offsets_behind}" if self.offsets_behind is not None else ""
        users = f" users {self.state_users}" if self.state_users is not None else ""
        model = f" model {self.model_version}" if self.model_version else ""
        skipped = (
            f" SKIPPED {self.skipped_offsets} offsets (retention)" if self.skipped_offsets else ""
        )
        return (
            f"{self.query} batch {self.batch_id}: {self.input_rows} in "
            f"({self.input_rows_per_s:.0f}/s in, {self.processed_rows_per_s:.0f}/s processed) "
            f"{self.batch_duration_ms} ms, {self.rows} written, {self.alerts} alerts, "
            f"{self.dead_letters} dead{lat}{lag}{users}{model}{skipped}"
        )


Observer = Callable[[StreamProgress], None]


class ProgressHub:
    """Joins sink stats with Spark's progress and fans the result out to observers."""

    MAX_PENDING = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._observers: list[Observer] = []
        self._pending: dict[tuple[str, int], BatchStats] = {}
        self._latest: dict[str, StreamProgress] = {}

    def add_listener(self, fn: Observer) -> None:
        with self._lock:
            self._observers.append(fn)

    def remove_listener(self, fn: Observer) -> None:
        with self._lock:
            if fn in self._observers:
                self._observers.remove(fn)

    def remove_listener_of(self, owner: object) -> None:
        """Remove the observers made for ``owner`` (their ``engine`` attribute)."""
        with self._lock:
            self._observers = [
                f for f in self._observers if getattr(f, "engine", None) is not owner
            ]

    def latest(self, query: str) -> StreamProgress | None:
        with self._lock:
            return self._latest.get(query)

    def record_batch(self, stats: BatchStats) -> None:
        """Called by the batch processor before Spark commits the batch."""
        with self._lock:
            self._pending[(stats.query, stats.batch_id)] = stats
            while len(self._pending) > self.MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))

    def on_spark_progress(self, query: str, progress: Any) -> None:
        """Called from the StreamingQueryListener with Spark's StreamingQueryProgress."""
        batch_id = int(progress.batchId)
        with self._lock:
            stats = self._pending.pop((query, batch_id), None)
        event = from_spark_progress(query, progress, stats)
        self.publish(event)

    def publish(self, event: StreamProgress) -> None:
        with self._lock:
            self._latest[event.query] = event
            observers = list(self._observers)
        log.info("%s", event.summary())
        for fn in observers:
            try:
                fn(event)
            except Exception:
                log.exception("stream progress observer %r failed", fn)


def _offsets_behind(progress: Any) -> int | None:
    """Kafka lag after the batch: latest available offsets minus the batch's end offsets."""
    total: int | None = None
    for source in progress.sources or []:
        lag = _lag_from_offsets(source)
        if lag is not None:
            total = (total or 0) + lag
    return total


def _as_offsets(value: Any) -> dict[str, dict[str, int]] | None:
    import json

    if value is None:
        return None
    try:
        data = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _lag_from_offsets(source: Any) -> int | None:
    end = _as_offsets(getattr(source, "endOffset", None))
    latest = _as_offsets(getattr(source, "latestOffset", None))
    if end is None or latest is None:
        return None
    lag = 0
    for topic, parts in latest.items():
        if not isinstance(parts, dict):
            return None
        done = end.get(topic, {})
        for p, off in parts.items():
            lag += max(0, int(off) - int(done.get(p, off)))
    return lag


def from_spark_progress(query: str, progress: Any, stats: BatchStats | None) -> StreamProgress:
    """Build a StreamProgress from Spark's progress object and the sink's stats."""
    state_rows = state_mem = None
    for op in progress.stateOperators or []:
        state_rows = (state_rows or 0) + int(op.numRowsTotal)
        state_mem = (state_mem or 0) + int(op.memoryUsedBytes)
    durations = {k: int(v) for k, v in (progress.durationMs or {}).items()}
    try:
        ts = datetime.fromisoformat(str(progress.timestamp).replace("Z", "+00:00"))
    except ValueError:
        ts = datetime.now(UTC)
    event = StreamProgress(
        query=query,
        batch_id=int(progress.batchId),
        timestamp=ts,
        input_rows=int(progress.numInputRows),
        input_rows_per_s=float(progress.inputRowsPerSecond or 0.0),
        processed_rows_per_s=float(progress.processedRowsPerSecond or 0.0),
        batch_duration_ms=int(
            getattr(progress, "batchDuration", 0) or durations.get("triggerExecution", 0)
        ),
        state_rows=state_rows,
        state_memory_bytes=state_mem,
        offsets_behind=_offsets_behind(progress),
        durations_ms=durations,
    )
    if stats is not None:
        event = replace(
            event,
            rows=stats.rows,
            alerts=stats.alerts,
            dead_letters=stats.dead_letters,
            duplicates=stats.duplicates,
            skipped_offsets=stats.skipped_offsets,
            state_bytes_written=stats.state_bytes_written,
            sink_ms=stats.sink_ms,
            steps_ms=dict(stats.steps_ms),
            latency_p50_ms=stats.latency_p50_ms,
            latency_p99_ms=stats.latency_p99_ms,
            event_latency_p50_ms=stats.event_latency_p50_ms,
            event_latency_p99_ms=stats.event_latency_p99_ms,
            state_users=stats.state_users,
            state_memory_bytes=(
                stats.state_bytes if stats.state_bytes is not None else event.state_memory_bytes
            ),
            model_version=stats.model_version,
        )
    return event


def make_spark_listener(
    hub: ProgressHub,
    names: dict[str, str],
    on_terminated: Callable[[str, str | None, str], None],
) -> Any:
    """A StreamingQueryListener that forwards progress to ``hub``.

    ``names`` maps Spark query ids to rtfd query names; ``on_terminated(name, error, id)`` is
    told when a query ends (error is None after a clean stop).

    PySpark's own bridge rebuilds each progress event field by field over py4j (hundreds of
    calls, some resolving class names by scanning every jar on the classpath): a JVM profile at
    1,000 tx/s put 15 % of the driver JVM's samples there. This listener's bridge asks the JVM
    for the event's JSON once and builds the same Python objects from it.
    """
    from pyspark import SparkContext
    from pyspark.sql.streaming import StreamingQueryListener
    from pyspark.sql.streaming.listener import QueryProgressEvent

    class _Listener(StreamingQueryListener):  # type: ignore[misc]
        def onQueryStarted(self, event: Any) -> None:
            pass

        def onQueryProgress(self, event: Any) -> None:
            try:
                progress = event.progress
                name = names.get(str(progress.id)) or progress.name or str(progress.id)
                hub.on_spark_progress(name, progress)
            except Exception:
                log.exception("progress listener failed")

        def onQueryIdle(self, event: Any) -> None:
            pass

        def onQueryTerminated(self, event: Any) -> None:
            try:
                name = names.get(str(event.id)) or str(event.id)
                on_terminated(name, event.exception, str(event.id))
            except Exception:
                log.exception("termination listener failed")

        @property
        def _jlistener(self) -> Any:
            if not hasattr(self, "_rtfd_jlistener"):
                jvm = SparkContext._jvm
                assert jvm is not None
                self._rtfd_jlistener = jvm.PythonStreamingQueryListenerWrapper(_JsonBridge(self))
            return self._rtfd_jlistener

    class _JsonBridge:
        """py4j implementation of Spark's PythonStreamingQueryListener interface."""

        def __init__(self, listener: _Listener) -> None:
            self.listener = listener

        def onQueryStarted(self, jevent: Any) -> None:
            pass

        def onQueryProgress(self, jevent: Any) -> None:
            import json

            try:
                data = json.loads(jevent.progress().json())
                self.listener.onQueryProgress(QueryProgressEvent.fromJson({"progress": data}))
            except Exception:
                log.exception("progress listener failed")

        def onQueryIdle(self, jevent: Any) -> None:
            pass

        def onQueryTerminated(self, jevent: Any) -> None:
            from pyspark.sql.streaming.listener import QueryTerminatedEvent

            self.listener.onQueryTerminated(QueryTerminatedEvent.fromJObject(jevent))

        class Java:
            implements: ClassVar[list[str]] = [
                "org.apache.spark.sql.streaming.PythonStreamingQueryListener"
            ]

    return _Listener()
