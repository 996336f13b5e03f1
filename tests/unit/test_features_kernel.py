"""What each feature means, on small hand-made histories, and how the state stays bounded."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from rtfd.errors import DataError
from rtfd.features import FEATURE_NAMES
from rtfd.features.arithmetic import KernelConfig
from rtfd.features.batch import step_batch
from rtfd.features.merchant_risk import MerchantRiskTable, point_in_time
from rtfd.features.names import FEATURE_DOCS
from rtfd.features.offline import build_features
from rtfd.features.reference import step
from rtfd.features.state import KernelState

pytestmark = pytest.mark.unit

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday, noon UTC


def txn(minutes: float, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "transaction_id": f"t{minutes}",
        "user_id": "alice",
        "merchant_id": "m1",
        "amount": 10.0,
        "currency": "EUR",
        "location": "Paris",
        "lat": 48.8566,
        "lon": 2.3522,
        "channel": "pos",
        "timestamp": T0 + timedelta(minutes=minutes),
    }
    base.update(kw)
    return base


def features_of(rows: list[dict[str, object]], **kw: object) -> pd.DataFrame:
    return build_features(pd.DataFrame(rows), **kw)  # type: ignore[arg-type]


def test_every_feature_is_documented_and_unique() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(FEATURE_DOCS) == set(FEATURE_NAMES)


def test_velocity_counts_prior_transactions_in_event_time_windows() -> None:
    rows = [txn(0), txn(1, amount=20.0), txn(11), txn(60 * 23)]
    f = features_of(rows)
    # The 10-minute window is (t - 10 min, t]: at minute 11 the one at minute 1 is just out.
    assert f["count_10m"].tolist() == [0, 1, 0, 0]
    assert f["sum_10m"].tolist() == [0, 10.0, 0, 0]
    assert f["count_1h"].tolist() == [0, 1, 2, 0]
    assert f["count_24h"].tolist() == [0, 1, 2, 3]
    assert f["sum_24h"].tolist() == [0, 10.0, 30.0, 40.0]
    assert f["seconds_since_prev"].tolist()[1:] == [60.0, 600.0, (60 * 23 - 11) * 60.0]
    assert f["seconds_since_prev"].iloc[0] == KernelConfig().ttl_s  # no previous: the TTL


def test_windows_ignore_arrival_order_and_other_users() -> None:
    rows = [txn(5), txn(0), txn(1, user_id="bob"), txn(3)]
    f = features_of(rows)
    assert f["count_10m"].tolist() == [2, 0, 0, 1]


def test_amount_features_compare_with_the_users_own_history() -> None:
    rows = [txn(i, amount=a) for i, a in enumerate([10.0, 20.0, 30.0, 200.0])]
    f = features_of(rows)
    assert f["amount_ratio"].tolist() == [1.0, 2.0, 2.0, 10.0]
    assert f["amount_zscore"].iloc[:2].tolist() == [0.0, 0.0]  # fewer than 2 prior
    assert f["amount_zscore"].iloc[3] == pytest.approx((200.0 - 20.0) / 10.0)
    assert f["amount_log1p"].iloc[3] == pytest.approx(math.log1p(200.0))
    assert f["user_txn_count"].tolist() == [0, 1, 2, 3]


def test_location_features() -> None:
    rows = [
        txn(0),
        txn(60, location="London", lat=51.5074, lon=-0.1278),
        txn(61, location="Paris"),
        txn(62, location=None, lat=None, lon=None),
    ]
    f = features_of(rows)
    assert f["first_time_city"].tolist() == [0, 1, 0, 0]  # a new user is not "new in town"
    assert f["city_share"].tolist() == [1.0, 0.0, 0.5, 1.0]  # missing location: neutral
    assert f["distance_prev_km"].iloc[1] == pytest.approx(343.5, abs=1.0)
    assert f["travel_speed_kmh"].iloc[1] == pytest.approx(343.5, abs=1.0)  # one hour
    # One minute later back in Paris: the speed uses at least a minute, never divides by 0.
    assert f["travel_speed_kmh"].iloc[2] == pytest.approx(343.5 * 60, rel=0.01)
    assert f["distance_prev_km"].iloc[3] == 0.0


def test_missing_location_columns_give_neutral_features() -> None:
    rows = [txn(0), txn(1, merchant_id="m2")]
    frame = pd.DataFrame(rows).drop(columns=["location", "lat", "lon", "channel"])
    f = build_features(frame)
    assert f["city_share"].tolist() == [1.0, 1.0]
    assert f["first_time_city"].tolist() == [0.0, 0.0]
    assert f["distance_prev_km"].tolist() == [0.0, 0.0]
    assert f["channel_share"].tolist() == [1.0, 1.0]
    assert f["first_time_merchant"].tolist() == [0.0, 1.0]


def test_merchant_and_channel_history() -> None:
    rows = [txn(0), txn(1), txn(2, merchant_id="m2", channel="online"), txn(3, channel="atm")]
    f = features_of(rows)
    assert f["merchant_user_count"].tolist() == [0, 1, 0, 2]
    assert f["first_time_merchant"].tolist() == [0, 0, 1, 0]
    assert f["channel_online"].tolist() == [0, 0, 1, 0]
    assert f["channel_atm"].tolist() == [0, 0, 0, 1]
    assert f["channel_share"].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_recent_novelty_counts_prior_first_visits() -> None:
    rows = [
        txn(0),
        txn(1, merchant_id="m2"),
        txn(2, merchant_id="m3", location="Lyon"),
        txn(3),
        txn(70, merchant_id="m4"),
    ]
    f = features_of(rows)
    assert f["new_merchants_1h"].tolist() == [0, 0, 1, 2, 0]
    assert f["new_merchants_24h"].tolist() == [0, 0, 1, 2, 2]
    assert f["new_cities_1h"].tolist() == [0, 0, 0, 1, 0]
    assert f["new_cities_24h"].tolist() == [0, 0, 0, 1, 1]


def test_time_features_use_local_solar_time() -> None:
    # 04:00 UTC on a Monday: night in UTC, but 23:00 on Sunday in New York (lon -74 -> UTC-5).
    ts = datetime(2024, 3, 4, 4, 0, tzinfo=UTC)
    f = features_of(
        [
            txn(0, timestamp=ts, lat=None, lon=None),
            txn(0, timestamp=ts, user_id="bob", lat=40.71, lon=-74.0),
        ]
    )
    assert f["is_night"].tolist() == [1.0, 0.0]
    assert f["day_of_week"].tolist() == [0.0, 6.0]
    assert f["is_weekend"].tolist() == [0.0, 1.0]
    assert f["hour_sin"].iloc[0] == pytest.approx(math.sin(2 * math.pi * 4 / 24))


def test_history_is_forgotten_after_the_ttl() -> None:
    cfg = KernelConfig(ttl_s=7 * 86_400.0)
    rows = [txn(0), txn(60 * 24 * 7 + 1), txn(60 * 24 * 7 + 2)]
    f = features_of(rows, config=cfg)
    assert f["user_txn_count"].tolist() == [0, 0, 1]
    assert f["merchant_user_count"].tolist() == [0, 0, 1]


def test_the_event_buffer_is_capped() -> None:
    cfg = KernelConfig(max_events=5)
    rows = [txn(i) for i in range(9)]
    state, f = step_batch(KernelState(cfg), pd.DataFrame(rows))
    assert f["count_10m"].tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 5]
    assert f["user_txn_count"].iloc[-1] == 8  # the long-term count is not capped
    assert len(state.events["te"]) == 5


def test_late_event_is_processed_at_the_users_last_time() -> None:
    state, _ = step_batch(KernelState(), pd.DataFrame([txn(0), txn(30)]))
    _, f = step_batch(state, pd.DataFrame([txn(25, transaction_id="late")]))
    assert f["seconds_since_prev"].iloc[0] == 0.0
    assert f["count_10m"].iloc[0] == 1


def test_eviction_bounds_the_state() -> None:
    rows = [txn(0, user_id=f"u{i}") for i in range(10)] + [txn(60 * 24 * 9, user_id="u0")]
    state, _ = step_batch(KernelState(), pd.DataFrame(rows))
    assert len(state) == 10
    removed = state.evict(T0 + timedelta(days=9), ttl_s=8 * 86_400)
    assert removed == 9
    assert len(state) == 1
    assert state.user_state("u0") is not None
    assert all(len(p["u"]) <= 4 for p in state.pairs.values())


def test_state_round_trips_through_bytes_and_refuses_garbage() -> None:
    state, _ = step_batch(KernelState(KernelConfig(max_events=7)), pd.DataFrame([txn(0)]))
    blob = state.to_bytes()
    back = KernelState.from_bytes(blob)
    assert back.config == state.config
    assert back.user_state("alice") == state.user_state("alice")
    for bad in (b"", b"pickle", blob[:-10], blob[:8] + b"\xff" * 20):
        with pytest.raises(ValueError):
            KernelState.from_bytes(bad)


def test_step_reference_matches_batch_for_one_transaction() -> None:
    _, feats = step(None, txn(0))
    assert list(feats) == FEATURE_NAMES
    assert feats == features_of([txn(0)]).iloc[0].to_dict()


def test_arrow_backed_columns_give_the_same_features() -> None:
    """What Spark hands a pandas UDF (Arrow strings, microsecond timestamps, nullable floats)."""
    import pyarrow as pa

    rows = [txn(0), txn(1, location=None, lat=None, lon=None, channel=None), txn(2, amount=3.5)]
    plain = pd.DataFrame(rows)
    table = pa.Table.from_pandas(plain, preserve_index=False).cast(
        pa.schema(
            [
                pa.field(f.name, pa.timestamp("us", tz="UTC")) if f.name == "timestamp" else f
                for f in pa.Table.from_pandas(plain, preserve_index=False).schema
            ]
        )
    )
    arrow = table.to_pandas(types_mapper=pd.ArrowDtype)
    pd.testing.assert_frame_equal(build_features(arrow), build_features(plain))


def test_missing_required_column_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="merchant_id"):
        build_features(pd.DataFrame([txn(0)]).drop(columns=["merchant_id"]))


def test_empty_batch() -> None:
    state, f = step_batch(KernelState(), pd.DataFrame([txn(0)]).iloc[:0])
    assert len(f) == 0 and list(f.columns) == FEATURE_NAMES and len(state) == 0


# -- merchant risk ------------------------------------------------------------------------------
def _labelled(days: int = 40) -> pd.DataFrame:
    """Merchant m1 turns bad on day 10 (every 2nd transaction is fraud); m2 stays clean."""
    rows = []
    for d in range(days):
        for h in range(4):
            ts = T0 + timedelta(days=d, hours=h)
            rows.append({"merchant_id": "m1", "timestamp": ts, "label": int(d >= 10 and h % 2)})
            rows.append({"merchant_id": "m2", "timestamp": ts, "label": 0})
    return pd.DataFrame(rows)


def test_merchant_risk_uses_only_matured_labels() -> None:
    table = point_in_time(_labelled(), label_delay_s=7 * 86_400)
    at = pd.Series([T0 + timedelta(days=d) for d in (12, 17, 18, 30)])
    risk = table.lookup(["m1"] * 4, at)
    # Day 12 sees days <= 5 only: no fraud yet. Day 18 sees days 10..11 (7-day window ending
    # at day 11): 8 transactions, half fraud.
    assert risk["merchant_fraud_rate_7d"].tolist()[0] == 0.0
    assert risk["merchant_fraud_rate_7d"].tolist()[1] == 0.0
    assert risk["merchant_fraud_rate_7d"].iloc[2] == pytest.approx(0.5 * 4 / 28)
    assert risk["merchant_volume_7d"].iloc[3] == 28
    assert risk["merchant_fraud_rate_7d"].iloc[3] == pytest.approx(0.5)
    clean = table.lookup(["m2", "unknown"], at.iloc[:2])
    assert clean.to_numpy().tolist()[1] == [0.0] * 4


def test_merchant_risk_snapshot_equals_point_in_time_lookup() -> None:
    history = _labelled()
    full = point_in_time(history, label_delay_s=86_400)
    as_of = T0 + timedelta(days=20, minutes=30)
    snap = MerchantRiskTable.from_labelled(
        history["merchant_id"].to_numpy(dtype=object),
        history["timestamp"].map(lambda t: int(t.timestamp() * 1000)).to_numpy(),
        history["label"].to_numpy(),
        label_delay_s=86_400,
        as_of=as_of,
    )
    at = pd.Series([as_of + timedelta(minutes=5)] * 2)
    pd.testing.assert_frame_equal(snap.lookup(["m1", "m2"], at), full.lookup(["m1", "m2"], at))
    # Later lookups never see past the snapshot: they keep the as_of values.
    later = pd.Series([as_of + timedelta(days=5)] * 2)
    pd.testing.assert_frame_equal(snap.lookup(["m1", "m2"], later), snap.lookup(["m1", "m2"], at))


def test_merchant_risk_table_round_trips_through_bytes() -> None:
    table = point_in_time(_labelled(), label_delay_s=7 * 86_400)
    back = MerchantRiskTable.from_bytes(table.to_bytes())
    at = pd.Series([T0 + timedelta(days=d) for d in (12, 18, 30)])
    pd.testing.assert_frame_equal(back.lookup(["m1"] * 3, at), table.lookup(["m1"] * 3, at))
    with pytest.raises(ValueError):
        MerchantRiskTable.from_bytes(b"not a table")


def test_features_package_imports_neither_spark_nor_textual() -> None:
    code = (
        "import sys, json, rtfd.features.offline, rtfd.features.merchant_risk;"
        "print(json.dumps([m for m in ('pyspark', 'textual') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_state_blob_is_at_least_five_times_smaller_than_plain_columns() -> None:
    """What Spark's state store moves per bucket on a cluster: int32 where values fit, times
    back from the user's last event, zstd (the plain form was int64 Arrow columns)."""
    import io

    import numpy as np
    import pyarrow as pa

    from rtfd.features.batch import step_batch
    from rtfd.features.state import KernelState
    from rtfd.generator.history import simulate_history

    history = simulate_history(3, users=3_000, merchants=500, seed=5, time_scale=600)
    state, _ = step_batch(KernelState(), history)

    def plain(s: KernelState) -> int:
        tables = [
            pa.table({k: pa.array(v) for k, v in s.users.items() if k != "uid"}),
            pa.table({k: pa.array(v, pa.int64()) for k, v in s.events.items()}),
            *(
                pa.table({k: pa.array(v, pa.int64()) for k, v in p.items()})
                for p in s.pairs.values()
            ),
        ]
        size = sum(len(u) for u in s.users["uid"]) + sum(
            len(str(w)) for v in s.vocab.values() for w in v
        )
        for t in tables:
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, t.schema) as w:
                w.write_table(t)
            size += len(sink.getvalue())
        return size

    blob = state.to_bytes()
    assert plain(state) >= 5 * len(blob), (plain(state), len(blob))
    back = KernelState.from_bytes(blob)
    for k in state.events:
        assert np.array_equal(back.events[k], state.events[k])
    for kind, p in state.pairs.items():
        for k in p:
            assert np.array_equal(back.pairs[kind][k], p[k])
