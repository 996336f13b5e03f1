"""Row-split parallelism for the large batches of one process.

The local stream does its work in one Python thread while Spark's JVM waits for it, so on a
drain (batches of tens of thousands of rows) one core idles. The heavy steps of a batch — Arrow's
JSON reader and compute kernels, NumPy on large arrays, XGBoost's prediction — release the GIL,
so the rows can be split over a few threads: each thread runs the same step on its own rows, the
caller's thread takes the first share, and the results come back in row order. Small batches
(the latency path: a few hundred rows) stay on one thread, where a split would cost more than it
saves. Plain threads, not OpenMP: XGBoost's OpenMP threads spin-wait and thrash when the JVM
wants the same cores (``nthread`` stays 1 per call, see :data:`rtfd.ml.models.XGB_PARAMS`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")

#: Rows a thread gets at least: far above the latency path's batches (a few hundred rows),
#: where handing work to another thread and joining the results weigh more than the work.
MIN_ROWS_PER_THREAD = 8_192
MAX_THREADS = 4

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_inside = threading.local()


def threads() -> int:
    """Threads a split may use: the cores this process may run on, at most :data:`MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


def spans(n: int, min_rows: int = MIN_ROWS_PER_THREAD) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges that cover ``range(n)`` in order: one per thread, at least
    ``min_rows`` rows each (one range for a small ``n``)."""
    k = max(1, min(threads(), n // max(1, min_rows)))
    bounds = [n * i // k for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_THREADS - 1, thread_name_prefix="rtfd-rows")
        return _pool


def _run(fn: Callable[[int, int], T], start: int, stop: int) -> T:
    _inside.active = True
    try:
        return fn(start, stop)
    finally:
        _inside.active = False


def map_rows(
    fn: Callable[[int, int], T], n: int, *, min_rows: int = MIN_ROWS_PER_THREAD
) -> list[T]:
    """``[fn(start, stop) for each span of range(n)]``, the spans run at once on a few threads
    (the first on the caller's). ``fn`` must only read shared inputs. A call made from inside
    ``fn`` runs on one thread (a nested split could wait on a pool its caller holds)."""
    parts = spans(n, min_rows)
    if len(parts) == 1 or getattr(_inside, "active", False):
        return [fn(0, n)]
    pool = _executor()
    futures = [pool.submit(_run, fn, a, b) for a, b in parts[1:]]
    try:
        first = _run(fn, *parts[0])
    finally:
        wait(futures)  # every thread has finished with the inputs, even when one failed
    return [first, *(f.result() for f in futures)]
