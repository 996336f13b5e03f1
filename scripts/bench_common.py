"""Helpers shared by the benchmark sections (``scripts/bench_*.py``); not a section itself.

What the sections share, so that their figures compare like with like:

* :class:`Scale`: the sizes and durations of one run (full, or ``--quick`` for development);
* :func:`bench_models`: three tiny models trained once per run on a small simulated history;
  the XGBoost one is live in the registry that the limit, the naive baseline and the stream all
  load (:func:`install_models`);
* :func:`make_payloads` / :func:`blast`: a backlog of simulated transactions, generated first
  (the simulator's own producer path, with the producer captured) and then sent as fast as the
  broker takes it, so that a drain measures the consumer and not the generator;
* per-row latency: Parquet rows (their Kafka coordinates and the file's commit time) and alerts
  (keyed by transaction id, with their own Kafka timestamp) against the transactions' Kafka
  produce timestamps, read back from the topics after the run so that measuring costs the
  pipeline nothing while it runs;
* :class:`RssSampler`: peak resident memory of a set of processes, sampled every second.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


# -- sizes -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """Sizes and durations of one benchmark run."""

    backlog: int  # transactions per drain (limit, naive, stream)
    component_rows: int  # rows through the kernel, the stateful operator, the Parquet sink
    scoring_rows: int
    producer_rows: int
    batch_rows: int  # micro-batch size of the in-process component benches
    latency_warm_s: float
    latency_measure_s: float  # split into three windows
    sustained_warm_s: float
    sustained_window_s: float  # three windows
    naive_latency: bool
    history_days: float  # the tiny models' training history
    history_users: int


FULL = Scale(
    backlog=100_000,
    component_rows=100_000,
    scoring_rows=100_000,
    producer_rows=50_000,
    batch_rows=10_000,
    latency_warm_s=8.0,
    latency_measure_s=36.0,
    sustained_warm_s=10.0,
    sustained_window_s=60.0,
    naive_latency=True,
    history_days=7.0,
    history_users=2_000,
)
QUICK = Scale(
    backlog=20_000,
    component_rows=30_000,
    scoring_rows=20_000,
    producer_rows=10_000,
    batch_rows=10_000,
    latency_warm_s=4.0,
    latency_measure_s=12.0,
    sustained_warm_s=4.0,
    sustained_window_s=12.0,
    naive_latency=True,
    history_days=3.0,
    history_users=1_000,
)


def warm_rows(scale: Scale) -> int:
    """Transactions sent to a pipeline before anything is measured (first batches, Python
    workers, the model's first call)."""
    return min(10_000, scale.backlog)


def scale_of(report: Any) -> Scale:
    """The run's scale (``--quick`` or full)."""
    return QUICK if report.options.get("quick") else FULL


def sub_settings(settings: Any, name: str, **overrides: Any) -> Any:
    """Settings of an isolated part of the run: its own home under the bench home, same broker."""
    from rtfd.broker import bootstrap_servers

    home = Path(settings.data_dir) / name
    return settings.replace(
        home=home,
        broker_bootstrap_servers=bootstrap_servers(settings),
        **overrides,
    )


# -- models ----------------------------------------------------------------------------------------
ALGOS = ("xgboost", "logreg", "iforest")
LIVE_ALGO = "xgboost"
_MODELS: dict[str, tuple[Path, dict[str, str], dict[str, float]]] = {}


def bench_models(settings: Any, scale: Scale) -> tuple[Path, dict[str, str], dict[str, float]]:
    """(registry dir, algo -> version, algo -> training seconds), trained once per run.

    A small simulated history (a few days of a couple of thousand users, time-lapsed like the
    live generator at 1,000 tx/s so that velocity features have the scale they have in serving)
    keeps training to seconds; the XGBoost model is the live one.
    """
    key = str(settings.data_dir)
    if key in _MODELS:
        return _MODELS[key]
    from datetime import UTC, datetime, timedelta

    from rtfd.ml.data import simulated_history
    from rtfd.ml.train import train_model

    s = sub_settings(settings, "models")
    s.ensure_dirs()
    time_scale = s.generator_time_scale
    history = simulated_history(
        scale.history_days,
        seed=s.generator_seed,
        users=scale.history_users,
        merchants=max(100, scale.history_users // 5),
        fraud_rate=max(s.generator_fraud_rate, 0.01),
        start=datetime.now(UTC) - timedelta(days=scale.history_days) / time_scale,
        time_scale=time_scale,
    )
    versions: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for algo in ALGOS:
        t0 = time.perf_counter()
        result = train_model(
            s, algo=algo, data=history, promote=algo == LIVE_ALGO, force=algo == LIVE_ALGO
        )
        seconds[algo] = time.perf_counter() - t0
        versions[algo] = result.version
    _MODELS[key] = (s.models_dir, versions, seconds)
    return _MODELS[key]


def install_models(settings: Any, target: Any, scale: Scale) -> str:
    """Copy the bench registry into ``target``'s models dir; returns the live version."""
    registry, versions, _ = bench_models(settings, scale)
    if target.models_dir.exists():
        shutil.rmtree(target.models_dir)
    target.models_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(registry, target.models_dir)
    return versions[LIVE_ALGO]


# -- realistic rows ------------------------------------------------------------------------------
def simulated_rows(settings: Any, rows: int) -> Any:
    """``rows`` simulated transactions of the configured population, oldest first (pandas)."""
    from rtfd.generator.history import simulate_history

    users = settings.generator_users
    days = max(1.0, rows / (users * 2.85))
    while True:
        frame = simulate_history(
            days,
            seed=settings.generator_seed,
            users=users,
            merchants=settings.generator_merchants,
            fraud_rate=settings.generator_fraud_rate,
        )
        if len(frame) >= rows:
            return frame.iloc[:rows].reset_index(drop=True)
        days *= 1.25 * rows / max(1, len(frame))


def enriched_table(history: Any, version: str) -> Any:
    """The rows of ``history`` as the stream writes them to Parquet (an Arrow table with the
    enriched schema: the offline kernel's features, spread scores, Kafka coordinates)."""
    import pandas as pd
    import pyarrow as pa

    from rtfd.features.names import FEATURE_NAMES
    from rtfd.features.offline import build_features
    from rtfd.stream.sinks import enriched_arrow_schema

    schema = enriched_arrow_schema()
    n = len(history)
    enriched = history.copy()
    feats = build_features(history)
    for c in FEATURE_NAMES:
        enriched[c] = feats[c].to_numpy()
    enriched["fraud_score"] = np.linspace(0.0, 1.0, n)
    enriched["is_fraud"] = enriched["fraud_score"] >= 0.9
    enriched["model_version"] = version
    enriched["kafka_partition"] = (np.arange(n) % 3).astype(np.int32)
    enriched["kafka_offset"] = np.arange(n, dtype=np.int64)
    enriched["processed_at"] = pd.Timestamp.now(tz="UTC").floor("ms")
    return pa.Table.from_pandas(enriched[schema.names], schema=schema, preserve_index=False)


# -- producing -------------------------------------------------------------------------------------
class _Capture:
    """Stands in for the Kafka producer of :func:`produce_transactions`: keeps the messages."""

    def __init__(self, _config: dict[str, Any]) -> None:
        self.messages: list[tuple[bytes, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.messages.append((value, key))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def make_payloads(settings: Any, n: int, cards: int | None = None) -> list[tuple[bytes, bytes]]:
    """``n`` (value, key) messages of fresh simulated transactions (new ids on every call),
    from the first ``cards`` cards of the world (default: as many as 1,000 tx/s makes active,
    the population of the latency runs)."""
    from rtfd.generator.live import cards_for_rate, produce_transactions

    captured: list[_Capture] = []

    def factory(config: dict[str, Any]) -> _Capture:
        captured.append(_Capture(config))
        return captured[-1]

    cards = cards_for_rate(settings, 1_000.0) if cards is None else cards
    produce_transactions(
        settings.replace(generator_users=cards), n, labels=False, producer_factory=factory
    )
    return captured[0].messages


PRODUCER_CONFIG = {
    # Idempotent with acks=all, as the generator's producer; batched for bulk sends.
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
}

# Runs in a subprocess: sending a backlog costs the measured process neither its interpreter
# lock nor memory. Lines are "key<TAB>value" (the generator's JSON has no raw tab or newline).
_BLAST = """
import json, sys
from confluent_kafka import Producer
config, topic, path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
producer = Producer(config)
with open(path, "rb") as f:
    for line in f:
        key, _, value = line.rstrip(b"\\n").partition(b"\\t")
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
sys.exit(1 if producer.flush(120) else 0)
"""
_PAYLOADS: dict[str, list[Path]] = {}


def payload_files(settings: Any, scale: Scale, runs: int) -> list[Path]:
    """Backlogs on disk, made once per bench run and shared by the limit, the naive baseline and
    the stream (each sends them to its own topics): a warm-up set, then ``runs`` sets of
    ``scale.backlog`` transactions, made in that order so that event time only moves forward
    when a pipeline reads them in that order."""
    root = Path(settings.data_dir)
    key = str(root)
    files = _PAYLOADS.setdefault(key, [])
    sizes = [warm_rows(scale)] + [scale.backlog] * runs
    directory = root / "payloads"
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(len(files), len(sizes)):
        path = directory / f"set-{i}.tsv"
        with path.open("wb") as f:
            for value, k in make_payloads(settings, sizes[i]):
                f.write(k + b"\t" + value + b"\n")
        files.append(path)
    return files[: len(sizes)]


def blast(settings: Any, topic: str, path: Path) -> float:
    """Send a payload file as fast as the broker takes it (from a subprocess); seconds until
    every message is acknowledged."""
    import json

    from rtfd.broker import client_config

    # Only plain properties cross the process boundary (client_config also carries a logger).
    config = {
        k: v
        for k, v in {**client_config(settings), **PRODUCER_CONFIG}.items()
        if isinstance(v, str | int | float | bool)
    }
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _BLAST, json.dumps(config), topic, str(path)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sending {path.name} failed: {done.stderr.decode()[-500:]}")
    return time.perf_counter() - t0


def create_topics(settings: Any, prefix: str) -> Any:
    """The four stream topics under ``prefix`` (partitions as the settings say)."""
    from rtfd.stream.runner import StreamTopics, ensure_stream_topics

    topics = StreamTopics.with_prefix(prefix)
    ensure_stream_topics(settings, topics)
    return topics


def unique_prefix(name: str) -> str:
    return f"bench-{name}-{int(time.time() * 1000) % 10**9}-"


# -- reading Kafka back ----------------------------------------------------------------------------
def _consumer(settings: Any) -> Any:
    import uuid

    from confluent_kafka import Consumer

    from rtfd.broker import client_config

    return Consumer(
        {
            **client_config(settings),
            "group.id": f"rtfd-bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.min.bytes": 1 << 16,
            "fetch.wait.max.ms": 100,
        }
    )


class Watermarks:
    """High watermarks of a topic's partitions (what has been produced so far)."""

    def __init__(self, settings: Any, topic: str) -> None:
        self.topic = topic
        self._consumer = _consumer(settings)
        md = self._consumer.list_topics(topic, timeout=10)
        self.partitions = sorted(md.topics[topic].partitions)

    def now(self) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        out = {}
        for p in self.partitions:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=10
            )
            out[p] = int(high)
        return out

    def total(self) -> int:
        return sum(self.now().values())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._consumer.close()


def read_range(
    settings: Any,
    topic: str,
    start: dict[int, int],
    end: dict[int, int],
    *,
    keys: bool = False,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Kafka timestamps (ms) and keys of the messages in ``[start[p], end[p])`` per partition,
    indexed by offset - start[p] (-1 and None where missing; keys only with ``keys``)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(settings)
    wanted = {p: end[p] - start.get(p, 0) for p in end if end[p] > start.get(p, 0)}
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {
        p: (np.full(n, -1, dtype=np.int64), np.full(n if keys else 0, None, dtype=object))
        for p, n in wanted.items()
    }
    if not wanted:
        return out
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in wanted])
    got = dict.fromkeys(wanted, 0)
    deadline = time.monotonic() + 120
    try:
        while any(got[p] < wanted[p] for p in wanted) and time.monotonic() < deadline:
            left = sum(wanted[p] - got[p] for p in wanted)
            for msg in consumer.consume(min(50_000, left), timeout=1.0):
                if msg.error() is not None:
                    continue
                p = msg.partition()
                if p not in wanted:
                    continue
                i = msg.offset() - start.get(p, 0)
                if 0 <= i < wanted[p]:
                    ts, ks = out[p]
                    ts[i] = msg.timestamp()[1]
                    if keys:
                        k = msg.key()
                        ks[i] = k.decode() if k else None
                    got[p] += 1
    finally:
        consumer.close()
    return out


# -- per-row latency -------------------------------------------------------------------------------
@dataclass
class RowLatency:
    """Per-row latencies of one fixed-rate run, with each row's produce time."""

    produced_ms: np.ndarray  # Kafka timestamp of the transaction
    parquet_ms: np.ndarray  # produce -> its Parquet file committed (renamed into place)
    alert_produced_ms: np.ndarray  # produce time of the transactions that raised an alert
    alert_ms: np.ndarray  # produce -> the alert on the alerts topic (its Kafka timestamp)
    expected: int  # transactions produced in the measured span
    committed: int  # of those, found in Parquet
    measure_from_ms: float  # the measured span of produce times
    measure_to_ms: float

    def windows(self, which: str, n: int = 3) -> list[dict[str, float]]:
        """Percentiles of ``which`` ("parquet" or "alert") in ``n`` windows of produce time."""
        if which == "parquet":
            return window_percentiles(
                self.produced_ms, self.parquet_ms, self.measure_from_ms, self.measure_to_ms, n
            )
        return window_percentiles(
            self.alert_produced_ms, self.alert_ms, self.measure_from_ms, self.measure_to_ms, n
        )


def parquet_commits(root: Path, since: float) -> dict[str, np.ndarray]:
    """transaction_id, kafka_partition, kafka_offset and the time each row first became
    visible (ms: the mtime of the first file that held it) of every Parquet row in files
    committed since ``since`` (epoch seconds). Files a compaction replaced are read too (they
    stay on disk for a grace period): a row's first file is when SQL could first see it."""
    import pyarrow.parquet as pq

    tids: list[np.ndarray] = []
    parts: list[np.ndarray] = []
    offs: list[np.ndarray] = []
    commit: list[np.ndarray] = []
    for path in root.rglob("*.parquet"):
        if path.name.startswith("."):  # a temporary being written
            continue
        try:
            mtime = path.stat().st_mtime
            if mtime < since:
                continue
            table = pq.read_table(
                path, columns=["transaction_id", "kafka_partition", "kafka_offset"]
            )
        except (OSError, ValueError):  # deleted after its grace period meanwhile
            continue
        n = table.num_rows
        tids.append(table.column("transaction_id").to_numpy(zero_copy_only=False))
        parts.append(table.column("kafka_partition").to_numpy().astype(np.int64))
        offs.append(table.column("kafka_offset").to_numpy().astype(np.int64))
        commit.append(np.full(n, mtime * 1000.0))
    if not tids:
        none = np.zeros(0, dtype=np.int64)
        return {"transaction_id": none.astype(object), "partition": none, "offset": none,
                "commit_ms": none.astype(np.float64)}  # fmt: skip
    import pandas as pd

    frame = pd.DataFrame(
        {
            "transaction_id": np.concatenate(tids),
            "partition": np.concatenate(parts),
            "offset": np.concatenate(offs),
            "commit_ms": np.concatenate(commit),
        }
    )
    first = frame.sort_values("commit_ms", kind="stable").drop_duplicates("transaction_id")
    return {
        "transaction_id": first["transaction_id"].to_numpy(),
        "partition": first["partition"].to_numpy(),
        "offset": first["offset"].to_numpy(),
        "commit_ms": first["commit_ms"].to_numpy(),
    }


def row_latencies(
    settings: Any,
    *,
    enriched_dir: Path,
    tx_topic: str,
    alerts_topic: str,
    tx_start: dict[int, int],
    tx_end: dict[int, int],
    alerts_start: dict[int, int],
    alerts_end: dict[int, int],
    since: float,
    warm_s: float,
    measure_s: float,
) -> RowLatency:
    """Latencies of the transactions at offsets ``[tx_start, tx_end)`` produced (Kafka
    timestamp) in ``measure_s`` seconds after the first ``warm_s`` seconds of the range; alerts
    from ``[alerts_start, alerts_end)``; Parquet files committed since ``since``."""
    produced = read_range(settings, tx_topic, tx_start, tx_end)
    firsts = [int(ts[ts > 0].min()) for ts, _ in produced.values() if (ts > 0).any()]
    measure_from_ms = (min(firsts) if firsts else 0) + warm_s * 1000.0
    measure_to_ms = measure_from_ms + measure_s * 1000.0
    rows = parquet_commits(enriched_dir, since)
    prod_ms = np.full(len(rows["partition"]), -1, dtype=np.int64)
    for p, (ts, _) in produced.items():
        sel = rows["partition"] == p
        idx = rows["offset"][sel] - tx_start.get(p, 0)
        ok = (idx >= 0) & (idx < len(ts))
        vals = np.full(len(idx), -1, dtype=np.int64)
        vals[ok] = ts[idx[ok]]
        prod_ms[sel] = vals
    measured = (prod_ms >= measure_from_ms) & (prod_ms < measure_to_ms)
    expected = sum(
        int(((ts >= measure_from_ms) & (ts < measure_to_ms)).sum()) for ts, _ in produced.values()
    )
    by_tid = {
        t: float(pm)
        for t, pm, m in zip(rows["transaction_id"], prod_ms, measured, strict=True)
        if m
    }
    alerts = read_range(settings, alerts_topic, alerts_start, alerts_end, keys=True)
    a_prod: list[float] = []
    a_lat: list[float] = []
    for ts, ks in alerts.values():
        for t_alert, tid in zip(ts.tolist(), ks.tolist(), strict=True):
            pm = by_tid.get(tid)
            if pm is not None and t_alert > 0:
                a_prod.append(pm)
                a_lat.append(t_alert - pm)
    return RowLatency(
        produced_ms=prod_ms[measured].astype(np.float64),
        parquet_ms=(rows["commit_ms"][measured] - prod_ms[measured]).astype(np.float64),
        alert_produced_ms=np.asarray(a_prod, dtype=np.float64),
        alert_ms=np.asarray(a_lat, dtype=np.float64),
        expected=expected,
        committed=int(measured.sum()),
        measure_from_ms=measure_from_ms,
        measure_to_ms=measure_to_ms,
    )


def window_percentiles(
    produced_ms: np.ndarray,
    latency_ms: np.ndarray,
    start_ms: float,
    end_ms: float,
    windows: int = 3,
) -> list[dict[str, float]]:
    """p50/p95/p99 (and the row count) of each of ``windows`` equal spans of produce time."""
    out = []
    edges = np.linspace(start_ms, end_ms, windows + 1)
    for lo, hi in itertools.pairwise(edges):
        sel = (produced_ms >= lo) & (produced_ms < hi)
        if sel.sum() == 0:
            continue
        p50, p95, p99 = np.percentile(latency_ms[sel], [50, 95, 99])
        out.append({"p50": float(p50), "p95": float(p95), "p99": float(p99), "n": int(sel.sum())})
    return out


# -- load generator --------------------------------------------------------------------------------
class LoadGenerator:
    """``rtfd generate`` in a subprocess at a fixed rate: the load runs outside the measured
    process (its Python work would otherwise compete for the driver's interpreter lock)."""

    def __init__(
        self,
        settings: Any,
        *,
        topic: str,
        labels_topic: str,
        rate: float,
        seconds: float,
        time_scale: float | None = None,
    ) -> None:
        from rtfd.broker import bootstrap_servers

        home = Path(settings.data_dir) / f"loadgen-{int(time.time() * 1000) % 10**9}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTFD_")}
        env.update(
            {
                "RTFD_HOME": str(home),
                "RTFD_CONFIG": str(home / "none.toml"),
                "RTFD_BROKER_BOOTSTRAP_SERVERS": bootstrap_servers(settings),
                "RTFD_BROKER_BACKEND": "external",
                # The rate sets the cards at this time-lapse (rtfd.generator.live).
                "RTFD_GENERATOR_TIME_SCALE": str(time_scale or settings.generator_time_scale),
                "RTFD_GENERATOR_MAX_CARDS": str(5_000_000),
            }
        )
        if settings.cache_dir:
            env["RTFD_CACHE_DIR"] = str(settings.cache_dir)
        home.mkdir(parents=True, exist_ok=True)
        self.log_path = home / "generate.out"
        self.rate = rate
        self._out = self.log_path.open("wb")
        self.started = time.time()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtfd.cli",
                "generate",
                "--rate",
                str(rate),
                "--duration",
                str(seconds),
                "--topic",
                topic,
                "--labels-topic",
                labels_topic,
                "--seed",
                str(settings.generator_seed),
            ],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            rc = self.proc.wait(30)
        self._out.close()
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        self._out.close()

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        return ""


# -- processes and memory --------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


@dataclass
class RssSampler:
    """Samples the RSS of groups of processes every ``period`` seconds on a thread; keeps the
    peak of each group and of their sum."""

    groups: Callable[[], dict[str, list[int]]]
    period: float = 1.0
    peak_total: float = 0.0
    peaks: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def sample(self) -> None:
        try:
            groups = self.groups()
        except Exception:  # a group's process list can vanish mid-scan
            return
        total = 0.0
        for name, pids in groups.items():
            mb = sum(rss_mb(p) for p in pids)
            total += mb
            self.peaks[name] = max(self.peaks.get(name, 0.0), mb)
            self.counts[name] = max(self.counts.get(name, 0), len(pids))
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


# -- Spark progress --------------------------------------------------------------------------------
def progress_dicts(query: Any) -> list[dict[str, Any]]:
    """``query.recentProgress`` as plain dicts (PySpark returns objects or dicts by version)."""
    import json

    out = []
    for p in query.recentProgress or []:
        if isinstance(p, dict):
            out.append(p)
        else:
            out.append(json.loads(p.json))
    return out


class ProgressLog:
    """Every Spark progress of a query seen so far, by batch id (recentProgress keeps ~100)."""

    def __init__(self) -> None:
        self.by_batch: dict[int, dict[str, Any]] = {}

    def collect(self, query: Any) -> None:
        with contextlib.suppress(Exception):
            for p in progress_dicts(query):
                self.by_batch[int(p["batchId"])] = p

    def between(self, t0: float, t1: float) -> list[dict[str, Any]]:
        """Progress of batches with input that started in [t0, t1] (epoch seconds)."""
        out = []
        for bid in sorted(self.by_batch):
            p = self.by_batch[bid]
            if int(p.get("numInputRows") or 0) <= 0:
                continue
            started = progress_time(p)
            if t0 <= started <= t1:
                out.append(p)
        return out


def progress_time(p: dict[str, Any]) -> float:
    """Epoch seconds of a progress's batch start."""
    from datetime import datetime

    return datetime.fromisoformat(str(p["timestamp"]).replace("Z", "+00:00")).timestamp()


def time_breakdown(
    progress: list[dict[str, Any]], sink: dict[int, dict[str, float]] | None = None
) -> tuple[str, dict[str, float]]:
    """Where a batch's time goes, averaged over ``progress``: a Markdown table and the numbers.

    Spark's ``durationMs`` (triggerExecution = the whole batch; addBatch = running the plan and
    the sink), any state operator's update and commit times, and the sink's own steps
    (``sink`` maps a batch id to its steps in ms, from the stream's progress: ``collect`` is
    Spark reading Kafka and handing the batch over as Arrow). What is in addBatch but not in the
    sink is Spark's side before the sink gets the rows.
    """
    if not progress:
        return "", {}
    keys: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        keys.setdefault(name, []).append(float(value))

    for p in progress:
        for k, v in (p.get("durationMs") or {}).items():
            add(f"durationMs.{k}", v)
        for op in p.get("stateOperators") or []:
            for k in ("allUpdatesTimeMs", "allRemovalsTimeMs", "commitTimeMs"):
                if k in op:
                    add(f"state.{k}", op[k])
        add("rows", p.get("numInputRows") or 0)
        steps = (sink or {}).get(int(p["batchId"]))
        if steps:
            for k, v in steps.items():
                add(f"sink.{k}", v)
            add_batch = (p.get("durationMs") or {}).get("addBatch")
            if add_batch is not None and "sink" in steps:
                add("spark side of addBatch (addBatch - sink)", add_batch - steps["sink"])
    avg = {k: statistics.fmean(v) for k, v in keys.items()}
    total = avg.get("durationMs.triggerExecution") or 1.0
    lines = [
        f"Averages over {len(progress)} batches ({avg.get('rows', 0):,.0f} rows per batch):",
        "",
        "| step | ms per batch | share of the batch |",
        "|---|---|---|",
    ]
    order = sorted(
        (k for k in avg if k != "rows"),
        key=lambda k: (not k.startswith("durationMs"), -avg[k]),
    )
    for k in order:
        lines.append(f"| {k} | {avg[k]:,.0f} | {100 * avg[k] / total:.0f}% |")
    return "\n".join(lines), avg


def wait_rows(
    count: Callable[[], int],
    target: int,
    timeout: float,
    what: str,
    failed: Callable[[], str] | None = None,
) -> None:
    """Wait until ``count()`` reaches ``target``; raise after ``timeout`` seconds, or as soon as
    ``failed()`` names a reason (the pipeline died)."""
    deadline = time.monotonic() + timeout
    while count() < target:
        reason = failed() if failed is not None else ""
        if reason:
            raise RuntimeError(f"{what}: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {count():,} of {target:,} rows after {timeout:.0f} s")
        time.sleep(0.1)


def drain_rate(progress: ProgressLog, query: Any, since: float, rows: int) -> float:
    """Rows per second of the batches that processed a backlog produced at ``since``: from the
    start of its first batch to the end of the batch that completed it (Spark's own times)."""
    progress.collect(query)
    batches = progress.between(since - 1.0, float("inf"))
    if not batches:
        raise RuntimeError("no batch with input after the backlog was produced")
    first = progress_time(batches[0])
    done = 0
    end = first
    for p in batches:
        done += int(p["numInputRows"])
        duration = p.get("batchDuration") or (p.get("durationMs") or {}).get("triggerExecution", 0)
        end = progress_time(p) + float(duration) / 1000.0
        if done >= rows:
            break
    return min(done, rows) / max(end - first, 1e-3)
