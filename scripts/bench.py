"""Benchmarks: ``just bench`` measures rtfd and rewrites docs/benchmarks.md and .json.

Every figure is the median of ``--runs`` runs (default 3), or of three time windows of one run,
with min and max, all measured in one run of this script on this machine against one embedded
broker, so ratios compare like with like. A section that fails is reported as failed; the others
still run.

Sections, in order, with the time budget of a full run on 2 cores (about 17 minutes with the
broker's start; each section prints its elapsed time against its budget):
  broker      (30 s) raw produce / consume rate of the broker (confluent-kafka, 200 B messages)
  components  (90 s) producer, feature kernel, scoring per algorithm, stateful operator alone,
              Parquet sink (scripts/bench_components.py)
  limit       (45 s) the same work without Spark: one consumer, the kernel and the model in one
              process (scripts/bench_limit.py)
  naive       (3 min) a naive Spark pipeline (per-batch toPandas, features from the batch
              alone): drain rate, latency at 1,000 tx/s (scripts/bench_naive.py)
  stream      (11 min) the appliance's stream: drain rate, latency at 500 / 1,000 / 5,000 tx/s,
              the sustained rate (3 x 1 min), memory, where the time goes
              (scripts/bench_stream.py); then the headline keys and the goals

``--quick`` shrinks every size and duration (a few minutes; for development, not for figures).
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
            f"| {self.name} | {_number(self.median)} | {_number(min(self.values))} | "
            f"{_number(max(self.values))} | {self.unit} | {self.note} |"
        )


@dataclass
class Report:
    """All sections of one benchmark run."""

    sections: dict[str, list[Figure]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # The 1-minute load average when each section ended: the bench's own processes count in it,
    # so well above the cores it uses means something else was running (a noisy figure).
    loads: dict[str, float] = field(default_factory=dict)
    # What a later step needs from an earlier section, by key (e.g. the limit's drain rate).
    shared: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, fig: Figure) -> Figure:
        self.sections.setdefault(section, []).append(fig)
        return fig

    def figure(self, section: str, name: str, unit: str, note: str = "") -> Figure:
        """A new, empty figure of ``section`` (added to the report now)."""
        return self.add(section, Figure(name, unit, note=note))


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
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        got = 0
        start = last = time.perf_counter()
        while got < n + 1:
            # Never ask for more than is left: consume() waits its whole timeout for a full batch.
            msgs = consumer.consume(min(10_000, n + 1 - got), timeout=5)
            if not msgs:
                break
            got += len(msgs)
            last = time.perf_counter()
        consumer.close()
        return got / (last - start)

    prod = report.add("broker", Figure("raw produce (200 B, idempotent, acks=all)", "msg/s"))
    cons = report.add("broker", Figure("raw consume (one consumer)", "msg/s"))
    for _ in range(runs):
        prod.values.append(produce())
        cons.values.append(consume())


SECTIONS: dict[str, Callable[[Report, Any, int], None]] = {"broker": bench_broker}
BUDGET_S: dict[str, float] = {"broker": 30}
FINALIZERS: list[Callable[[Report], None]] = []


def load_optional_sections() -> None:
    """Sections that live in scripts/bench_*.py modules: ``SECTIONS`` (name -> function),
    ``BUDGET_S`` (name -> seconds a full run may take) and ``finalize(report)`` (run after every
    section, to derive figures across sections)."""
    for path in sorted((ROOT / "scripts").glob("bench_*.py")):
        module = __import__(path.stem)
        SECTIONS.update(getattr(module, "SECTIONS", {}))
        BUDGET_S.update(getattr(module, "BUDGET_S", {}))
        if hasattr(module, "finalize"):
            FINALIZERS.append(module.finalize)


# -- report ------------------------------------------------------------------------------------
def write_report(report: Report, machine: dict[str, Any], out_dir: Path, elapsed_s: float) -> None:
    quick = bool(report.options.get("quick"))
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
        f"- benchmark wall time: {elapsed_s / 60:.1f} min"
        + (" (`--quick`: development sizes, not figures to quote)" if quick else ""),
        "- time per section: " + ", ".join(f"{k} {v:.0f} s" for k, v in report.timings.items()),
        "- 1-minute load average at the end of each section (the bench's own processes included;"
        " above the cores means other work shared the machine): "
        + ", ".join(f"{k} {v:.1f}" for k, v in report.loads.items()),
        "",
    ]
    if report.summary:
        lines += ["## Headline", "", "| key | value |", "|---|---|"]
        lines += [
            f"| `{k}` | {_number(v)} |" if isinstance(v, float) else f"| `{k}` | {v} |"
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
        **{k: _json_number(v) for k, v in report.summary.items()},
        "quick": quick,
        "machine": machine,
        "seconds_per_section": {k: round(v, 1) for k, v in report.timings.items()},
        "load_average_per_section": {k: round(v, 2) for k, v in report.loads.items()},
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
    every_section = not report.options.get("only")
    if not quick and every_section and out_dir.resolve() == (ROOT / "docs").resolve():
        import perf_table

        perf_table.rewrite_readme()


def _number(v: float) -> str:
    """Enough digits to read, no false precision."""
    if v != v:  # NaN: not measured
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"


def _json_number(v: Any) -> Any:
    """NaN is not JSON: a figure that could not be measured is null."""
    return None if isinstance(v, float) and v != v else v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="sections to run (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs (dev)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's data (topics, Parquet), not only logs"
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="use this running broker instead of starting an embedded one (dev)",
    )
    args = parser.parse_args(argv)

    load_optional_sections()
    unknown = sorted(set(args.only or []) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    from rtfd.config import load_settings
    from rtfd.logs import setup_logging
    from rtfd.sysinfo import free_port

    home = Path(tempfile.mkdtemp(prefix="rtfd-bench-"))
    overrides: dict[str, Any] = {"home": str(home), "log_level": "INFO"}
    if args.bootstrap:
        overrides.update(broker_backend="external", broker_bootstrap_servers=args.bootstrap)
    else:
        overrides.update(
            broker_backend="kafka",
            broker_port=free_port(),
            broker_controller_port=free_port(),
            broker_heap_mb=1024,
        )
    # No config file and no RTFD_* variables: the figures must not depend on the user's setup.
    environ = {k: v for k, v in os.environ.items() if k == "RTFD_CACHE_DIR"}
    environ["RTFD_CONFIG"] = str(home / "none.toml")
    settings = load_settings(overrides, environ=environ)
    setup_logging(settings, console=False)
    started = time.perf_counter()
    machine = machine_info()
    report = Report(options={"quick": args.quick, "only": args.only})
    chosen = [name for name in SECTIONS if not args.only or name in args.only]
    budget = sum(BUDGET_S.get(n, 0) for n in chosen)
    print(
        f"bench: sections {', '.join(chosen)}; budget of a full run {budget / 60:.1f} min "
        f"({', '.join(f'{n} {BUDGET_S.get(n, 0):.0f} s' for n in chosen)}); logs in "
        f"{settings.log_file}",
        flush=True,
    )
    broker: Any = None
    if not args.bootstrap:
        from rtfd.broker.kafka import EmbeddedKafka

        broker = EmbeddedKafka(settings)
        print(f"bench: starting the embedded broker on {broker.bootstrap_servers}", flush=True)
        t0 = time.perf_counter()
        broker.start()
        report.timings["broker start"] = time.perf_counter() - t0
    try:
        for name in chosen:
            print(f"bench: {name} ...", flush=True)
            t0 = time.perf_counter()
            try:
                SECTIONS[name](report, settings, args.runs)
            except Exception as e:  # one broken section must not lose the others' figures
                traceback.print_exc()
                report.notes[name] = f"**failed**: {type(e).__name__}: {e}"
            took = time.perf_counter() - t0
            report.timings[name] = took
            report.loads[name] = os.getloadavg()[0]
            print(
                f"bench: {name} done in {took:.0f} s (budget {BUDGET_S.get(name, 0):.0f} s)",
                flush=True,
            )
        for fn in FINALIZERS:
            try:
                fn(report)
            except Exception as e:
                traceback.print_exc()
                report.notes["summary"] = f"**failed**: {type(e).__name__}: {e}"
    finally:
        if broker is not None:
            broker.stop()
        if not args.keep:
            remove_data(home)
    elapsed = time.perf_counter() - started
    write_report(report, machine, args.out, elapsed)
    print(
        f"bench: wrote {args.out / 'benchmarks.md'} in {elapsed / 60:.1f} min: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in report.timings.items()),
        flush=True,
    )
    for key, value in report.summary.items():
        print(f"bench:   {key} = {value}", flush=True)
    print(f"bench: logs in {home}" + ("" if args.keep else " (data removed; --keep keeps it)"))
    return 0


def remove_data(home: Path) -> None:
    """Delete a run's data (broker log segments, Parquet, checkpoints: a full run writes over a
    gigabyte) but keep every ``logs`` directory, to read after the run."""
    import shutil

    for top in home.iterdir():
        if top.name == "logs":
            continue
        if top.is_dir() and (top / "logs").is_dir():
            for child in top.iterdir():
                if child.name == "logs":
                    continue
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink()
        elif top.is_dir():
            shutil.rmtree(top, ignore_errors=True)
        else:
            top.unlink()


if __name__ == "__main__":
    sys.exit(main())
