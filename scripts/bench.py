"""Benchmarks: ``just bench`` measures rtfd and rewrites docs/benchmarks.md and .json.

Every figure is the median of ``--runs`` runs (default 3) with min and max, measured in one run of
this script on this machine, so ratios compare like with like. Sections that need components not
yet built are reported as skipped rather than guessed.

Sections:
  machine     cores, CPU model, memory, versions
  broker      raw produce / consume rate of the broker (confluent-kafka, 200-byte messages)
  producer    the simulator's producer (simulated transactions, idempotent, acks=all)
  offline     offline history generation (tx/min)
  kernel      feature kernel rows/s (offline batch path, one core)
  scoring     model scoring rows/s per algorithm
  stream      end-to-end sustained rate, latency at fixed rates, baseline, limit, memory
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


@dataclass
class Figure:
    """One measured quantity over several runs."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def row(self) -> str:
        if not self.values:
            return f"| {self.name} | — | — | — | {self.unit} | {self.note or 'not measured'} |"
        return (
            f"| {self.name} | {self.median:,.1f} | {min(self.values):,.1f} | "
            f"{max(self.values):,.1f} | {self.unit} | {self.note} |"
        )


@dataclass
class Report:
    """All sections of one benchmark run."""

    sections: dict[str, list[Figure]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, fig: Figure) -> Figure:
        self.sections.setdefault(section, []).append(fig)
        return fig


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    import pyspark

    from rtfd.sysinfo import java_version

    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "java": java_version(),
        "pyspark": pyspark.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def repeat(fig: Figure, runs: int, fn: Callable[[], float]) -> Figure:
    for _ in range(runs):
        fig.values.append(fn())
    return fig


# -- broker ------------------------------------------------------------------------------------
def bench_broker(report: Report, settings: Any, runs: int) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    from rtfd.broker import client_config

    config = client_config(settings)
    n = 200_000
    payload = b"x" * 200

    def produce() -> float:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        producer = Producer(
            {
                **config,
                "linger.ms": 5,
                "enable.idempotence": True,
                "acks": "all",
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        producer.produce(topic, payload)  # creates the topic before timing
        producer.flush(30)
        start = time.perf_counter()
        for i in range(n):
            while True:
                try:
                    producer.produce(topic, payload, key=str(i % 1000).encode())
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(60)
        elapsed = time.perf_counter() - start
        produce.last_topic = topic  # type: ignore[attr-defined]
        return n / elapsed

    def consume() -> float:
        topic = produce.last_topic  # type: ignore[attr-defined]
        consumer = Consumer(
            {
                **config,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.min.bytes": 1 << 16,
            }
        )
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = 0
        start = time.perf_counter()
        while got < n + 1:
            msgs = consumer.consume(10_000, timeout=5)
            if not msgs:
                break
            got += len(msgs)
        elapsed = time.perf_counter() - start
        consumer.close()
        return got / elapsed

    for _ in range(runs):
        report.sections.setdefault("broker", [])
    prod = report.add("broker", Figure("raw produce (200 B, idempotent, acks=all)", "msg/s"))
    cons = report.add("broker", Figure("raw consume (one consumer)", "msg/s"))
    for _ in range(runs):
        prod.values.append(produce())
        cons.values.append(consume())


SECTIONS: dict[str, Callable[[Report, Any, int], None]] = {"broker": bench_broker}


def load_optional_sections() -> None:
    """Sections that live in scripts/bench_*.py modules, added as components land."""
    for path in sorted((ROOT / "scripts").glob("bench_*.py")):
        module = __import__(path.stem)
        SECTIONS.update(getattr(module, "SECTIONS", {}))


# -- report ------------------------------------------------------------------------------------
def write_report(report: Report, machine: dict[str, Any], out_dir: Path, elapsed_s: float) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `just bench` (`scripts/bench.py`); do not edit by hand. Each figure is the "
        "median of the runs, with min and max, all measured in one run of the script on this "
        "machine.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine.items()),
        f"- benchmark wall time: {elapsed_s / 60:.1f} min",
        "",
    ]
    if report.summary:
        lines += ["## Headline", "", "| key | value |", "|---|---|"]
        lines += [
            f"| `{k}` | {v:,.3f} |" if isinstance(v, float) else f"| `{k}` | {v} |"
            for k, v in report.summary.items()
        ]
        lines.append("")
    for section, figures in report.sections.items():
        lines += [f"## {section}", ""]
        if report.notes.get(section):
            lines += [report.notes[section], ""]
        lines += ["| figure | median | min | max | unit | note |", "|---|---|---|---|---|---|"]
        lines += [f.row() for f in figures]
        lines.append("")
    for section, note in report.notes.items():
        if section not in report.sections:
            lines += [f"## {section}", "", note, ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmarks.md").write_text("\n".join(lines), encoding="utf-8")
    data = {
        **report.summary,
        "machine": machine,
        "figures": {
            s: {
                f.name: {
                    "median": f.median,
                    "min": min(f.values),
                    "max": max(f.values),
                    "unit": f.unit,
                    "runs": f.values,
                }
                for f in figs
                if f.values
            }
            for s, figs in report.sections.items()
        },
    }
    (out_dir / "benchmarks.json").write_text(json.dumps(data, indent=2), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="sections to run (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)

    load_optional_sections()
    from rtfd.broker.kafka import EmbeddedKafka
    from rtfd.config import load_settings
    from rtfd.sysinfo import free_port

    home = Path(tempfile.mkdtemp(prefix="rtfd-bench-"))
    settings = load_settings(
        {
            "home": str(home),
            "broker_backend": "kafka",
            "broker_port": free_port(),
            "broker_controller_port": free_port(),
            "broker_heap_mb": 1024,
        },
    )
    started = time.perf_counter()
    machine = machine_info()
    report = Report()
    broker = EmbeddedKafka(settings)
    print(f"bench: starting the embedded broker on {broker.bootstrap_servers}", flush=True)
    broker.start()
    try:
        for name, fn in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            print(f"bench: {name} ...", flush=True)
            t0 = time.perf_counter()
            try:
                fn(report, settings, args.runs)
            except Exception as e:  # one broken section must not lose the others' figures
                traceback.print_exc()
                report.notes[name] = f"**failed**: {type(e).__name__}: {e}"
            print(f"bench: {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        broker.stop()
    write_report(report, machine, args.out, time.perf_counter() - started)
    print(f"bench: wrote {args.out / 'benchmarks.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
