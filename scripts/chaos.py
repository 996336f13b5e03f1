"""Chaos campaign: ``just chaos``. Kills the stream and the broker under load, then audits.

Set-up: an isolated data dir, the embedded broker, a bootstrap model, the live generator at
``--rate`` tx/s in this process, and the stream as a separate process (``python -m rtfd.stream``).

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
    if not settings.enriched_dir.exists():
        return []
    return [p for p in settings.enriched_dir.glob("*/*.parquet") if not p.name.startswith(".")]


class StreamProcess:
    """``python -m rtfd.stream`` as a child process that can be killed like a crash."""

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
            [sys.executable, "-m", "rtfd.stream", "--progress-every", "5"],
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


def wait_new_batch(settings: Settings, before: set[Path], timeout: float) -> float | None:
    """Seconds until a Parquet file not in ``before`` appears (a batch committed), or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if set(parquet_files(settings)) - before:
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
        if wait_new_batch(settings, set(), 300) is None:
            raise SystemExit(f"the stream committed no batch in 300 s; see {stream.log_path}")

        for cycle in range(args.stream_kills):
            time.sleep(rng.uniform(2, 12))
            if cycle % 3 == 2:
                flipped = flip_model(settings)
                if flipped:
                    stream_fault.notes.append(f"cycle {cycle}: killed after promoting {flipped}")
                    time.sleep(rng.uniform(0.0, 1.5))
            before = set(parquet_files(settings))
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
            before = set(parquet_files(settings))
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
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    write_report(args.out, summary, [stream_fault, broker_fault, exits], args)
    print(json.dumps(summary, indent=2))
    return 0 if lost == 0 and dups == 0 and extra == 0 else 1


CATCH_UP_STALL_S = 180.0
CATCH_UP_MAX_S = 1200.0

# What `just test` proves on every run (the fast subset), listed in the report beside the campaign.
OTHER_FAULTS = [
    "## Also tested on every `just test`",
    "",
    "| fault or surface | outcome | test |",
    "|---|---|---|",
    "| 3 kill -9 of the stream at random moments, restart from the checkpoint | 0 lost, 0 "
    "duplicated Parquet rows | `tests/spark/test_stream_crash.py` |",
    "| a query failure, then a restart of the same runner | the failed run releases its "
    "checkpoint lock and Spark; the restart resumes | `tests/spark/test_stream_e2e.py` |",
    "| bad input: invalid UTF-8, truncated JSON, wrong types, missing and extra fields, "
    "negative/zero/NaN/huge amounts, 1970 and 2100 timestamps, 1 MB messages, duplicate ids, "
    "unknown currency | each case has a defined outcome (dead letter with its reason code, or "
    "accepted under a documented rule), counted, and the query keeps running: "
    "[bad-input.md](bad-input.md) | `tests/spark/test_bad_input.py` |",
    '| disk full (an 8 MB tmpfs data dir) | a one-line "Disk full" error naming the path; no '
    "half-written model version or Parquet file; works again once space is freed | "
    "`tests/unit/test_disk_full.py` |",
    "| quitting the TUI in the middle of a retrain | the training is cancelled before it saves; "
    "registry, champion and history unchanged; the app exits in < 1 s | "
    "`tests/tui/test_quit_retrain.py` |",
    "| generator pause, resume, stop and restart | nothing lost or sent twice | "
    "`tests/unit/test_generator_live.py` |",
    "| broker, Spark driver and workers listen on loopback only | checked from /proc | "
    "`tests/kafka/test_broker.py`, `tests/spark/test_stream_e2e.py` |",
    "| DuckDB panel: writes, ATTACH, COPY TO, SET, INSTALL, reads outside the data dir | "
    "refused | `tests/unit/test_query.py` |",
    "| model artifacts with a changed byte, an unlisted file or a malicious pickle | refused "
    "before unpickling | `tests/unit/test_registry.py` |",
    "| a SASL password from the environment | never in the log or in `repr(settings)` | "
    "`tests/unit/test_security.py`, `tests/unit/test_config.py` |",
    "| the Redpanda compose file | binds 127.0.0.1 only | `tests/unit/test_redpanda.py` |",
    "",
]


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
        f"- alerts: {s['alerts']:,}, of which {s['duplicate_alerts']:,} repeat an `alert_id` "
        "(replayed batches; alerts are at-least-once, consumers de-duplicate on `alert_id`)",
        "- recovery = from the kill to the next committed Parquet batch, including the restart "
        "of Spark (stream) or of the JVM (broker)",
        f"- campaign wall time: {s['minutes']} min",
        "",
    ]
    for f in faults:
        lines += [f"- {n}" for n in f.notes]
    lines += ["", *OTHER_FAULTS]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
