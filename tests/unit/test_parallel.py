"""rtfd.parallel: a large batch's rows split over a few threads, results in row order."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

import rtfd.parallel as parallel

pytestmark = pytest.mark.unit


@pytest.fixture
def three_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "threads", lambda: 3)


@pytest.mark.parametrize("n", [0, 1, 100, 8_191, 8_192, 16_383, 16_384, 24_576, 1_000_003])
def test_spans_cover_the_rows_in_order_without_overlap(three_threads: None, n: int) -> None:
    spans = parallel.spans(n)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert len(spans) == max(1, min(3, n // parallel.MIN_ROWS_PER_THREAD))
    if len(spans) > 1:
        assert min(b - a for a, b in spans) >= parallel.MIN_ROWS_PER_THREAD


def test_results_come_back_in_row_order_from_several_threads(three_threads: None) -> None:
    seen: set[int] = set()
    lock = threading.Lock()

    def work(start: int, stop: int) -> np.ndarray:
        with lock:
            seen.add(threading.get_ident())
        time.sleep(0.05)  # long enough for the spans to overlap in time
        return np.arange(start, stop)

    n = 3 * parallel.MIN_ROWS_PER_THREAD + 7
    out = np.concatenate(parallel.map_rows(work, n))
    assert np.array_equal(out, np.arange(n))
    assert len(seen) == 3 and threading.get_ident() in seen


def test_a_small_batch_stays_on_the_callers_thread(three_threads: None) -> None:
    where: list[int] = []
    parallel.map_rows(lambda a, b: where.append(threading.get_ident()), 500)
    assert where == [threading.get_ident()]


def test_a_nested_split_runs_on_one_thread_instead_of_waiting_on_the_pool(
    three_threads: None,
) -> None:
    n = 4 * parallel.MIN_ROWS_PER_THREAD

    def inner(start: int, stop: int) -> int:
        return stop - start

    def outer(start: int, stop: int) -> list[int]:
        # Every pool thread busy in an outer span: an inner split on the pool could never run.
        return parallel.map_rows(inner, n)

    results = parallel.map_rows(outer, n)
    assert results == [[n]] * 3


def test_a_failing_span_raises_after_every_thread_has_finished(three_threads: None) -> None:
    finished: list[int] = []

    def work(start: int, stop: int) -> int:
        if start > 0 and start == parallel.spans(n)[1][0]:
            raise ValueError("span 2 failed")
        time.sleep(0.05)
        finished.append(start)
        return start

    n = 3 * parallel.MIN_ROWS_PER_THREAD
    with pytest.raises(ValueError, match="span 2 failed"):
        parallel.map_rows(work, n)
    assert sorted(finished) == [0, parallel.spans(n)[2][0]]
