"""StreamRunner: the streaming job as an object the CLI, the supervisor and the TUI can drive.

``start()`` returns at once; a worker thread then takes the checkpoint lock, ends orphans of a
killed run, makes sure a model exists (training a bootstrap model if needed), creates the topics,
starts Spark in-process and starts two queries:

* ``transactions``: with a local master (``stream_state = auto``), Kafka -> ``foreachBatch``, the
  per-user state in this process beside it (rtfd.stream.engine); on a cluster, Kafka -> decode
  on the executors -> Spark's bucketed state operator -> ``foreachBatch`` (rtfd.stream.cluster).
  Either way: validation, features, score, Parquet (rtfd.lake), alerts, dead letters;
* ``labels``: Kafka -> ``foreachBatch`` -> validate -> labels Parquet (dead letters to the DLQ).

``state`` tells where it is (starting / running / failed / stopped, with a reason), observers
added with ``add_listener`` get a :class:`~rtfd.stream.progress.StreamProgress` per micro-batch,
and ``stop()`` stops the queries, Spark and its JVM cleanly.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rtfd.config import Settings
from rtfd.errors import ConfigError, RtfdError
from rtfd.schemas import Topics
from rtfd.stream.progress import Observer, ProgressHub, StreamProgress

if TYPE_CHECKING:
    from rtfd.stream.sinks import Outlets

log = logging.getLogger(__name__)

# Labels are chargebacks, minutes to days late: a slower trigger leaves the cores to scoring.
LABELS_TRIGGER_S = 15.0
STOP_TIMEOUT_MS = 30_000
# Spark's Kafka source reads with the Java client's fetch sizes unless [client_java] says
# otherwise; its defaults (1 MiB a partition a fetch, 500 records a poll) take many round trips
# for a drain batch of 50,000 records (docs/design.md, "A large batch on a few threads").
SOURCE_FETCH = {
    "max.partition.fetch.bytes": str(16 << 20),
    "fetch.max.bytes": str(64 << 20),
    "max.poll.records": "20000",
}

PHASES = ("idle", "starting", "running", "failed", "stopped")


@dataclass(frozen=True)
class StreamTopics:
    """The topics one stream reads and writes."""

    transactions: str = Topics.TRANSACTIONS
    labels: str = Topics.LABELS
    alerts: str = Topics.ALERTS
    dlq: str = Topics.DLQ

    @classmethod
    def with_prefix(cls, prefix: str) -> StreamTopics:
        """Every topic name prefixed (several streams, or tests, on one broker)."""
        return cls(
            *(prefix + t for t in (Topics.TRANSACTIONS, Topics.LABELS, Topics.ALERTS, Topics.DLQ))
        )


class TransactionSink(Protocol):
    """``foreachBatch`` of the transactions query, either path (engine or cluster sink), with
    the background work (Parquet flushes, compaction) it needs while the query runs."""

    def __call__(self, df: Any, batch_id: int) -> None: ...
    def start_background(self) -> None: ...
    def stop(self, timeout: float = 30.0) -> None: ...


@dataclass(frozen=True)
class RunnerState:
    """Where the runner is: ``phase`` in :data:`PHASES`, and why."""

    phase: str
    reason: str = ""
    since: float = 0.0

    @property
    def active(self) -> bool:
        return self.phase in ("starting", "running")


class StreamRunner:
    """The Spark streaming job, in this process."""

    def __init__(
        self,
        settings: Settings,
        *,
        console: bool = False,
        topics: StreamTopics | None = None,
        console_writer: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.topics = topics or StreamTopics()
        self.console = console
        self._console_writer = console_writer or _print_line
        self._clock = clock
        self.hub = ProgressHub()
        self._lock = threading.RLock()
        self._state = RunnerState("idle", since=clock())
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None
        self._queries: dict[str, Any] = {}
        self._publisher: Any = None
        self._engine: TransactionSink | None = None
        self._checkpoint_lock: Any = None
        self._state_listeners: list[Callable[[RunnerState], None]] = []
        self._teardown_lock = threading.Lock()

    # -- public API --------------------------------------------------------------------------
    @property
    def state(self) -> RunnerState:
        with self._lock:
            return self._state

    def add_listener(self, fn: Observer) -> None:
        """Call ``fn(StreamProgress)`` after every micro-batch (on Spark's listener thread)."""
        self.hub.add_listener(fn)

    def remove_listener(self, fn: Observer) -> None:
        self.hub.remove_listener(fn)

    def add_state_listener(self, fn: Callable[[RunnerState], None]) -> None:
        """Call ``fn(RunnerState)`` on every phase or reason change (any thread)."""
        with self._lock:
            self._state_listeners.append(fn)

    def latest_progress(self, query: str = "transactions") -> StreamProgress | None:
        return self.hub.latest(query)

    def checkpoint_dir(self, query: str) -> Path:
        name = self.topics.transactions if query == "transactions" else self.topics.labels
        return self.settings.checkpoints_dir / name

    def start(self) -> None:
        """Start in the background; watch ``state`` (or :meth:`wait_running`)."""
        with self._lock:
            if self._state.active:
                raise RtfdError("the stream is already running", title="Stream already running")
            self._stop_requested.clear()
            self._set_state("starting", "starting")
            self._thread = threading.Thread(
                target=self._start_worker, name="rtfd-stream-start", daemon=True
            )
            self._thread.start()

    def wait_running(self, timeout: float = 300.0) -> RunnerState:
        """Block until the runner is running, failed or stopped (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state
            if state.phase != "starting":
                return state
            time.sleep(0.1)
        return self.state

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the queries, Spark and its JVM; idempotent, safe from any thread."""
        self._stop_requested.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._teardown(timeout)
        with self._lock:
            if self._state.phase != "failed":
                self._set_state("stopped", "stopped")

    # -- internals ---------------------------------------------------------------------------
    def _teardown(self, timeout: float = 60.0) -> None:
        """Release what a run holds: queries, the publisher, Spark and its JVM, the checkpoint
        lock. Serialised, so a failure's background clean-up and a restart never overlap."""
        with self._teardown_lock:
            with self._lock:
                queries = dict(self._queries)
                self._queries.clear()
                handle, self._handle = self._handle, None
                publisher, self._publisher = self._publisher, None
                engine, self._engine = self._engine, None
                lock, self._checkpoint_lock = self._checkpoint_lock, None
            for name, q in queries.items():
                try:
                    q.stop()
                except Exception as e:  # the query may be failing on its own already
                    log.warning("stopping query %s: %s", name, e)
            if engine is not None:
                engine.stop()
            if publisher is not None:
                publisher.close()
            if handle is not None:
                from rtfd.stream.session import stop_spark

                stop_spark(handle, timeout=timeout)
            if lock is not None:
                lock.release()

    def _set_state(self, phase: str, reason: str = "") -> None:
        with self._lock:
            if self._state.phase == phase and self._state.reason == reason:
                return
            self._state = RunnerState(phase, reason, self._clock())
            listeners = list(self._state_listeners)
            state = self._state
        log.info("stream %s: %s", phase, reason)
        for fn in listeners:
            try:
                fn(state)
            except Exception:
                log.exception("state listener failed")

    def _step(self, reason: str) -> None:
        if self._stop_requested.is_set():
            raise _Cancelled
        self._set_state("starting", reason)

    def _start_worker(self) -> None:
        try:
            self._start_all()
        except _Cancelled:
            log.info("stream start cancelled")
        except RtfdError as e:
            self._set_state("failed", f"{e.title}: {e.message}")
            self._cleanup_after_failure()
        except Exception as e:
            log.exception("stream failed to start")
            self._set_state("failed", f"{type(e).__name__}: {e}")
            self._cleanup_after_failure()

    def _cleanup_after_failure(self) -> None:
        # Not stop(): that would also cancel a restart requested in the meantime.
        threading.Thread(target=self._teardown, name="rtfd-stream-cleanup", daemon=True).start()

    def _start_all(self) -> None:
        from rtfd.stream.procs import CheckpointLock, checkpoint_tag, end_orphans
        from rtfd.stream.session import TAG_ENV, start_spark

        s = self.settings
        s.ensure_dirs()
        # A restart after a failure: wait for (or do) the clean-up of the failed run, which
        # still holds the checkpoint lock and its Spark session.
        self._teardown()
        self._step("taking the checkpoint lock")
        lock = CheckpointLock(s.checkpoints_dir)
        lock.acquire()
        with self._lock:
            self._checkpoint_lock = lock
        tag = checkpoint_tag(s.checkpoints_dir)
        ended = end_orphans(tag, TAG_ENV)
        if ended:
            log.warning("ended %d orphan process(es) of a killed stream: %s", len(ended), ended)

        self._step("checking the model registry")
        from rtfd.stream.scoring import ensure_model

        def progress(message: str, fraction: float | None) -> None:
            self._set_state("starting", f"training a bootstrap model: {message}")

        try:
            from rtfd.ml.registry import Registry

            has_model = Registry(s.models_dir).current() is not None
        except ImportError as e:
            raise RtfdError(f"the model registry is not available: {e}") from e
        if not has_model:
            self._set_state("starting", "no model yet: training a bootstrap model (once)")
        version = ensure_model(s, progress=progress)
        log.info("model %s", version)

        self._step("creating topics")
        self._ensure_topics()

        self._step("starting Spark")
        handle = start_spark(s, tag=tag)
        with self._lock:
            self._handle = handle
        if self._stop_requested.is_set():
            raise _Cancelled

        self._step("starting the queries")
        self._start_queries(handle.spark)
        self._set_state("running", f"running (Spark {handle.spark.version}, model {version})")

    def _ensure_topics(self) -> None:
        ensure_stream_topics(self.settings, self.topics)

    def _kafka_options(self, topic: str, *, max_offsets: int | None) -> dict[str, str]:
        """Options of Spark's Kafka source: the Java client's properties (security derived from
        the broker_* settings, then [client], then [client_java]) as ``kafka.<key>``."""
        from rtfd.broker import bootstrap_servers
        from rtfd.broker.security import java_client_properties

        opts = {
            "kafka.bootstrap.servers": bootstrap_servers(self.settings),
            "subscribe": topic,
            "startingOffsets": "earliest",
            # Retention may delete offsets the stream has not read yet (a long pause): go on
            # from what is there rather than stopping the appliance.
            "failOnDataLoss": "false",
        }
        if max_offsets is not None:
            opts["maxOffsetsPerTrigger"] = str(max_offsets)
        for k, v in {**SOURCE_FETCH, **java_client_properties(self.settings)}.items():
            opts[f"kafka.{k}"] = v
        return opts

    def _layout(self, checkpoint: Path) -> list[int]:
        """The bucket values of this checkpoint (fixed at its creation), after checking that its
        per-user state was written in the format this version reads."""
        from rtfd.stream.state import STATE_VERSION, bucket_values

        path = checkpoint / "rtfd" / "layout.json"
        n = self.settings.stream_state_buckets
        if (checkpoint / "rtfd" / "redo").exists():
            raise ConfigError(
                f"the checkpoint {checkpoint} keeps its per-user state in the driver (written "
                "with stream_state = driver, the local default); set stream_state = driver to go "
                "on with it, or delete the checkpoint directory to start the per-user features "
                "afresh (Parquet, models and topics are kept)"
            )
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
            # Layouts from before the format was recorded hold format 1.
            fmt = int(stored.get("state_format", 1))
            if fmt != STATE_VERSION:
                raise ConfigError(
                    f"the checkpoint {checkpoint} holds per-user state in format {fmt}, and this "
                    f"rtfd reads format {STATE_VERSION}; delete the checkpoint directory to "
                    "start again (the per-user features then start empty; Parquet, models and "
                    "topics are kept)"
                )
            values = [int(v) for v in stored["buckets"]]
            if len(values) != n:
                raise ConfigError(
                    f"setting stream_state_buckets: the checkpoint {checkpoint} was created with "
                    f"{len(values)} buckets, not {n}; restore the setting or delete the checkpoint "
                    "(the per-user state then starts empty)"
                )
            return values
        values = bucket_values(n, self.settings.spark_shuffle_partitions)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "buckets": values,
                    "partitions": self.settings.spark_shuffle_partitions,
                    "state_format": STATE_VERSION,
                }
            ),
            encoding="utf-8",
        )
        return values

    def _kafka_source(self, spark: Any, topic: str) -> Any:
        """The Kafka source both queries read: raw records, nothing parsed in Spark."""
        options = self._kafka_options(
            topic, max_offsets=self.settings.stream_max_offsets_per_trigger
        )
        return (
            spark.readStream.format("kafka")
            .options(**options)
            .load()
            .select("value", "partition", "offset", "timestamp")  # one topic: no name per row
        )

    def _start_queries(self, spark: Any) -> None:
        from rtfd.broker import client_config
        from rtfd.stream.engine import LabelEngine
        from rtfd.stream.progress import make_spark_listener
        from rtfd.stream.risk import RiskTables
        from rtfd.stream.scoring import ModelHolder
        from rtfd.stream.sinks import KafkaPublisher, Outlets

        s = self.settings
        spark.conf.set("spark.sql.streaming.stopTimeout", str(STOP_TIMEOUT_MS))
        publisher = KafkaPublisher(client_config(s))
        with self._lock:
            self._publisher = publisher
        outlets = Outlets(
            publisher,
            alerts_topic=self.topics.alerts,
            dlq_topic=self.topics.dlq,
            console=self._console_writer if self.console else None,
        )
        names: dict[str, str] = {}
        spark.streams.addListener(make_spark_listener(self.hub, names, self._on_terminated))
        ck_tx = self.checkpoint_dir("transactions")
        risk = RiskTables(s, ck_tx / "rtfd" / "risk", clock=self._clock)
        risk.refresh_now()
        models = ModelHolder(s)
        models.current()  # load (verify) now, not in the first batch
        transactions = self._driver_sink if s.state_in_driver else self._spark_state_sink
        stream, sink = transactions(spark, ck_tx, outlets, models, risk)
        sink.start_background()
        with self._lock:
            self._engine = sink
        self._start_query(names, "transactions", stream, sink, s.stream_trigger_s)

        labels = LabelEngine(
            s,
            checkpoint=self.checkpoint_dir("labels"),
            topic=self.topics.labels,
            outlets=outlets,
            hub=self.hub,
            clock=self._clock,
        )
        source = self._kafka_source(spark, self.topics.labels)
        self._start_query(
            names, "labels", source, labels, max(LABELS_TRIGGER_S, s.stream_trigger_s)
        )

    def _start_query(
        self, names: dict[str, str], query: str, stream: Any, sink: Any, trigger_s: float
    ) -> None:
        """Start ``query`` (transactions or labels): ``stream`` -> ``foreachBatch(sink)``,
        checkpointed in :meth:`checkpoint_dir`, a batch every ``trigger_s`` seconds; ``names``
        lets the progress listener know it by its query id."""
        topic = self.topics.transactions if query == "transactions" else self.topics.labels
        started = (
            stream.writeStream.foreachBatch(sink)
            .option("checkpointLocation", str(self.checkpoint_dir(query)))
            .trigger(processingTime=f"{trigger_s} seconds")
            .queryName(f"rtfd-{topic}")
            .start()
        )
        names[str(started.id)] = query
        with self._lock:
            self._queries[query] = started

    def _driver_sink(
        self, spark: Any, checkpoint: Path, outlets: Outlets, models: Any, risk: Any
    ) -> tuple[Any, TransactionSink]:
        """Kafka -> foreachBatch, the per-user state beside it (rtfd.stream.engine), restored
        from the checkpoint before the query starts."""
        from rtfd.stream.engine import TransactionEngine

        engine = TransactionEngine(
            self.settings,
            checkpoint=checkpoint,
            topic=self.topics.transactions,
            outlets=outlets,
            hub=self.hub,
            models=models,
            risk=risk,
            clock=self._clock,
        )
        self._set_state("starting", "restoring the per-user state from the checkpoint")
        report = engine.recover()
        log.info("%s", report)
        return self._kafka_source(spark, self.topics.transactions), engine

    def _spark_state_sink(
        self, spark: Any, checkpoint: Path, outlets: Outlets, models: Any, risk: Any
    ) -> tuple[Any, TransactionSink]:
        """Kafka -> decode on the executors -> Spark's bucketed state operator -> foreachBatch
        (rtfd.stream.cluster: the path for a cluster)."""
        from rtfd.stream.cluster import ClusterSink, decode_in_spark
        from rtfd.stream.state import apply_user_state

        s = self.settings
        buckets = self._layout(checkpoint)
        source = self._kafka_source(spark, self.topics.transactions)
        decoded = decode_in_spark(source, s, self.topics.transactions)
        scored_input = apply_user_state(
            decoded, buckets=buckets, ttl_s=s.stream_state_ttl_hours * 3600.0
        )
        sink = ClusterSink(
            s,
            checkpoint=checkpoint,
            outlets=outlets,
            hub=self.hub,
            models=models,
            risk=risk,
            clock=self._clock,
        )
        return scored_input, sink

    def _on_terminated(self, name: str, error: str | None, query_id: str = "") -> None:
        if self._stop_requested.is_set():
            return
        with self._lock:
            if self._state.phase == "failed":
                return  # the other query, stopped by the clean-up: keep the first reason
            current = {str(q.id) for q in self._queries.values()}
            if query_id and query_id not in current:
                return  # a query of an earlier run, stopped by its clean-up (a late event)
        # An error raised in foreachBatch reaches here wrapped in py4j's "An exception was raised
        # by the Python Proxy" and a traceback: show rtfd's own one-line message when there is one.
        raised = re.findall(r"^rtfd\.errors\.\w+: (.+)$", error or "", re.M)
        text = raised[-1] if raised else (error or "stopped").strip().splitlines()[0]
        first = text.strip()[:300]
        log.error("query %s terminated: %s", name, error)
        self._set_state("failed", f"{name} query stopped: {first}")
        self._cleanup_after_failure()


def ensure_stream_topics(settings: Settings, topics: StreamTopics) -> None:
    """Create the stream's four topics if missing (partitions and retention from settings)."""
    from rtfd.broker import client_config
    from rtfd.broker.admin import TopicSpec, ensure_topics, topic_specs

    names = {
        Topics.TRANSACTIONS: topics.transactions,
        Topics.LABELS: topics.labels,
        Topics.ALERTS: topics.alerts,
        Topics.DLQ: topics.dlq,
    }
    specs = [TopicSpec(names[s.name], s.partitions, s.config) for s in topic_specs(settings)]
    ensure_topics(client_config(settings), specs)


class _Cancelled(Exception):
    """stop() was called while the runner was starting."""


def _print_line(line: str) -> None:
    print(line, file=sys.stdout, flush=True)
