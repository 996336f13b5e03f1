"""Formatting helpers of the console (pure functions, no app)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from rtfd.tui.format import (
    RATE_STEPS,
    fmt_int,
    fmt_ms,
    fmt_rate,
    fmt_time,
    next_rate,
    parse_alert,
    reasons_text,
    result_cells,
    score_style,
    stream_summary,
)

pytestmark = pytest.mark.unit


def test_numbers_durations_and_rates_read_well() -> None:
    assert fmt_int(1234567.4) == "1,234,567"
    assert fmt_rate(12.34) == "12.3/s" and fmt_rate(1985) == "1,985/s"
    assert fmt_rate(23_456) == "23.5k/s"
    assert fmt_ms(412) == "412 ms" and fmt_ms(1180) == "1.18 s" and fmt_ms(125_000) == "2m05s"
    for bad in (None, "x", float("nan"), True):
        assert fmt_int(bad) == fmt_rate(bad) == fmt_ms(bad) == "-"


def test_times_from_iso_datetime_and_epoch() -> None:
    ts = datetime(2025, 6, 14, 18, 30, 5, tzinfo=UTC)
    assert fmt_time("2025-06-14T18:30:05.123Z") == "18:30:05"
    assert fmt_time(ts) == fmt_time(ts.timestamp()) == fmt_time(ts.timestamp() * 1000)
    assert fmt_time("yesterday") == "-"


def test_scores_are_red_at_the_threshold_amber_near_it() -> None:
    assert score_style(0.42, 0.42) == "bold red"
    assert score_style(0.30, 0.42) == "yellow"
    assert score_style(0.05, 0.42) == "green"
    assert score_style(None, 0.42) == "dim"


def test_rate_keys_walk_the_ladder_and_stop_at_its_ends() -> None:
    assert next_rate(200, up=True) == 500 and next_rate(200, up=False) == 100
    assert next_rate(150, up=True) == 200 and next_rate(150, up=False) == 100
    assert next_rate(RATE_STEPS[-1], up=True) == RATE_STEPS[-1]
    assert next_rate(RATE_STEPS[0], up=False) == RATE_STEPS[0]


def test_stream_summary_reads_the_streams_progress_record() -> None:
    from rtfd.stream.progress import StreamProgress

    record = StreamProgress(
        query="transactions",
        batch_id=3,
        timestamp=datetime(2025, 6, 14, tzinfo=UTC),
        input_rows=1000,
        input_rows_per_s=998.0,
        processed_rows_per_s=4210.0,
        batch_duration_ms=640,
        latency_p99_ms=1320.0,
        offsets_behind=12,
    )
    assert stream_summary(record) == "998 rows/s · cap 4,210/s · batch 640 ms · lag 12 · p99 1.32 s"
    assert stream_summary(SimpleNamespace()) == "- · cap - · batch - · lag - · p99 -"
    # Offsets deleted by retention before the stream read them are never silent.
    record = dataclasses.replace(record, skipped_offsets=1500)
    assert stream_summary(record).endswith("· 1,500 never read (deleted by retention)")


def test_alert_values_decode_or_are_skipped() -> None:
    assert parse_alert(b'{"alert_id": "a", "reasons": ["x", "y"]}') == {
        "alert_id": "a",
        "reasons": ["x", "y"],
    }
    assert parse_alert(b"not json") is None and parse_alert(b"[1]") is None
    assert parse_alert(b"\xff\xfe") is None and parse_alert(None) is None
    assert reasons_text(["amount 9x median", "new city"]) == "amount 9x median; new city"


def test_result_columns_of_floats_line_up() -> None:
    cells = result_cells([(0.43, 6766.7, 3, None), (0.546, 8352.15, 12_000, 2.5)])
    assert [str(c) for c in cells[0]] == ["0.430", "6,766.70", "3", "NULL"]
    assert [str(c) for c in cells[1]] == ["0.546", "8,352.15", "12,000", "2.5"]
