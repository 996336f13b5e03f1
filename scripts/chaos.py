"""Chaos campaign: ``just chaos``. Kills the stream and the broker under load, then audits.

Set-up: an isolated data dir, the embedded broker, a bootstrap model, the live generator at
``--rate`` tx/s in this process, and the stream as a separate process
(``python -m rtfd.cli stream``).

Faults, in order:
  stream   ``--stream-kills`` cycles of kill -9 of the stream process after a random 2-12 s
           (so mid-batch, mid-commit or — every third cycle, right after a promotion — during a
           model reload), each followed by a restart;
  broker   ``--broker-kills`` cycles of kill -9 of the broker's JVM, a few seconds down, restart.

Audit: the generator stops and flushes, the stream catches up, then every transaction in the
``transactions`` topic (what the broker acknowledged) must be in the Parquet exactly once; alerts
with the same ``alert_id`` are counted as duplicates (alerts are at-least-once by design).
Writes docs/reliability.md (or ``--out``) and prints a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtfd.broker.admin import ensure_topics, topic_specs  # noqa: E402
from rtfd.broker.kafka import EmbeddedKafka, PidRecord  # noqa: E402
from rtfd.config import Settings, load_settings  # noqa: E402
from rtfd.logs import setup_logging  # noqa: E402
from rtfd.schemas import Topics  # noqa: E402
from rtfd.sysinfo import free_port, pid_alive  # noqa: E402


@dataclass
class Fault:
    """One kind of fault and what the campaign saw."""

    name: str
    injected: int = 0
    recovery_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, lost: int | str, dups: int | str) -> str:
        if self.recovery_s:
            p50 = f"{statistics.median(self.recovery_s):.1f} s"
            worst = f"{max(self.recovery_s):.1f} s"
        else:
            p50 = worst = "—"
        return f"| {self.name} | {self.injected} | {lost} | {dups} | {p50} | {worst} |"


def log(msg: str) -> None:
    print(f"chaos {time.strftime('%H:%M:%S')}: {msg}", flush=True)


def parquet_files(settings: Settings) -> list[Path]:
    """The enriched Parquet files a reader sees (rtfd.lake's covering rule: a file that a
    compaction merged into a newer one is no longer visible)."""
    from rtfd.lake import visible_files

    return [Path(p) for p in visible_files(settings.enriched_dir)]


def lake_batch(settings: Settings) -> int:
    """The newest micro-batch in the visible Parquet or in Spark's commit log (-1 when none):
    a batch newer than this one in the Parquet is work the stream did after this moment (a
    compaction only merges old batches; a restart first flushes batches already committed)."""
    from rtfd.lake import parse_name
    from rtfd.stream.engine import committed_batch

    lasts = [f.last for f in map(parse_name, parquet_files(settings)) if f is not None]
    committed = committed_batch(settings.checkpoints_dir / Topics.TRANSACTIONS)
    return max(-1 if committed is None else committed, *lasts)


def parquet_batch(settings: Settings) -> int:
    from rtfd.lake import parse_name

    lasts = [f.last for f in map(parse_name, parquet_files(settings)) if f is not None]
    return max(lasts, default=-1)


class StreamProcess:
    """``python -m rtfd.cli stream`` as a child process that can be killed like a crash."""

    def __init__(self, settings: Settings, bootstrap: str, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.env = {
            **os.environ,
            "RTFD_HOME": str(settings.data_dir),
            "RTFD_BROKER_BOOTSTRAP_SERVERS": bootstrap,
            "RTFD_SPARK_MASTER": "local[2]",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        out = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtfd.cli", "stream", "--progress-every", "5"],
            env=self.env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL of the stream's main process only, as a crash would do."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        # whatever a crash left behind (JVM, Python workers) goes too
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def wait_new_batch(settings: Settings, after: int, timeout: float) -> float | None:
    """Seconds until the Parquet holds a batch newer than ``after`` (the stream committed and
    flushed one), or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if parquet_batch(settings) > after:
            return time.monotonic() - start
        time.sleep(0.25)
    return None


def flip_model(settings: Settings) -> str | None:
    """Promote the other model version (forced), so the stream reloads; None if only one."""
    from rtfd.ml.registry import Registry

    registry = Registry(settings.models_dir)
    versions = [
        v if isinstance(v, str) else getattr(v, "version", str(v)) for v in registry.versions()
    ]
    current = registry.current()
    others = [v for v in versions if v != current]
    if not others:
        return None
    registry.promote(others[-1], force=True)
    return others[-1]


def kill_broker_jvm(broker: EmbeddedKafka) -> None:
    record = PidRecord.read(broker.pid_file)
    assert record is not None, "no broker pid file"
    out = subprocess.run(["pgrep", "-P", str(record.pid)], capture_output=True, text=True).stdout
    for pid in [int(p) for p in out.split()] or [record.pid]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid_alive(record.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def read_topic_ids(config: dict[str, str], topic: str, key: str) -> list[str]:
    """Every ``key`` field of every JSON message in ``topic``, from the beginning to the end."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {**config, "group.id": f"chaos-audit-{time.time()}", "enable.auto.commit": False}
    )
    md = consumer.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p, 0) for p in md.topics[topic].partitions]
    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    consumer.assign(parts)
    values: list[str] = []
    done = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + 300
    while len(done) < len(parts) and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, timeout=1):
            if msg.error() is not None:
                continue
            try:
                values.append(json.loads(msg.value())[key])
            except (ValueError, KeyError, TypeError):
                pass
            if msg.offset() >= ends[msg.partition()] - 1:
                done.add(msg.partition())
    consumer.close()
    return values


def read_parquet_ids(settings: Settings) -> list[str]:
    import pyarrow.parquet as pq

    ids: list[str] = []
    for path in parquet_files(settings):
        ids.extend(pq.read_table(path, columns=["transaction_id"]).column(0).to_pylist())
    return ids


def read_enriched(settings: Settings) -> Any:
    """Every visible enriched row (pandas), in the order the stream processed them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rtfd.lake import visible_files

    tables = [pq.read_table(p) for p in visible_files(settings.enriched_dir)]
    if not tables:
        return None
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return frame.sort_values(
        ["processed_at", "kafka_partition", "kafka_offset"], kind="stable"
    ).reset_index(drop=True)


def feature_parity(frame: Any) -> dict[str, Any]:
    """Fold the offline kernel over the Parquet's transactions, batch by batch in the order the
    stream processed them (a batch: the rows with one ``processed_at``), from an empty state,
    and compare every per-user feature with what the stream wrote, bit for bit.

    The merchant-risk columns are a lookup in a table version each batch records, not state;
    they are not part of this check (tests/unit/test_stream_engine.py replays them)."""
    import numpy as np

    from rtfd.features.kernel import KernelState, step_batch
    from rtfd.features.names import USER_FEATURES

    state = KernelState()
    mismatched: Counter[str] = Counter()
    first: str | None = None
    batches = 0
    for _, batch in frame.groupby("processed_at", sort=True):
        state, feats = step_batch(state, batch)
        batches += 1
        for name in USER_FEATURES:
            got = batch[name].to_numpy(dtype=np.float64)
            want = feats[name].to_numpy(dtype=np.float64)
            same = (got == want) | (np.isnan(got) & np.isnan(want))
            bad = int((~same).sum())
            if bad:
                mismatched[name] += bad
                if first is None:
                    i = int(np.flatnonzero(~same)[0])
                    first = (
                        f"{name} of {batch['transaction_id'].iloc[i]}: stream {got[i]!r}, "
                        f"offline {want[i]!r}"
                    )
    return {
        "rows": len(frame),
        "batches": batches,
        "columns": len(USER_FEATURES),
        "mismatched_values": sum(mismatched.values()),
        "mismatched_columns": sorted(mismatched),
        "first_mismatch": first,
    }


def cards_in_state(log_path: Path) -> int | None:
    """The largest number of users the stream reported in state (its progress lines)."""
    import re

    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    found = [int(m) for m in re.findall(r" users (\d+)", text)]
    return max(found) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--stream-kills", type=int, default=20)
    parser.add_argument("--broker-kills", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--home", type=Path, default=None, help="data dir (default: a temp dir)")
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout, kill) takes the same path as Ctrl-C: the finally blocks stop the
    # generator, the stream and the broker, so no JVM is left behind.
    signal.signal(signal.SIGTERM, _terminate)
    rng = random.Random(args.seed)
    started = time.monotonic()

    home = args.home or Path(tempfile.mkdtemp(prefix="rtfd-chaos-"))
    settings = load_settings(
        {
            "home": str(home),
            "broker_backend": "kafka",
            "broker_port": free_port(),
            "broker_controller_port": free_port(),
            "generator_rate": args.rate,
        }
    )
    settings.ensure_dirs()
    # Client logs (librdkafka's "connection refused" while the broker is down) go to the log
    # file, not between the campaign's lines.
    setup_logging(settings, console=False)
    broker = EmbeddedKafka(settings)
    log(f"broker on {broker.bootstrap_servers}, data in {home}")
    broker.start()
    try:
        return _campaign(args, rng, settings, broker, home, started)
    finally:
        broker.stop()


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _campaign(
    args: argparse.Namespace,
    rng: random.Random,
    settings: Settings,
    broker: EmbeddedKafka,
    home: Path,
    started: float,
) -> int:
    ensure_topics(broker.client_config(), topic_specs(settings))

    from rtfd.ml.train import ensure_bootstrap_model

    log("bootstrap model ...")
    ensure_bootstrap_model(settings)
    client_settings = settings.replace(broker_bootstrap_servers=broker.bootstrap_servers)

    from rtfd.generator.live import LiveGenerator

    generator = LiveGenerator(client_settings)
    stream = StreamProcess(
        settings, broker.bootstrap_servers, settings.log_root / "chaos-stream.log"
    )
    stream_fault = Fault("kill -9 of the stream process")
    broker_fault = Fault("kill -9 of the broker JVM")
    exits = Fault("stream exited on its own (restarted by the driver)")
    try:
        stream.start()
        generator.start()  # before the wait: a batch without rows writes no file
        log("waiting for the first batch ...")
        if wait_new_batch(settings, -1, 300) is None:
            raise SystemExit(f"the stream committed no batch in 300 s; see {stream.log_path}")

        for cycle in range(args.stream_kills):
            time.sleep(rng.uniform(2, 12))
            if cycle % 3 == 2:
                flipped = flip_model(settings)
                if flipped:
                    stream_fault.notes.append(f"cycle {cycle}: killed after promoting {flipped}")
                    time.sleep(rng.uniform(0.0, 1.5))
            before = lake_batch(settings)
            stream.kill9()
            stream_fault.injected += 1
            killed_at = time.monotonic()
            stream.start()
            took = wait_new_batch(settings, before, 300)
            if took is None:
                raise SystemExit(f"no batch within 300 s after kill {cycle}; see {stream.log_path}")
            stream_fault.recovery_s.append(time.monotonic() - killed_at)
            log(
                f"stream kill {cycle + 1}/{args.stream_kills}: recovered in "
                f"{stream_fault.recovery_s[-1]:.1f} s"
            )

        for cycle in range(args.broker_kills):
            time.sleep(rng.uniform(3, 8))
            kill_broker_jvm(broker)
            broker_fault.injected += 1
            killed_at = time.monotonic()
            time.sleep(rng.uniform(1, 4))
            broker.start()
            before = lake_batch(settings)
            if not stream.alive():
                exits.injected += 1
                stream.start()
            took = wait_new_batch(settings, before, 300)
            if took is None and not stream.alive():
                exits.injected += 1
                stream.start()
                took = wait_new_batch(settings, before, 300)
            if took is None:
                raise SystemExit(f"no batch within 300 s after broker kill {cycle}")
            broker_fault.recovery_s.append(time.monotonic() - killed_at)
            log(
                f"broker kill {cycle + 1}/{args.broker_kills}: recovered in "
                f"{broker_fault.recovery_s[-1]:.1f} s"
            )

        stats = generator.stop(timeout=60)
        log(f"generator stopped: {stats}")
        produced = read_topic_ids(broker.client_config(), Topics.TRANSACTIONS, "transaction_id")
        log(f"{len(produced):,} transactions in the topic; waiting for the stream to catch up")
        want = set(produced)
        # The kills leave a backlog: wait while the stream makes progress on it (a stall of
        # CATCH_UP_STALL_S, or CATCH_UP_MAX_S in all, ends the wait; what is missing is lost).
        started_wait = last_progress = time.monotonic()
        done = 0
        while time.monotonic() - last_progress < CATCH_UP_STALL_S:
            if time.monotonic() - started_wait > CATCH_UP_MAX_S:
                break
            if not stream.alive():
                exits.injected += 1
                stream.start()
            stored_now = set(read_parquet_ids(settings))
            if want <= stored_now:
                break
            if len(stored_now) > done:
                done, last_progress = len(stored_now), time.monotonic()
            time.sleep(10)  # reading every id costs a second of CPU the stream needs
        log(f"caught up in {time.monotonic() - started_wait:.0f} s")
    finally:
        if generator.running:
            generator.stop(timeout=30)
        stream.stop()
    stored = read_parquet_ids(settings)
    counts = Counter(stored)
    lost = len(want - set(counts))
    dups = sum(c - 1 for c in counts.values() if c > 1)
    extra = len(set(counts) - want)
    log("checking every per-user feature in Parquet against the offline kernel ...")
    frame = read_enriched(settings)
    parity = feature_parity(frame) if frame is not None else {"rows": 0, "mismatched_values": -1}
    log(f"feature check: {parity}")
    alert_ids = read_topic_ids(broker.client_config(), Topics.ALERTS, "alert_id")
    alert_dups = sum(c - 1 for c in Counter(alert_ids).values() if c > 1)
    summary: dict[str, Any] = {
        "transactions_acknowledged": len(want),
        "parquet_rows": len(stored),
        "lost": lost,
        "duplicated_rows": dups,
        "unexpected_rows": extra,
        "alerts": len(alert_ids),
        "duplicate_alerts": alert_dups,
        "stream_kills": stream_fault.injected,
        "broker_kills": broker_fault.injected,
        "stream_self_exits": exits.injected,
        "cards_in_state": cards_in_state(stream.log_path),
        "distinct_cards": int(frame["user_id"].nunique()) if frame is not None else 0,
        "feature_rows_checked": parity["rows"],
        "feature_batches": parity.get("batches", 0),
        "feature_mismatches": parity["mismatched_values"],
        "feature_mismatched_columns": parity.get("mismatched_columns", []),
        "feature_first_mismatch": parity.get("first_mismatch"),
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    write_report(args.out, summary, [stream_fault, broker_fault, exits], args)
    if args.out.resolve() == (ROOT / "docs" / "reliability.md").resolve():
        sys.path.insert(0, str(ROOT / "scripts"))
        import perf_table

        def p50(f: Fault) -> float | None:
            return round(statistics.median(f.recovery_s), 1) if f.recovery_s else None

        record = {
            **summary,
            "rate": args.rate,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "stream_recovery_p50_s": p50(stream_fault),
            "broker_recovery_p50_s": p50(broker_fault),
        }
        perf_table.CHAOS_JSON.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        perf_table.rewrite_readme()
    print(json.dumps(summary, indent=2))
    ok = lost == 0 and dups == 0 and extra == 0 and parity["mismatched_values"] == 0
    return 0 if ok else 1


CATCH_UP_STALL_S = 180.0
CATCH_UP_MAX_S = 1200.0

# The table of what tests prove is rendered by scripts/reliability.py from a test run
# (`just guarantees`); the campaign keeps it as it is.
GUARANTEES_START = "<!-- guarantees:start -->"
GUARANTEES_END = "<!-- guarantees:end -->"


def _kept_guarantees(out: Path) -> str:
    with contextlib.suppress(OSError):
        text = out.read_text(encoding="utf-8")
        start, end = text.find(GUARANTEES_START), text.find(GUARANTEES_END)
        if 0 <= start < end:
            return text[start : end + len(GUARANTEES_END)]
    return f"{GUARANTEES_START}\nRun `just guarantees` to fill this table.\n{GUARANTEES_END}"


def write_report(
    out: Path, s: dict[str, Any], faults: list[Fault], args: argparse.Namespace
) -> None:
    lines = [
        "# Reliability",
        "",
        "Written by `just chaos` (`scripts/chaos.py`). Under a steady "
        f"{args.rate:,.0f} tx/s from the live generator, the stream process and the broker's JVM "
        "are killed with SIGKILL at random moments and restarted; at the end every transaction "
        "the broker acknowledged is looked up in the Parquet by `transaction_id`.",
        "",
        "| fault | injected | lost | duplicated Parquet rows | recovery p50 | recovery max |",
        "|---|---|---|---|---|---|",
        faults[0].row(s["lost"], s["duplicated_rows"]),
        faults[1].row("(same audit)", "(same audit)"),
        faults[2].row("—", "—"),
        "",
        f"- acknowledged transactions: {s['transactions_acknowledged']:,}; Parquet rows: "
        f"{s['parquet_rows']:,}; lost: **{s['lost']}**; duplicated: **{s['duplicated_rows']}**; "
        f"rows that were never produced: {s['unexpected_rows']}",
        f"- per-user features: every one of the {s['feature_rows_checked']:,} rows in Parquet "
        f"folded again by the offline kernel (rtfd.features.kernel.step_batch, from an empty "
        f"state, in the stream's {s['feature_batches']:,} batches in order): "
        f"**{s['feature_mismatches']:,}** values differ"
        + (
            f" (columns {', '.join(s['feature_mismatched_columns'])}; first: "
            f"{s['feature_first_mismatch']})"
            if s["feature_mismatches"]
            else " (bit for bit); so the state each batch saw after every restart was the state "
            "it saw the first time"
        ),
        f"- cards in the stream's state at the end: {s['cards_in_state'] or 0:,} "
        f"({s['distinct_cards']:,} distinct cards in Parquet; the generator's rate sets the cards, "
        "rtfd.generator.live)",
        f"- alerts: {s['alerts']:,}, of which {s['duplicate_alerts']:,} repeat an `alert_id` "
        "(replayed batches; alerts are at-least-once, consumers de-duplicate on `alert_id`)",
        "- recovery = from the kill to the next committed Parquet batch, including the restart "
        "of Spark (stream) or of the JVM (broker)",
        f"- campaign wall time: {s['minutes']} min",
        "",
    ]
    for f in faults:
        lines += [f"- {n}" for n in f.notes]
    lines += [
        "",
        "## Proven by tests",
        "",
        "Every entry of `tests/guarantees.py`, with what its tests did in a real run "
        "(`just guarantees`: `pytest -m guarantee`, then `scripts/reliability.py`).",
        "",
        _kept_guarantees(out),
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
