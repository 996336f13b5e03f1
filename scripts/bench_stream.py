"""Benchmark section ``stream``: the appliance's stream, end to end, and the run's headline.

One :class:`~rtfd.stream.runner.StreamRunner` (the object the CLI, the supervisor and the TUI
drive) runs with its default settings (local mode: the per-user state beside ``foreachBatch``,
0 s trigger) against the bench broker on fresh topics and a fresh home, with the bench's live
model. In order:

1. **drain** (``--runs`` times): a backlog of simulated transactions is produced at once while
   the stream runs; its rate is the backlog over Spark's own time from the start of the first
   batch that read it to the end of the batch that finished it;
2. **latency at 1,000 tx/s with 10,000, 50,000 and 100,000 cards in state**: the rate sets how
   many cards are active at the time-lapse (rtfd.generator.live), so the same 1,000 tx/s runs at
   time-lapse 3,000, 600 (the default: the headline) and 300. Before each run the state is
   filled with every card (a backlog of two transactions per card), so the runs differ only in
   the users the state holds. ``rtfd generate`` in a subprocess sends at the rate; after a
   warm-up every transaction's produce time (its Kafka timestamp) is matched to the first
   Parquet file that held it (the file's time of renaming into place) and to its alert on the
   alerts topic (the alert's Kafka timestamp): per-row p50 / p95 / p99, in three windows; and
   the state bytes each batch wrote (its redo record) per row. Then 5,000 tx/s at the default;
3. **sustained**: 10,000 tx/s (the goal) with the population that rate implies (500,000 cards
   at the default time-lapse) for three one-minute windows after a warm-up, every try from an
   empty lag; a window holds when the stream processed at least 97 % of the input and the lag
   did not grow (its slope under 2 % of the rate). If it does not hold, the rate steps down once
   (to 75 % of the processing rate measured) and is tried again from an empty lag;
4. **memory**: peak RSS of the stream's processes (this process and Spark's JVM), sampled every
   second; the appliance's whole process tree is the ``appliance`` section.

``finalize`` writes the headline keys of docs/benchmarks.json and the goals of the stream-state
issue, and for every phase where the time goes (Spark's ``durationMs`` and the sink's steps).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bench_common import (
    LoadGenerator,
    ProgressLog,
    RssSampler,
    Watermarks,
    blast,
    drain_rate,
    install_models,
    make_payloads,
    payload_files,
    row_latencies,
    scale_of,
    sub_settings,
    time_breakdown,
    unique_prefix,
    wait_rows,
    warm_rows,
)

SECTION = "stream"
SUSTAINED_GOAL = 10_000.0
KEEP_UP = 0.97  # a window holds when processed >= this share of the input ...
LAG_SLOPE = 0.02  # ... and the lag grew by less than this share of the input rate
CATCH_UP_S = 120.0
ABORT_SLOPE = 0.05  # a window whose lag grows faster than this share of the input ends a try
# (label, time-lapse) of the latency runs at 1,000 tx/s: 10,000, 50,000 and 100,000 cards.
CARD_RUNS = (("10k", 3_000.0), ("50k", 600.0), ("100k", 300.0))
HEADLINE_RUN = "50k"


@dataclass
class Events:
    """Progress of the transactions query as it arrives (Spark's listener thread)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    input_rows: int = 0
    items: list[tuple[float, Any]] = field(default_factory=list)

    def on_progress(self, e: Any) -> None:
        if e.query != "transactions":
            return
        with self.lock:
            self.input_rows += int(e.input_rows)
            self.items.append((time.time(), e))

    def count(self) -> int:
        with self.lock:
            return self.input_rows

    def since(self, t0: float, t1: float = float("inf")) -> list[Any]:
        with self.lock:
            return [e for t, e in self.items if t0 <= t <= t1]

    def steps(self) -> dict[int, dict[str, float]]:
        """The sink's steps (ms) by batch id, with its total as ``sink``."""
        with self.lock:
            return {
                e.batch_id: {**e.steps_ms, "sink": float(e.sink_ms or 0.0)}
                for _, e in self.items
                if e.steps_ms
            }

    def latest(self) -> Any:
        with self.lock:
            return self.items[-1][1] if self.items else None


@dataclass
class Window:
    """One window of the sustained run."""

    input_rate: float
    processed_rate: float
    lag_slope: float  # rows per second
    lag_end: int

    def lag_flat(self) -> bool:
        return self.lag_slope <= max(LAG_SLOPE * self.input_rate, 20.0)


def windows_hold(windows: list[Window]) -> bool:
    """Three windows, the lag not growing in any, and the stream processed at least
    ``KEEP_UP`` of the input over the three together (one window's share is noisy: a batch
    that ends just after a window's edge counts in the next)."""
    if len(windows) < 3:
        return False
    processed = sum(w.processed_rate for w in windows)
    offered = sum(w.input_rate for w in windows)
    return all(w.lag_flat() for w in windows) and processed >= KEEP_UP * offered


def _slope(ts: list[float], ys: list[float]) -> float:
    if len(ts) < 3:
        return 0.0
    return float(np.polyfit(np.asarray(ts) - ts[0], np.asarray(ys, dtype=np.float64), 1)[0])


class StreamBench:
    """The stream under test and what is measured on it."""

    def __init__(self, report: Any, settings: Any, runs: int) -> None:
        self.report = report
        self.scale = scale_of(report)
        self.runs = runs
        self.settings = settings
        self.s = sub_settings(settings, "stream")
        self.s.ensure_dirs()
        self.version = install_models(settings, self.s, self.scale)
        report.shared["stream_trigger_s"] = self.s.stream_trigger_s
        self.events = Events()
        self.progress = ProgressLog()
        self.phases: dict[str, tuple[float, float]] = {}
        self.runner: Any = None
        self.query: Any = None
        self.sampler: RssSampler | None = None

    # -- set-up --------------------------------------------------------------------------
    def start(self) -> float:
        from rtfd.stream.runner import StreamRunner, StreamTopics

        self.files = payload_files(self.settings, self.scale, self.runs)
        self.topics = StreamTopics.with_prefix(unique_prefix("stream"))
        self.runner = StreamRunner(self.s, topics=self.topics)
        self.runner.add_listener(self.events.on_progress)
        t0 = time.perf_counter()
        self.runner.start()
        state = self.runner.wait_running(600)
        if state.phase != "running":
            raise RuntimeError(f"the stream did not start: {state.phase}: {state.reason}")
        self.query = self.runner._queries["transactions"]
        jvm = self.runner._handle.jvm_pid

        def groups() -> dict[str, list[int]]:
            return {"driver": [os.getpid()], "JVM": [jvm] if jvm else []}

        self.sampler = RssSampler(groups).start()
        self.tx = Watermarks(self.s, self.topics.transactions)
        self.alerts = Watermarks(self.s, self.topics.alerts)
        # Warm-up: the first batches (JIT, the model's first call) are not measured.
        blast(self.s, self.topics.transactions, self.files[0])
        wait_rows(self.events.count, warm_rows(self.scale), 300, "stream warm-up", self.failed)
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        for w in ("tx", "alerts"):
            if hasattr(self, w):
                getattr(self, w).close()
        if self.runner is not None:
            self.runner.stop()

    def failed(self) -> str:
        """Why the stream is not running any more ("" while it runs)."""
        state = self.runner.state
        return "" if state.phase == "running" else f"the stream {state.phase}: {state.reason}"

    def lag(self) -> int:
        return self.tx.total() - self.events.count()

    def catch_up(self, timeout: float = CATCH_UP_S) -> bool:
        """Wait until the stream has read everything produced so far."""
        deadline = time.monotonic() + timeout
        target = self.tx.total()
        while self.events.count() < target:
            if self.failed():
                raise RuntimeError(self.failed())
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def _phase(self, name: str, t0: float) -> None:
        self.phases[name] = (t0, time.time())
        self.progress.collect(self.query)

    # -- 1. drain --------------------------------------------------------------------------
    def drain(self) -> Any:
        n = self.scale.backlog
        fig = self.report.figure(
            SECTION,
            "drain rate (throughput)",
            "rows/s",
            note=f"{n:,}-transaction backlog produced at once; Spark's batch times",
        )
        t_phase = time.time()
        for run in range(self.runs):
            target = self.events.count() + n
            since = time.time()
            blast(self.s, self.topics.transactions, self.files[1 + run])
            wait_rows(self.events.count, target, 900, "stream drain", self.failed)
            time.sleep(0.3)
            fig.values.append(drain_rate(self.progress, self.query, since, n))
        self._phase("drain", t_phase)
        self.report.shared["stream_drain"] = fig
        return fig

    # -- 2. latency ------------------------------------------------------------------------
    def fill_state(self, cards: int) -> None:
        """Two transactions for each of the first ``cards`` cards (the same world the load
        generator draws from), so that the state holds them all before a latency run."""
        from pathlib import Path

        path = Path(self.s.data_dir) / f"fill-{cards}.tsv"
        with path.open("wb") as f:
            for value, key in make_payloads(self.s, 2 * cards, cards=cards):
                f.write(key + b"\t" + value + b"\n")
        target = self.tx.total() + 2 * cards
        blast(self.s, self.topics.transactions, path)
        wait_rows(self.events.count, target, 600, f"filling the state with {cards:,} cards",
                  self.failed)  # fmt: skip
        path.unlink()

    def latency(self, rate: int, label: str, time_scale: float, *, fill: bool) -> None:
        from rtfd.generator.live import cards_for_rate

        sc = self.scale
        cards = cards_for_rate(self.s.replace(generator_time_scale=time_scale), rate)
        if fill:
            self.fill_state(cards)
        self.catch_up()
        tx0, al0 = self.tx.now(), self.alerts.now()
        since = time.time()
        seconds = sc.latency_warm_s + sc.latency_measure_s
        gen = LoadGenerator(
            self.s,
            topic=self.topics.transactions,
            labels_topic=self.topics.labels,
            rate=rate,
            seconds=seconds,
            time_scale=time_scale,
        )
        lags = []
        while gen.proc.poll() is None:
            if self.failed():
                gen.stop()
                raise RuntimeError(self.failed())
            lags.append(self.lag())
            time.sleep(1.0)
        rc = gen.wait(30)
        if rc != 0:
            raise RuntimeError(f"load generator failed ({rc}): {gen.output()}")
        tx1 = self.tx.now()
        caught = self.catch_up()
        time.sleep(6.0)  # the Parquet of the last batches is flushed every 2 s after its commit
        al1 = self.alerts.now()
        key = f"{rate}" if label == HEADLINE_RUN else f"{rate}_{label}"
        self._phase(f"latency {rate} tx/s, {label} cards", since)
        lat = row_latencies(
            self.s,
            enriched_dir=self.s.enriched_dir,
            tx_topic=self.topics.transactions,
            alerts_topic=self.topics.alerts,
            tx_start=tx0,
            tx_end=tx1,
            alerts_start=al0,
            alerts_end=al1,
            since=since - 1.0,
            warm_s=sc.latency_warm_s,
            measure_s=sc.latency_measure_s,
        )
        sent = sum(tx1.values()) - sum(tx0.values())
        events = [e for e in self.events.since(since) if e.rows]
        users = max((e.state_users or 0 for e in events), default=0)
        written = [e.state_bytes_written / e.rows for e in events if e.state_bytes_written]
        rows = [e.rows for e in events]
        note = (
            f"per row, 3 windows of {sc.latency_measure_s / 3:.0f} s after {sc.latency_warm_s:.0f}"
            f" s warm-up; {lat.committed:,}/{lat.expected:,} rows committed; {cards:,} cards "
            f"active (time-lapse {time_scale:g}), {users:,} users in state"
            + ("" if caught else f" (not caught up {CATCH_UP_S:.0f} s after the run)")
        )
        where = f"at {rate:,} tx/s, {label} cards"
        for which, what in (("parquet", "produce → Parquet"), ("alert", "produce → alert")):
            for q in ("p50", "p95", "p99"):
                fig = self.report.figure(
                    SECTION, f"{what} {q} {where}", "ms", note=note if q == "p50" else ""
                )
                fig.values = [w[q] for w in lat.windows(which)]
                self.report.shared[f"stream_{which}_{q}_{key}"] = fig
        f_bytes = self.report.figure(
            SECTION,
            f"state bytes written per row {where}",
            "bytes",
            note=f"{statistics.median(rows) if rows else 0:,.0f} rows per batch (median); the "
            "redo record of a batch: its rows, not the users in state",
        )
        f_bytes.values = written[:] if written else []
        self.report.shared[f"state_bytes_per_row_{key}"] = f_bytes
        self.report.shared[f"state_users_{key}"] = users
        self.report.shared.setdefault("latency_runs", []).append(
            f"{rate:,} tx/s with {label} cards: {sent:,} sent ({sent / seconds:,.0f}/s achieved), "
            f"max lag {max(lags, default=0):,} rows, {len(lat.alert_ms):,} alerts measured, "
            f"{users:,} users in state"
        )

    # -- 3. sustained ----------------------------------------------------------------------
    def sustained_run(self, rate: float) -> tuple[list[Window], str, int]:
        """Run at ``rate`` for three windows, from an empty lag; returns the windows, why it
        stopped early (or ""), and the users in state at the end."""
        sc = self.scale
        if not self.catch_up(300):
            raise RuntimeError(f"the lag did not empty before the try at {rate:,.0f} tx/s")
        seconds = sc.sustained_warm_s + 3 * sc.sustained_window_s
        gen = LoadGenerator(
            self.s,
            topic=self.topics.transactions,
            labels_topic=self.topics.labels,
            rate=rate,
            seconds=seconds + 15,  # the generator draws its cards first (seconds)
        )
        samples: list[tuple[float, int, int]] = []  # (t, produced, processed)
        windows: list[Window] = []
        why = ""
        start: float | None = None
        try:
            while len(windows) < 3:
                if self.failed():
                    raise RuntimeError(self.failed())
                if gen.proc.poll() is not None:
                    why = f"the load generator stopped: {gen.output()[-300:]}"
                    break
                now = time.time()
                produced = self.tx.total()
                if start is None:
                    if produced - sum(self._tx_at_start.values()) > 0:
                        start = now  # the first message: the generator has drawn its cards
                    time.sleep(0.5)
                    continue
                samples.append((now, produced, self.events.count()))
                edge = start + sc.sustained_warm_s + (len(windows) + 1) * sc.sustained_window_s
                if now >= edge:
                    lo = edge - sc.sustained_window_s
                    win = [x for x in samples if x[0] >= lo]
                    span = win[-1][0] - win[0][0]
                    w = Window(
                        input_rate=(win[-1][1] - win[0][1]) / span,
                        processed_rate=(win[-1][2] - win[0][2]) / span,
                        lag_slope=_slope([x[0] for x in win], [x[1] - x[2] for x in win]),
                        lag_end=win[-1][1] - win[-1][2],
                    )
                    windows.append(w)
                    print(
                        f"bench:   sustained {rate:,.0f} tx/s window {len(windows)}: in "
                        f"{w.input_rate:,.0f}/s, processed {w.processed_rate:,.0f}/s, lag slope "
                        f"{w.lag_slope:,.0f}/s, lag {w.lag_end:,}",
                        flush=True,
                    )
                    # Clearly falling behind: no need to watch two more minutes of it.
                    if w.lag_slope > ABORT_SLOPE * w.input_rate:
                        why = "lag grew fast in the first window(s)"
                        break
                time.sleep(1.0)
        finally:
            gen.stop()
        latest = self.events.latest()
        return windows, why, int(getattr(latest, "state_users", 0) or 0)

    def sustained(self) -> None:
        from rtfd.generator.live import cards_for_rate

        sc = self.scale
        rate = SUSTAINED_GOAL if not self.report.options.get("quick") else 5_000.0
        t_phase = time.time()
        tried = []
        self._tx_at_start = self.tx.now()
        windows, why, users = self.sustained_run(rate)
        tried.append((rate, windows, why, users))
        held = windows_hold(windows)
        if not held and windows:
            processed = statistics.median(w.processed_rate for w in windows)
            rate = max(500.0, round(min(0.9 * rate, 0.75 * processed), -2))
            self._tx_at_start = self.tx.now()
            windows, why, users = self.sustained_run(rate)
            tried.append((rate, windows, why, users))
            held = windows_hold(windows)
        self._phase("sustained", t_phase)
        minutes = sc.sustained_window_s / 60
        for target, wins, reason, in_state in tried:
            cards = cards_for_rate(self.s, target)
            label = f"at {target:,.0f} tx/s target"
            got = statistics.median(w.input_rate for w in wins) if wins else 0.0
            f_in = self.report.figure(
                SECTION,
                f"sustained run {label}: input rate",
                "tx/s",
                note=f"{len(wins)} window(s) of {minutes:g} min after {sc.sustained_warm_s:g} s; "
                f"{cards:,} cards active, {in_state:,} users in state at the end"
                + (f"; the generator sent only {got:,.0f}/s" if got < 0.95 * target else "")
                + (f"; stopped: {reason}" if reason else ""),
            )
            f_in.values = [w.input_rate for w in wins]
            f_pr = self.report.figure(SECTION, f"sustained run {label}: processed rate", "rows/s")
            f_pr.values = [w.processed_rate for w in wins]
            f_lag = self.report.figure(
                SECTION,
                f"sustained run {label}: lag slope",
                "rows/s",
                note="> 0: the lag grows; holds when < 2% of the input rate",
            )
            f_lag.values = [w.lag_slope for w in wins]
        last_rate, last, _, in_state = tried[-1]
        if held:
            value = statistics.median(w.input_rate for w in last)
        else:
            value = statistics.median(w.processed_rate for w in last) if last else float("nan")
        self.report.summary["sustained_tx_per_s"] = round(value)
        self.report.summary["sustained_verified"] = held
        self.report.summary["sustained_cards"] = cards_for_rate(self.s, last_rate)
        self.report.summary["sustained_users_in_state"] = in_state
        self.report.shared["sustained_note"] = f"sustained: {value:,.0f} tx/s " + (
            "held for three windows (processed ≥ 97% of the input over them, the lag "
            "growing in none)"
            if held
            else "is the processing rate of the last try, NOT verified: the lag still grew"
        )

    # -- 4. memory -------------------------------------------------------------------------
    def memory(self) -> None:
        assert self.sampler is not None
        self.sampler.sample()
        rss = self.sampler
        fig = self.report.figure(
            SECTION,
            "peak RSS of the stream, driver + Spark JVM",
            "MB",
            note=", ".join(f"{k} {v:,.0f} MB" for k, v in rss.peaks.items())
            + f"; sampled every second ({rss.samples} samples) over the whole section (its "
            "largest state: the sustained run); the driver is this bench process",
        )
        fig.values = [rss.peak_total]
        latest = self.events.latest()
        if latest is not None and latest.state_users and latest.state_memory_bytes:
            f_state = self.report.figure(
                SECTION,
                "state memory per 10,000 users (the driver's arrays)",
                "MB",
                note=f"{latest.state_users:,} users in state, "
                f"{latest.state_memory_bytes / 1e6:,.0f} MB",
            )
            f_state.values = [latest.state_memory_bytes / latest.state_users * 10_000 / 1e6]

    # -- where the time goes -----------------------------------------------------------------
    def breakdowns(self) -> None:
        self.progress.collect(self.query)
        steps = self.events.steps()
        tables = []
        for name, (t0, t1) in self.phases.items():
            batches = self.progress.between(t0, t1)
            table, avg = time_breakdown(batches, steps)
            if table:
                tables.append(f"**{name}** — {table}")
                self.report.shared[f"breakdown {name}"] = avg
        self.report.notes["stream: where the time goes"] = (
            "Spark's progress (`durationMs`: triggerExecution is the whole batch; addBatch runs "
            "the plan and the sink; walCommit and commitOffsets write the offset and commit "
            "logs; latestOffset asks Kafka for the end offsets) and the sink's own steps "
            "(`sink.*`, from the stream's progress: `collect` is Spark reading the batch from "
            "Kafka and handing it over as Arrow, then decode and validate, dedup, the per-user "
            "features, score, the redo record, explanations and the Kafka flush of alerts), "
            "averaged over the batches with input of each phase.\n\n" + "\n\n".join(tables)
        )


def bench_stream(report: Any, settings: Any, runs: int) -> None:
    """Drain, latency with 10k / 50k / 100k cards, sustained rate, memory, breakdowns."""
    bench = StreamBench(report, settings, runs)
    try:
        started = bench.start()
        print(f"bench:   stream running after {started:.0f} s", flush=True)
        drain = bench.drain()
        print(f"bench:   drain {drain.values}", flush=True)
        for label, time_scale in CARD_RUNS:
            bench.latency(1_000, label, time_scale, fill=True)
            print(f"bench:   latency at 1,000 tx/s with {label} cards done", flush=True)
        bench.latency(5_000, HEADLINE_RUN, 600.0, fill=False)
        print("bench:   latency at 5,000 tx/s done", flush=True)
        bench.sustained()
        bench.memory()
        report.notes[SECTION] = (
            f"One StreamRunner (Spark {bench.s.spark_master}, per-user state in the driver, "
            f"trigger {bench.s.stream_trigger_s:g} s, model {bench.version}) started "
            f"and warmed up in {started:.0f} s. Latency runs: "
            + "; ".join(report.shared.get("latency_runs", []))
            + ". "
            + report.shared.get("sustained_note", "")
            + ". The load generator runs in its own process on the same two cores."
        )
    finally:
        try:
            bench.breakdowns()
        finally:
            bench.stop()


# -- the headline ---------------------------------------------------------------------------------
def _median(report: Any, key: str) -> float:
    fig = report.shared.get(key)
    return float(fig.median) if fig is not None and fig.values else float("nan")


def finalize(report: Any) -> None:
    """Headline keys of benchmarks.json and the goals, with where the time goes."""
    s = report.summary
    ours = _median(report, "stream_drain")
    naive = _median(report, "naive_drain")
    limit = _median(report, "limit_drain")
    s.setdefault("sustained_tx_per_s", float("nan"))
    s["alert_latency_p50_ms_at_1000"] = _median(report, "stream_alert_p50_1000")
    s["alert_latency_p99_ms_at_1000"] = _median(report, "stream_alert_p99_1000")
    s["alert_latency_p99_ms_at_1000_10k_users"] = _median(report, "stream_alert_p99_1000_10k")
    s["alert_latency_p99_ms_at_1000_100k_users"] = _median(report, "stream_alert_p99_1000_100k")
    s["parquet_latency_p99_ms_at_1000"] = _median(report, "stream_parquet_p99_1000")
    for label in ("10k", "100k"):
        s[f"state_bytes_per_row_{label}_users"] = _median(
            report, f"state_bytes_per_row_1000_{label}"
        )
    s["state_bytes_per_row_50k_users"] = _median(report, "state_bytes_per_row_1000")
    s["drain_rows_per_s"] = ours
    s["naive_drain_rows_per_s"] = naive
    s["limit_drain_rows_per_s"] = limit
    s["naive_baseline_ratio"] = ours / naive if naive == naive and naive > 0 else float("nan")
    s["limit_fraction"] = ours / limit if limit == limit and limit > 0 else float("nan")
    naive_alert = _median(report, "naive_alert_p99")
    if naive_alert == naive_alert:
        s["naive_alert_latency_p99_ms_at_1000"] = naive_alert
        s["latency_ratio_naive_over_ours_at_1000"] = naive_alert / s["alert_latency_p99_ms_at_1000"]
    s.setdefault("peak_rss_mb", float("nan"))
    for k, v in list(s.items()):
        if isinstance(v, float) and v == v:
            s[k] = round(v, 3)
    report.notes["goals"] = _goals(report)


def _goals(report: Any) -> str:
    s = report.summary
    ten = s.get("alert_latency_p99_ms_at_1000_10k_users")
    hundred = s.get("alert_latency_p99_ms_at_1000_100k_users")
    flat = hundred / ten if ten and hundred and ten == ten and hundred == hundred else None
    goals = [
        ("alert p99 ≤ 600 ms at 1,000 tx/s", s.get("alert_latency_p99_ms_at_1000"),
         lambda v: v <= 600, "latency 1000 tx/s, 50k cards"),
        ("alert p50 ≤ 300 ms at 1,000 tx/s", s.get("alert_latency_p50_ms_at_1000"),
         lambda v: v <= 300, "latency 1000 tx/s, 50k cards"),
        ("never slower than naive: alert p99 naive / ours ≥ 1", s.get(
            "latency_ratio_naive_over_ours_at_1000"), lambda v: v >= 1.0,
         "latency 1000 tx/s, 50k cards"),
        ("never slower than naive: drain ours / naive ≥ 1", s.get("naive_baseline_ratio"),
         lambda v: v >= 1.0, "drain"),
        ("sustained ≥ 10,000 tx/s", s.get("sustained_tx_per_s"), lambda v: v >= 10_000,
         "sustained"),
        ("≥ 40% of the no-Spark limit", s.get("limit_fraction"), lambda v: v >= 0.4, "drain"),
        ("flat in cards: p99 100k / 10k users ≤ 1.2", flat, lambda v: v <= 1.2,
         "latency 1000 tx/s, 100k cards"),
        ("peak RSS of the appliance ≤ 2,500 MB at 1,000 tx/s", s.get("peak_rss_mb"),
         lambda v: v <= 2_500, ""),
        ("Parquet visible within 5 s (p99) at 1,000 tx/s", s.get("parquet_latency_p99_ms_at_1000"),
         lambda v: v <= 5_000, ""),
        ("≤ 2,000 files a day at 1,000 tx/s", s.get("lake_files_per_day_at_1000"),
         lambda v: v <= 2_000, ""),
        ("count(*) over a day's Parquet < 1 s", s.get("lake_count_day_s"), lambda v: v < 1.0, ""),
    ]  # fmt: skip
    lines = ["| goal | measured | met |", "|---|---|---|"]
    missed = []
    for name, value, ok, phase in goals:
        if value is None or value != value:
            lines.append(f"| {name} | not measured | — |")
            continue
        met = ok(value)
        lines.append(f"| {name} | {value:,.2f} | {'yes' if met else '**no**'} |")
        if not met and phase:
            missed.append(f"- **{name}** (measured {value:,.2f}): {_batch(report, phase)}")
    if missed:
        lines += ["", "Where the time goes, for each missed goal:", "", *missed]
    return "\n".join(lines)


def _batch(report: Any, phase: str) -> str:
    """One sentence: what a batch of a phase spends its time on."""
    avg = report.shared.get(f"breakdown {phase}") or {}
    total = avg.get("durationMs.triggerExecution") or 0.0
    if total <= 0:
        return "no batch breakdown was measured."
    rows = avg.get("rows", 0.0)
    parts = []
    for key in sorted((k for k in avg if k.startswith("sink.")), key=lambda k: -avg[k]):
        parts.append(f"{key[5:]} {avg[key]:,.0f} ms")
    bookkeeping = ("walCommit", "commitOffsets", "latestOffset", "queryPlanning")
    fixed = sum(avg.get(f"durationMs.{k}", 0.0) for k in bookkeeping)
    return (
        f"a batch of {rows:,.0f} rows takes {total:,.0f} ms: Spark's bookkeeping (offset and "
        f"commit logs, latest offsets, planning) {fixed:,.0f} ms; the sink "
        + ", ".join(parts)
        + "."
    )


SECTIONS = {SECTION: bench_stream}
BUDGET_S = {SECTION: 900}
