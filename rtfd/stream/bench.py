"""Stream benchmark: ``python -m rtfd.stream.bench --bootstrap HOST:PORT [--rate 1000]``.

Runs the real job in-process against a running broker on fresh topics and a fresh data dir:

1. **live**: the generator sends ``--rate`` tx/s for ``--seconds``; reports end-to-end latency
   (Kafka timestamp -> sink commit) p50/p99 over the batches after warm-up, the Kafka lag, and
   whether it stayed bounded;
2. **drain**: ``--backlog`` transactions are produced at once; the rows/s at which the stream
   drains them is the sustainable throughput;
3. memory: RSS of the driver, the JVM and the Python workers at the end.

Prints one JSON document. Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtfd.stream.bench")
    parser.add_argument("--bootstrap", required=True, help="host:port of a running broker")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args(argv)

    import numpy as np

    from rtfd.config import load_settings
    from rtfd.generator.live import LiveGenerator, produce_transactions
    from rtfd.logs import setup_logging
    from rtfd.stream.procs import checkpoint_tag, tagged_processes
    from rtfd.stream.runner import StreamRunner, StreamTopics
    from rtfd.stream.scoring import ensure_model
    from rtfd.stream.session import TAG_ENV

    home = Path(tempfile.mkdtemp(prefix="rtfd-bench-"))
    settings = load_settings(
        {
            "home": str(home),
            "broker_bootstrap_servers": args.bootstrap,
            "spark_master": args.master,
        },
        environ={"RTFD_CONFIG": str(home / "none.toml")},
    )
    setup_logging(settings, console=False)
    ensure_model(settings)
    topics = StreamTopics.with_prefix(f"bench{int(time.time())}-")
    runner = StreamRunner(settings, topics=topics)
    events: list[Any] = []
    runner.add_listener(lambda e: events.append((time.monotonic(), e)))
    t0 = time.monotonic()
    runner.start()
    state = runner.wait_running(600)
    if state.phase != "running":
        print(json.dumps({"error": state.reason}))
        return 1
    out: dict[str, Any] = {"start_s": round(time.monotonic() - t0, 1), "home": str(home)}

    def rows() -> int:
        return sum(e.rows for _, e in events if e.query == "transactions")

    gen = LiveGenerator(
        settings, topic=topics.transactions, labels_topic=topics.labels, rate=args.rate
    )
    live_start = time.monotonic()
    gen.start()
    time.sleep(args.seconds)
    live_sent = gen.stop().acked
    live = [
        e
        for t, e in events
        if e.query == "transactions" and e.rows and t - live_start > args.warmup
    ]
    p50 = [e.latency_p50_ms for e in live if e.latency_p50_ms is not None]
    p99 = [e.latency_p99_ms for e in live if e.latency_p99_ms is not None]
    lags = [e.offsets_behind or 0 for e in live]
    out["live"] = {
        "rate": args.rate,
        "batches": len(live),
        "rows_per_s": round(sum(e.rows for e in live) / max(1e-9, args.seconds - args.warmup)),
        "latency_p50_ms": round(float(np.median(p50))) if p50 else None,
        "latency_p99_ms": round(float(np.percentile(p99, 99))) if p99 else None,
        "batch_ms_p50": round(float(np.median([e.batch_duration_ms for e in live])))
        if live
        else None,
        "lag_max": max(lags, default=None),
        "lag_last": lags[-1] if lags else None,
    }
    # Drain: wait until the live traffic is processed, then measure a backlog.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and rows() < live_sent:
        time.sleep(0.5)
    out["live"]["catch_up_s"] = round(time.monotonic() - live_start - args.seconds, 1)
    before = rows()
    produce_transactions(settings, args.backlog, topic=topics.transactions, labels=False)
    t_drain = time.monotonic()
    while time.monotonic() - t_drain < 900 and rows() < before + args.backlog:
        time.sleep(0.5)
    took = time.monotonic() - t_drain
    out["drain"] = {
        "rows": rows() - before,
        "seconds": round(took, 1),
        "rows_per_s": round((rows() - before) / took),
    }
    handle = runner._handle
    workers = tagged_processes(checkpoint_tag(settings.checkpoints_dir), TAG_ENV)
    jvm = handle.jvm_pid if handle else None
    out["memory_mb"] = {
        "driver_python": round(_rss_mb(__import__("os").getpid())),
        "jvm": round(_rss_mb(jvm)) if jvm else None,
        "python_workers": round(sum(_rss_mb(p) for p in workers if p != jvm)),
        "worker_processes": len([p for p in workers if p != jvm]),
    }
    runner.stop()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
