"""Training/serving parity of the feature kernel: the reference step and the vectorised batch step
give identical features (bit for bit) on random histories, however the stream slices them."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtfd.features import FEATURE_NAMES
from rtfd.features.arithmetic import KernelConfig
from rtfd.features.batch import step_batch
from rtfd.features.merchant_risk import point_in_time
from rtfd.features.offline import build_features, fold_reference
from rtfd.features.reference import UserState, step
from rtfd.features.state import KernelState

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2024-03-01T00:00:00Z")
# Gaps chosen to land on the window and TTL boundaries as well as between them.
GAPS_MS = [0, 0, 1, 999, 60_000, 600_000, 600_001, 3_600_000, 86_400_000, 604_800_000,
           604_800_001, 8 * 86_400_000, 9 * 86_400_000]  # fmt: skip
POINTS = [(48.8566, 2.3522), (51.5074, -0.1278), (40.7128, -74.006), (None, None), (0.0, 0.0)]

CONFIGS = [KernelConfig(), KernelConfig(ttl_s=7 * 86_400.0, max_events=3)]


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> pd.DataFrame:
    n = draw(st.integers(min_value=1, max_value=max_size))
    gaps = draw(st.lists(st.sampled_from(GAPS_MS), min_size=n, max_size=n))
    users = draw(st.lists(st.sampled_from(["u0", "u1", "u2", "u3"]), min_size=n, max_size=n))
    merchants = draw(st.lists(st.sampled_from(["m0", "m1", "m2"]), min_size=n, max_size=n))
    cities = draw(st.lists(st.sampled_from(["Paris", "London", None, ""]), min_size=n, max_size=n))
    points = draw(st.lists(st.sampled_from(POINTS), min_size=n, max_size=n))
    channels = draw(
        st.lists(st.sampled_from(["pos", "online", "atm", None]), min_size=n, max_size=n)
    )
    amounts = draw(
        st.lists(
            st.one_of(
                st.integers(min_value=1, max_value=500_000).map(lambda c: c / 100),
                st.floats(min_value=0.001, max_value=2_000_000.0),
            ),
            min_size=n,
            max_size=n,
        )
    )
    ids = draw(st.permutations([f"t{i:03d}" for i in range(n)]))
    # Event times per user: a random walk, so users interleave and collide on equal times.
    ts = T0 + pd.to_timedelta(np.cumsum(gaps) % (40 * 86_400_000), unit="ms")
    return pd.DataFrame(
        {
            "transaction_id": ids,
            "user_id": users,
            "merchant_id": merchants,
            "amount": amounts,
            "currency": "EUR",
            "location": cities,
            "channel": channels,
            "lat": [p[0] for p in points],
            "lon": [p[1] for p in points],
            "timestamp": ts,
        }
    )


def _reference_in_processing_order(
    batches: list[pd.DataFrame], config: KernelConfig
) -> pd.DataFrame:
    """Fold the reference step over each batch in (user, timestamp, id) order, batch after batch."""
    states: dict[str, UserState] = {}
    out = []
    for batch in batches:
        states, feats = fold_reference(batch, config=config, states=states)
        out.append(feats)
    return pd.concat(out)


def _assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == FEATURE_NAMES
    a, b = a.sort_index(), b.sort_index()
    np.testing.assert_array_equal(a.index, b.index)
    bad = [c for c in FEATURE_NAMES if not np.array_equal(a[c].to_numpy(), b[c].to_numpy())]
    assert not bad, f"features differ: {bad}\n{a[bad]}\n{b[bad]}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), cfg=st.sampled_from(CONFIGS))
def test_offline_builder_equals_reference_step(history: pd.DataFrame, cfg: KernelConfig) -> None:
    """One batch over a whole history gives exactly the features of stepping one by one."""
    _, expected = fold_reference(history, config=cfg)
    _assert_identical(build_features(history, config=cfg), expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    cfg=st.sampled_from(CONFIGS),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=6),
    shuffle_seed=st.integers(min_value=0, max_value=2**31),
)
def test_micro_batches_equal_one_batch(
    history: pd.DataFrame, cfg: KernelConfig, cuts: list[int], shuffle_seed: int
) -> None:
    """Time-ordered micro-batches (rows shuffled inside each, state serialised between) give the
    features of the offline builder: what the stream serves is what training sees."""
    ordered = history.sort_values(["timestamp", "transaction_id"])
    bounds = sorted({0, len(ordered), *[min(c, len(ordered)) for c in cuts]})
    rng = np.random.default_rng(shuffle_seed)
    state = KernelState(cfg)
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        batch = ordered.iloc[lo:hi]
        batch = batch.iloc[rng.permutation(len(batch))]
        state, feats = step_batch(KernelState.from_bytes(state.to_bytes()), batch)
        parts.append(feats)
    _assert_identical(pd.concat(parts), build_features(history, config=cfg))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    cfg=st.sampled_from(CONFIGS),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=5),
)
def test_arbitrary_batches_equal_reference_fold(
    history: pd.DataFrame, cfg: KernelConfig, cuts: list[int]
) -> None:
    """Batches in any order (late events included) equal folding the reference step over each
    batch in (timestamp, id) order per user, and leave the same per-user state."""
    bounds = sorted({0, len(history), *[min(c, len(history)) for c in cuts]})
    batches = [history.iloc[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    state = KernelState(cfg)
    parts = []
    for batch in batches:
        state, feats = step_batch(state, batch)
        parts.append(feats)
    _assert_identical(pd.concat(parts), _reference_in_processing_order(batches, cfg))

    states: dict[str, UserState] = {}
    for batch in batches:
        states, _ = fold_reference(batch, config=cfg, states=states)
    assert len(state) == len(states)
    for uid, ref in states.items():
        got = state.user_state(uid)
        assert got is not None
        assert (got.n, got.sum_c, got.sq_hi, got.sq_lo, got.last_te) == (
            ref.n, ref.sum_c, ref.sq_hi, ref.sq_lo, ref.last_te,
        )  # fmt: skip
        assert got.events == ref.events
        assert got.pairs == ref.pairs
        np.testing.assert_array_equal([got.last_lat, got.last_lon], [ref.last_lat, ref.last_lon])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), labels=st.lists(st.booleans(), min_size=40, max_size=40))
def test_merchant_risk_parity(history: pd.DataFrame, labels: list[bool]) -> None:
    """Risk features from the point-in-time table agree between the two drivers."""
    history = history.assign(label=np.array(labels[: len(history)], dtype=np.int8))
    table = point_in_time(history, label_delay_s=86_400.0, period_s=3600.0)
    _, expected = fold_reference(history, merchant_risk=table)
    _assert_identical(build_features(history, merchant_risk=table), expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), cut=st.integers(min_value=0, max_value=40))
def test_eviction_at_the_ttl_changes_nothing(history: pd.DataFrame, cut: int) -> None:
    """Evicting users idle longer than the kernel's TTL never changes a feature."""
    ordered = history.sort_values(["timestamp", "transaction_id"])
    first, second = ordered.iloc[:cut], ordered.iloc[cut:]
    state, a = step_batch(KernelState(), first)
    if len(second):
        now = second["timestamp"].min()
        state.evict(now.to_pydatetime(), KernelState().config.ttl_s)
    _, b = step_batch(state, second)
    _assert_identical(pd.concat([a, b]), build_features(history))


def test_step_does_not_mutate_its_input() -> None:
    txn = {"timestamp": T0, "amount": 10.0, "merchant_id": "m", "location": "Paris"}
    s1, _ = step(None, txn)
    snapshot = (s1.n, list(s1.events), {k: dict(v) for k, v in s1.pairs.items()})
    step(s1, {**txn, "timestamp": T0 + pd.Timedelta(minutes=1)})
    assert (s1.n, s1.events, s1.pairs) == snapshot
