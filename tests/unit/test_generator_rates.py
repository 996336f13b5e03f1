"""The live rate sets how many cards are active, never how often a card pays (issue: the
simulator's rate scaled each card's pace, so features and alerts changed with the rate)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rtfd.config import Settings, load_settings
from rtfd.errors import ConfigError
from rtfd.generator.behaviour import DAY_S
from rtfd.generator.history import simulate_history
from rtfd.generator.live import (
    LiveGenerator,
    card_tx_per_s,
    cards_for_rate,
    live_sample,
    max_rate,
)
from rtfd.generator.population import World
from rtfd.schemas import Topics

pytestmark = pytest.mark.unit

START = pd.Timestamp("2026-03-02 08:00", tz="UTC").timestamp()


def per_card_per_sim_day(frame: pd.DataFrame, settings: Settings, seconds: float) -> float:
    """Transactions per active card per simulated day."""
    sim_days = seconds * settings.generator_time_scale / DAY_S
    return len(frame) / frame.attrs["cards"] / sim_days


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_cards_follow_the_rate_at_the_time_lapse() -> None:
    s = load_settings({})
    assert s.generator_time_scale == 600.0
    # ~2.9 transactions per card per simulated day, 600 times faster: ~0.02 tx/s per card
    assert card_tx_per_s(s) == pytest.approx(0.02, rel=0.01)
    assert cards_for_rate(s, 200) == pytest.approx(10_000, rel=0.01)
    assert cards_for_rate(s, 10_000) == pytest.approx(50 * cards_for_rate(s, 200), rel=1e-3)
    slower = load_settings({"generator_time_scale": 300})
    assert cards_for_rate(slower, 1_000) == pytest.approx(2 * cards_for_rate(s, 1_000), rel=1e-3)


def test_a_rate_needing_more_cards_than_allowed_says_what_to_change() -> None:
    s = load_settings({"generator_max_cards": 1_000})
    assert max_rate(s) == pytest.approx(1_000 * card_tx_per_s(s))
    with pytest.raises(ConfigError, match="generator_max_cards") as e:
        cards_for_rate(s, 10_000)
    assert "lower the rate" in e.value.message


def test_the_first_cards_of_a_world_are_the_same_at_any_size() -> None:
    small = World(5, 300).population(5_000)
    large = World(5, 300).population(12_345)
    for name in ("user_ids", "home", "rate", "usual", "usual_cum", "trip_rate"):
        np.testing.assert_array_equal(getattr(small, name), getattr(large, name)[:5_000])
    np.testing.assert_array_equal(small.merchant_ids, large.merchant_ids)
    assert len(set(large.user_ids)) == 12_345


def test_a_card_pays_as_often_at_any_rate() -> None:
    """Per-card transactions per simulated day and the gap between a card's transactions are
    the same at 100 and 1,000 tx/s (ten times the cards at the higher rate)."""
    s = load_settings({"generator_seed": 3})
    seconds = 90.0
    slow = live_sample(s, 100, seconds, start=START)
    fast = live_sample(s, 1_000, seconds, start=START)
    assert fast.attrs["cards"] == pytest.approx(10 * slow.attrs["cards"], rel=1e-3)
    a, b = per_card_per_sim_day(slow, s, seconds), per_card_per_sim_day(fast, s, seconds)
    assert b == pytest.approx(a, rel=0.06)
    assert a == pytest.approx(2.9, rel=0.25)

    def gaps(frame: pd.DataFrame) -> np.ndarray:
        t = frame.sort_values(["user_id", "timestamp"])
        d = t.groupby("user_id")["timestamp"].diff().dt.total_seconds().dropna()
        return d.to_numpy()

    g_slow, g_fast = gaps(slow), gaps(fast)
    assert np.median(g_fast) == pytest.approx(np.median(g_slow), rel=0.15)
    # The old generator (fixed cards, faster pace) gave gaps ten times shorter at 10x the rate.
    assert stats.ks_2samp(g_slow, g_fast).statistic < 0.08


def test_live_cards_behave_like_a_history_with_the_same_time_lapse() -> None:
    """The live generator and the offline history (what the bootstrap model learns from) draw
    the same cards: per-card pace, amounts, fraud share and gaps agree."""
    s = load_settings({"generator_seed": 11})
    seconds = 240.0  # 1.7 simulated days at the default time-lapse
    live = live_sample(s, 100, seconds, start=START)
    history = simulate_history(
        seconds * s.generator_time_scale / DAY_S,
        seed=11,
        users=live.attrs["cards"],
        merchants=s.generator_merchants,
        start=pd.Timestamp(START, unit="s", tz="UTC").to_pydatetime(),
        time_scale=s.generator_time_scale,
    )
    assert len(live) == pytest.approx(len(history), rel=0.1)
    cards = set(World(11, s.generator_merchants).population(live.attrs["cards"]).user_ids)
    assert set(live["user_id"]) <= cards and set(history["user_id"]) <= cards
    assert stats.ks_2samp(live["amount"], history["amount"]).statistic < 0.03
    assert live["label"].mean() == pytest.approx(history["label"].mean(), rel=0.35)

    def per_card(frame: pd.DataFrame) -> pd.Series:
        return frame.groupby("user_id").size()

    assert per_card(live).mean() == pytest.approx(per_card(history).mean(), rel=0.1)

    def log_gaps(frame: pd.DataFrame) -> np.ndarray:
        t = frame.sort_values(["user_id", "timestamp"])
        d = t.groupby("user_id")["timestamp"].diff().dt.total_seconds().dropna()
        return np.log10(np.maximum(d.to_numpy(), 1e-3))

    assert abs(np.median(log_gaps(live)) - np.median(log_gaps(history))) < 0.1
    assert stats.ks_2samp(log_gaps(live), log_gaps(history)).statistic < 0.1


class _Producer:
    def __init__(self, config: dict) -> None:
        self.on_delivery = config["on_delivery"]
        self.values: list[bytes] = []

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        if topic == Topics.TRANSACTIONS:
            self.values.append(value)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_raising_the_rate_brings_cards_in_and_lowering_it_lets_them_go_idle() -> None:
    s = load_settings({"generator_rate": 50, "generator_seed": 5})
    made: list[_Producer] = []

    def factory(config: dict) -> _Producer:
        made.append(_Producer(config))
        return made[-1]

    gen = LiveGenerator(s, producer_factory=factory)
    few = cards_for_rate(s, 50)
    assert gen.cards == few
    gen.start()
    try:
        wait_until(lambda: gen.stats().sent > 50, 10, "the first messages")
        gen.set_rate(2_000)
        wait_until(lambda: gen.cards == cards_for_rate(s, 2_000), 30, "the new cards")
        assert gen.rate == 2_000 and gen.stats().cards_pending == 0
        mark = len(made[0].values)
        wait_until(lambda: len(made[0].values) > mark + 3_000, 30, "traffic of the new cards")
        users = {json.loads(v)["user_id"] for v in made[0].values[mark:]}
        first = set(World(5, s.generator_merchants).population(few).user_ids)
        assert len(users - first) > 0.9 * len(users)  # mostly cards that were idle before
        gen.set_rate(50)  # fewer cards at once: no wait
        assert gen.cards == few and gen.rate == 50
    finally:
        gen.stop()
