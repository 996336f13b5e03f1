r"""Compare the stream's drain rate under a few variants of its settings, on one broker.

    .venv/bin/python scripts/drain_ab.py '{}' \
        '{"client_java": {"max.partition.fetch.bytes": "1048576"}}'
    .venv/bin/python scripts/drain_ab.py '{"_threads": 1}' '{}'

Each argument is a JSON object of settings to change (``_threads`` pins the threads of
:mod:`rtfd.parallel` instead). The variants run in turn, ``--rounds`` times (so that a slow
minute of a shared machine hits both), each as a fresh stream on its own topics draining the
``just bench`` backlogs (scripts/bench_stream.py); per run it prints the drain rates and the
average steps of a drain batch (Spark's and the sink's, ms). For a decision, not for figures:
``just bench`` publishes those.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_stream
from bench import Report
from bench_common import install_models, sub_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="JSON objects of settings")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    variants = [json.loads(v) for v in args.variants]

    import rtfd.parallel
    from rtfd.broker.kafka import EmbeddedKafka
    from rtfd.config import load_settings
    from rtfd.logs import setup_logging
    from rtfd.sysinfo import free_port

    home = Path(tempfile.mkdtemp(prefix="rtfd-drain-ab-"))
    environ = {k: v for k, v in os.environ.items() if k == "RTFD_CACHE_DIR"}
    environ["RTFD_CONFIG"] = str(home / "none.toml")
    overrides = {
        "home": str(home),
        "log_level": "INFO",
        "broker_backend": "kafka",
        "broker_port": free_port(),
        "broker_controller_port": free_port(),
        "broker_heap_mb": 1024,
    }
    settings = load_settings(overrides, environ=environ)
    setup_logging(settings, console=False)
    default_threads = rtfd.parallel.threads
    broker = EmbeddedKafka(settings)
    broker.start()
    try:
        for rnd in range(args.rounds):
            for i, variant in enumerate(variants):
                changes: dict[str, Any] = dict(variant)
                pinned = changes.pop("_threads", None)
                rtfd.parallel.threads = (lambda k=pinned: k) if pinned else default_threads
                s = settings.replace(**changes)
                report = Report(options={"quick": False, "only": None})
                bench = bench_stream.StreamBench(report, s, 2)
                bench.s = sub_settings(s, f"stream-{rnd}-{i}")
                bench.s.ensure_dirs()
                bench.version = install_models(s, bench.s, bench.scale)
                try:
                    bench.start()
                    fig = bench.drain()
                    bench.breakdowns()
                finally:
                    bench.stop()
                steps = report.shared.get("breakdown drain", {})
                print(f"round {rnd} {json.dumps(variant)}: drain rows/s "
                      f"{[round(v) for v in fig.values]}", flush=True)  # fmt: skip
                print("  steps ms " + json.dumps({k: round(v) for k, v in steps.items()}))
    finally:
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
