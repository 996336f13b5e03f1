"""The console's live bookkeeping without a screen (rtfd.tui.live_stats): idle detection, the
alert-rate window, dead letters, component statuses and the lake poll, on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from rtfd.components import ComponentStatus, State
from rtfd.stream.progress import StreamProgress
from rtfd.supervisor import StreamProgressEvent
from rtfd.tui import live_stats
from rtfd.tui.live_stats import LiveStats, ScoredPoller, scored_rows_sql

pytestmark = pytest.mark.unit

T0 = datetime(2025, 6, 14, 18, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(**changes: Any) -> StreamProgressEvent:
    record = StreamProgress(
        query="transactions",
        batch_id=1,
        timestamp=T0,
        input_rows=100,
        input_rows_per_s=100.0,
        processed_rows_per_s=900.0,
        batch_duration_ms=400,
        latency_p99_ms=900.0,
    )
    recent = changes.pop("recent", ())
    return StreamProgressEvent(replace(record, **changes), tuple(recent))


def running(*names: str) -> dict[str, ComponentStatus]:
    return {n: ComponentStatus(n, State.RUNNING) for n in names}


def test_dead_letters_add_up_and_the_batch_feeds_the_charts() -> None:
    stats = LiveStats({})
    batch = stats.add_progress(
        [progress(dead_letters=2), progress(dead_letters=3, latency_p99_ms=None)]
    )
    assert stats.dead_letters == 5
    assert batch.throughput == [100.0, 100.0]
    assert batch.latency_p99_ms == [900.0, None]
    assert batch.recent == []
    assert stats.latest_progress is not None and stats.latest_progress.dead_letters == 3


@pytest.mark.parametrize(
    ("batch_ms", "quiet_s", "idle"),
    [
        (400, 5.0, False),  # under STREAM_IDLE_S
        (400, 10.5, True),  # over it
        (8_000, 12.0, False),  # slow batches: two batch durations (16 s) apply
        (8_000, 16.5, True),
        (0, 10.01, True),
    ],
)
def test_a_running_stream_without_batches_turns_idle(
    batch_ms: int, quiet_s: float, idle: bool
) -> None:
    clock = Clock()
    stats = LiveStats(running("stream"), clock=clock)
    stats.add_progress([progress(batch_duration_ms=batch_ms)])
    clock.now += quiet_s
    assert (stats.stream_idle_s() is not None) is idle
    if idle:
        assert stats.stream_idle_s() == pytest.approx(quiet_s)


@pytest.mark.parametrize("state", [State.STARTING, State.FAILED, State.STOPPED, State.DEGRADED])
def test_only_a_running_stream_can_be_idle(state: State) -> None:
    clock = Clock()
    stats = LiveStats({"stream": ComponentStatus("stream", state)}, clock=clock)
    stats.add_progress([progress()])
    clock.now += 60
    assert stats.stream_idle_s() is None


def test_no_batch_yet_is_not_idle() -> None:
    clock = Clock()
    stats = LiveStats(running("stream"), clock=clock)
    clock.now += 600
    assert stats.stream_idle_s() is None


def test_the_alert_rate_counts_the_last_minute_only() -> None:
    clock = Clock()
    stats = LiveStats({}, clock=clock)
    stats.add_alerts(30, None)
    clock.now += 30
    stats.add_alerts(15, None)
    assert stats.alerts_per_min() == pytest.approx(45.0)
    clock.now += 31  # the first 30 leave the window
    assert stats.alerts_per_min() == pytest.approx(15.0)
    clock.now += 60
    assert stats.alerts_per_min() == 0.0


def test_backfilled_alerts_count_nothing_but_their_threshold_stands_in() -> None:
    stats = LiveStats({})
    stats.add_alerts(0, 0.37)
    assert stats.alerts_per_min() == 0.0
    assert stats.threshold == pytest.approx(0.37)
    stats.add_alerts(1, 0.5)  # the first one stays until the model's own is set
    assert stats.threshold == pytest.approx(0.37)


def test_a_failure_toasts_once_and_its_error_notice_is_swallowed() -> None:
    clock = Clock()
    stats = LiveStats(running("broker"), clock=clock)
    moved, toast = stats.update_status(ComponentStatus("broker", State.FAILED, "down"))
    assert moved and toast
    assert stats.repeats_failure("error") and not stats.repeats_failure("warning")
    assert stats.update_status(ComponentStatus("broker", State.FAILED, "still down")) == (
        False,
        False,
    )
    clock.now += live_stats.SAME_FAILURE_S + 0.1
    assert not stats.repeats_failure("error")
    assert stats.update_status(ComponentStatus("broker", State.RUNNING)) == (True, False)
    assert stats.is_up("broker") and not stats.is_up("stream")


def test_rows_carried_by_progress_make_the_lake_poll_unnecessary_for_a_while() -> None:
    clock = Clock()
    stats = LiveStats({}, clock=clock)
    assert not stats.recent_fresh()
    batch = stats.add_progress([progress(recent=[{"transaction_id": "t1"}])])
    assert batch.recent == [{"transaction_id": "t1"}]
    assert stats.recent_fresh()
    clock.now += live_stats.RECENT_FRESH_S + 0.1
    assert not stats.recent_fresh()


def test_skipped_offsets_mark_the_stream_as_skipping() -> None:
    stats = LiveStats({})
    stats.add_progress([progress()])
    assert not stats.skipping
    stats.add_progress([progress(skipped_offsets=4)])
    assert stats.skipping


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]


class Service:
    def __init__(self, fail: bool = False) -> None:
        self.sql: list[str] = []
        self.fail = fail
        self.closed = False

    def run(self, sql: str, limit: int | None = None) -> Result:
        self.sql.append(sql)
        if self.fail:
            raise RuntimeError("no Parquet yet")
        return Result(["transaction_id", "timestamp"], [("a", T0), ("b", T0.replace(minute=31))])

    def close(self) -> None:
        self.closed = True


def test_the_poller_reads_only_what_is_newer_than_what_it_showed() -> None:
    service = Service()
    opened: list[Service] = []
    poller = ScoredPoller(lambda: opened.append(service) or service)  # type: ignore[func-returns-value]
    rows = poller.poll()
    assert [r["transaction_id"] for r in rows] == ["a", "b"]
    assert "WHERE" not in service.sql[0]
    poller.poll()
    assert "WHERE timestamp > TIMESTAMPTZ '2025-06-14T18:31:00+00:00'" in service.sql[1]
    assert len(opened) == 1  # one service, kept
    poller.close()
    assert service.closed and poller.poll() == []


def test_a_failing_poll_returns_nothing_and_keeps_the_mark() -> None:
    poller = ScoredPoller(lambda: Service(fail=True))  # type: ignore[arg-type,return-value]
    assert poller.poll() == []
    assert poller.mark is None


def test_the_scored_rows_query_is_capped_and_newest_first() -> None:
    sql = scored_rows_sql(None)
    assert sql.endswith(f"ORDER BY timestamp DESC LIMIT {live_stats.SCORED_POLL_ROWS}")
    assert "FROM enriched_transactions" in sql
