"""The stream's user store: the same features as the kernel, bit for bit, with the work of a
batch following the batch (not the users in state)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtfd.features.arithmetic import KernelConfig
from rtfd.features.batch import step_batch
from rtfd.features.intmap import Int64Index
from rtfd.features.state import KernelState
from rtfd.features.store import UserStore
from tests.unit.test_features_parity import CONFIGS, histories

pytestmark = pytest.mark.unit


def _slices(history: pd.DataFrame, cuts: list[int]) -> list[pd.DataFrame]:
    bounds = sorted({0, len(history), *[c % (len(history) + 1) for c in cuts]})
    return [history.iloc[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _assert_same_state(a: KernelState, b: KernelState) -> None:
    """Two kernel states hold the same users, events and live (user, key) histories."""
    ua = pd.DataFrame({k: v for k, v in a.users.items()}).set_index("uid").sort_index()
    ub = pd.DataFrame({k: v for k, v in b.users.items()}).set_index("uid").sort_index()
    pd.testing.assert_frame_equal(ua, ub, check_exact=True)

    def events(s: KernelState) -> pd.DataFrame:
        uid = s.users["uid"][s.events["u"]]
        frame = pd.DataFrame(
            {"uid": uid, "te": s.events["te"], "c": s.events["c"], "f": s.events["f"]}
        )
        return frame.sort_values(["uid", "te", "c", "f"], kind="stable").reset_index(drop=True)

    pd.testing.assert_frame_equal(events(a), events(b), check_exact=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6),
    config=st.sampled_from(CONFIGS),
)
def test_the_store_gives_the_kernels_features_however_the_stream_slices(
    history: pd.DataFrame, cuts: list[int], config: KernelConfig
) -> None:
    store, state = UserStore(config, capacity=2), KernelState(config)
    for batch in _slices(history, cuts):
        expected_state, expected = step_batch(state, batch)
        got = store.step(batch)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        state = expected_state
    _assert_same_state(store.kernel_state(), state)
    # ... and after a round trip through bytes, the next batch still agrees.
    again = UserStore.from_bytes(store.to_bytes())
    tail = history.assign(
        transaction_id=[f"{t}-next" for t in history["transaction_id"]],
        timestamp=history["timestamp"] + pd.Timedelta(hours=1),
    )
    pd.testing.assert_frame_equal(again.step(tail), step_batch(state, tail)[1], check_exact=True)


def test_a_batch_gathers_only_its_own_users_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel runs on the state of the batch's users only, whatever the users in store: the
    work and the bytes of a batch follow its rows (just bench measures the time)."""
    import rtfd.features.store as store_module

    rng = np.random.default_rng(3)
    users = np.array([f"u{i}" for i in range(5_000)], dtype=object)

    def batch(who: np.ndarray, t0: int, n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "transaction_id": [f"t{t0}-{i}" for i in range(n)],
                "user_id": rng.choice(who, n),
                "merchant_id": rng.choice([f"m{i}" for i in range(200)], n),
                "amount": rng.uniform(1, 100, n).round(2),
                "location": "Paris",
                "timestamp": pd.to_datetime(t0 + np.arange(n), unit="ms", utc=True),
            }
        )

    store = UserStore()
    for k in range(10):
        store.step(batch(users, 1_700_000_000_000 + k * 100_000, 20_000))
    assert len(store) == 5_000 and store.events > 150_000
    seen: list[KernelState] = []
    real = store_module.step_batch

    def spy(state: KernelState, *args: object, **kw: object) -> object:
        seen.append(state)
        return real(state, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "step_batch", spy)
    few = batch(users[:30], 1_700_100_000_000, 100)
    store.step(few)
    sub = seen[-1]
    assert set(sub.users["uid"]) == set(few["user_id"])
    assert len(sub.events["te"]) <= 30 * sub.config.max_events
    for kind, pairs in sub.pairs.items():
        assert len(pairs["u"]) <= len(few)  # only the (user, key) histories the rows look up
        assert len(sub.vocab[kind]) <= len(few)


def test_eviction_forgets_idle_users_and_their_histories() -> None:
    t = pd.Timestamp("2024-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "transaction_id": ["a", "b", "c"],
            "user_id": ["old", "new", "new"],
            "merchant_id": ["m1", "m1", "m2"],
            "amount": [10.0, 20.0, 30.0],
            "location": "Paris",
            "timestamp": [t, t + pd.Timedelta(days=9), t + pd.Timedelta(days=9, hours=1)],
        }
    )
    store = UserStore()
    store.step(frame)
    assert len(store) == 2 and store.pairs > 0
    pairs_before = store.pairs
    gone = store.evict(int((t + pd.Timedelta(days=9, hours=2)).value // 1_000_000), 8 * 86_400)
    assert gone == 1 and len(store) == 1 and store.pairs < pairs_before
    # A user that comes back starts afresh, exactly as the kernel would (its history expired).
    back = frame.iloc[[0]].assign(transaction_id="d", timestamp=t + pd.Timedelta(days=10))
    state, _ = step_batch(KernelState(), frame)
    pd.testing.assert_frame_equal(store.step(back), step_batch(state, back)[1], check_exact=True)


def test_a_copy_is_independent_and_garbage_is_refused() -> None:
    t = pd.Timestamp("2024-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "transaction_id": ["a", "b"],
            "user_id": ["u1", "u2"],
            "merchant_id": ["m1", "m1"],
            "amount": [10.0, 20.0],
            "timestamp": [t, t],
        }
    )
    store = UserStore()
    store.step(frame)
    snap = store.copy()
    blob = snap.to_bytes()
    store.step(frame.assign(transaction_id=["c", "d"], timestamp=t + pd.Timedelta(minutes=1)))
    assert UserStore.from_bytes(blob).to_bytes() == blob
    assert UserStore.from_bytes(snap.to_bytes()).events == 2 and store.events == 4
    for bad in (b"", b"garbage", blob[:40], blob[:-10], blob[:8] + b"\xff" * 20):
        with pytest.raises(ValueError):
            UserStore.from_bytes(bad)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(min_value=0, max_value=2**62), max_size=300), max_size=8))
def test_int64_index_behaves_like_a_dict(batches: list[list[int]]) -> None:
    index, reference = Int64Index(capacity=4), {}
    for keys in batches:
        distinct = list(dict.fromkeys(keys))
        rows, new = index.get_or_add(np.array(distinct, dtype=np.int64))
        for k, r, fresh in zip(distinct, rows.tolist(), new.tolist(), strict=True):
            assert fresh == (k not in reference)
            reference.setdefault(k, r)
            assert reference[k] == r
    probe = np.array([*reference, 2**62 + 5, 7], dtype=np.int64)
    expected = [reference.get(int(k), -1) for k in probe]
    assert index.get(probe).tolist() == expected
    keys, rows = index.items()
    assert dict(zip(keys.tolist(), rows.tolist(), strict=True)) == reference
