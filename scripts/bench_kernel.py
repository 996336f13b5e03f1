"""Kernel throughput: ``python scripts/bench_kernel.py [--rows N] [--cpu K]``.

Not a test — a measurement, reported in docs/ml.md (and usable from ``just bench``):

* offline: :func:`build_features` over a simulated history, one batch;
* stream-like: the history replayed as micro-batches split into user buckets, each bucket call
  deserialising its state blob, stepping, and serialising it again — what the Spark operator does;
* reference: the per-transaction :func:`step`, on a slice, for scale.

``--cpu K`` pins the process to one core first (Linux), so "per core" means one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's rtfd first

from rtfd.features.batch import step_batch
from rtfd.features.offline import build_features, fold_reference
from rtfd.features.state import KernelState


def _history(rows: int, seed: int) -> pd.DataFrame:
    from rtfd.generator.history import simulate_history

    # The simulator makes about 2.9 transactions per user and day.
    users = max(100, rows // 170)
    days = max(1.0, rows / (users * 2.85))
    frame = simulate_history(days, seed=seed, users=users, merchants=max(50, users // 5))
    return frame.iloc[:rows].reset_index(drop=True)


def bench_offline(history: pd.DataFrame) -> float:
    started = time.perf_counter()
    build_features(history)
    return len(history) / (time.perf_counter() - started)


def bench_stream(history: pd.DataFrame, *, batch_rows: int, buckets: int) -> tuple[float, float]:
    """(rows/s, mean ms per bucket call) replaying ``history`` as bucketed micro-batches."""
    blobs = [KernelState().to_bytes() for _ in range(buckets)]
    bucket = np.array([zlib.crc32(u.encode()) % buckets for u in history["user_id"]])
    calls = 0
    started = time.perf_counter()
    for lo in range(0, len(history), batch_rows):
        part = slice(lo, min(lo + batch_rows, len(history)))
        b = bucket[part]
        batch = history.iloc[part]
        for k in range(buckets):
            rows = batch[b == k]
            if len(rows) == 0:
                continue
            state, _ = step_batch(KernelState.from_bytes(blobs[k]), rows)
            blobs[k] = state.to_bytes()
            calls += 1
    elapsed = time.perf_counter() - started
    return len(history) / elapsed, 1000.0 * elapsed / max(calls, 1)


def bench_reference(history: pd.DataFrame, rows: int = 5_000) -> float:
    part = history.iloc[:rows]
    started = time.perf_counter()
    fold_reference(part)
    return len(part) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--buckets", type=int, default=16)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    history = _history(args.rows, args.seed)
    build_features(history.iloc[:1000])  # warm up imports and caches
    offline = bench_offline(history)
    stream, per_call = bench_stream(
        history.iloc[: min(len(history), 200_000)],
        batch_rows=args.batch_rows,
        buckets=args.buckets,
    )
    reference = bench_reference(history)
    print(f"rows                 {len(history):,}")
    print(f"offline batch        {offline:,.0f} tx/s")
    print(
        f"stream-like          {stream:,.0f} tx/s ({args.buckets} buckets, "
        f"{args.batch_rows:,}-row batches, {per_call:.1f} ms per bucket call)"
    )
    print(f"reference step       {reference:,.0f} tx/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
