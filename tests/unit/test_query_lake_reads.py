"""The library's DuckDB reads of the lake (rtfd.query.lake_reads): the stream's merchant risk
table equals the offline point-in-time table; the refresh window is the one the offline join
uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from rtfd.features.merchant_risk import MerchantRiskTable, point_in_time, refresh_window
from rtfd.features.timeutil import timestamps_ms
from rtfd.query.lake_reads import refresh_from_parquet
from tests.unit.test_features_kernel import T0, _labelled

pytestmark = pytest.mark.unit


def test_refresh_from_parquet_reads_labels_and_enriched_with_duckdb(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rtfd.config import load_settings

    settings = load_settings({"home": str(tmp_path)})
    empty = refresh_from_parquet(settings, now=T0)
    assert len(empty) == 0  # no data yet: neutral, not an error

    history = _labelled().assign(transaction_id=lambda d: [f"t{i}" for i in range(len(d))])
    day = history["timestamp"].dt.strftime("%Y-%m-%d")
    for date, part in history.groupby(day):
        out = settings.enriched_dir / f"event_date={date}"
        out.mkdir(parents=True)
        part[["transaction_id", "merchant_id", "timestamp"]].to_parquet(out / "part-0.parquet")
    now = T0 + timedelta(days=30, minutes=10)
    # Scored rows but no label yet (a fresh appliance, a restart before the first chargeback):
    # every merchant looks neutral, and the refresh must not fail (it once passed DuckDB a
    # parameter the label-less SQL does not use, and the stream could not start).
    unlabelled = refresh_from_parquet(settings, now=now, label_delay_s=86_400)
    assert len(unlabelled) > 0
    fraud = history[history["label"] == 1]
    labels = pd.DataFrame(
        {
            "transaction_id": fraud["transaction_id"],
            "label": 1,
            "fraud_type": "x",
            "reported_at": fraud["timestamp"] + timedelta(hours=1),
        }
    )
    settings.labels_dir.mkdir(parents=True)
    labels.to_parquet(settings.labels_dir / "labels.parquet")
    table = refresh_from_parquet(settings, now=now, label_delay_s=86_400)
    expected = point_in_time(history, label_delay_s=86_400)
    at = pd.Series([now] * 2)
    pd.testing.assert_frame_equal(table.lookup(["m1", "m2"], at), expected.lookup(["m1", "m2"], at))


@pytest.mark.parametrize("period_s", [60.0, 900.0, 3600.0, 86_400.0])
@pytest.mark.parametrize("delay_s", [0.0, 1.0, 3599.0, 3600.0, 86_400.0, 30 * 86_400.0 + 7])
@pytest.mark.parametrize("minute", [0, 1, 59, 61, 1439])
def test_the_refresh_window_is_the_point_in_time_cutoff(
    period_s: float, delay_s: float, minute: int
) -> None:
    """A refresh at ``now`` reads what the offline table counts at the ``now`` snapshot: events
    before now's period start less the delay rounded up to whole periods, 28 days back."""
    now = T0 + timedelta(minutes=minute, seconds=13, milliseconds=7)
    w = refresh_window(now, label_delay_s=delay_s, period_s=period_s)
    period_ms = round(period_s * 1000)
    assert w.period_ms == period_ms
    assert w.as_of_ms % period_ms == 0
    assert 0 <= now.timestamp() * 1000 - w.as_of_ms < period_ms
    assert w.as_of == datetime.fromtimestamp(w.as_of_ms / 1000, tz=UTC)
    table = MerchantRiskTable.empty(label_delay_s=delay_s, period_s=period_s, as_of=now)
    assert w.as_of_ms - w.hi_ms == table.delay_ms  # the table's own rounding of the delay
    assert w.hi_ms - w.lo_ms == 28 * 86_400_000
    assert w.delay_s == delay_s


def test_a_refresh_sees_the_snapshot_of_the_offline_table() -> None:
    """Aggregated from the transactions in the refresh window only (what the DuckDB query
    reads), the table answers lookups at ``now`` exactly as the offline point-in-time table."""
    history = _labelled()
    now = T0 + timedelta(days=30, minutes=10)
    w = refresh_window(now, label_delay_s=86_400, period_s=3600)
    t_ms = timestamps_ms(history["timestamp"])
    inside = (t_ms >= w.lo_ms) & (t_ms < w.hi_ms)
    assert 0 < inside.sum() < len(history)
    table = MerchantRiskTable.from_aggregates(
        history["merchant_id"].to_numpy(dtype=object)[inside],
        t_ms[inside] // w.period_ms,
        np.ones(int(inside.sum()), dtype=np.int64),
        history["label"].to_numpy(dtype=np.int64)[inside],
        label_delay_s=86_400,
        as_of=w.as_of,
    )
    expected = point_in_time(history, label_delay_s=86_400)
    at = pd.Series([now] * 2)
    pd.testing.assert_frame_equal(table.lookup(["m1", "m2"], at), expected.lookup(["m1", "m2"], at))
