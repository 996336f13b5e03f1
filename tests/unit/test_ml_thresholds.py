"""Threshold rules and metrics: what a threshold flags is what its numbers say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtfd.ml.metrics import (
    at_threshold,
    card_precision_at_k,
    daily_budget_precision,
    ranking_metrics,
)
from rtfd.ml.thresholds import choose_threshold

pytestmark = pytest.mark.unit


def test_best_f1_threshold_is_not_off_by_one() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    labels = np.array([1, 1, 0, 1, 0, 0])
    c = choose_threshold(scores, labels, "f1")
    # Flagging >= 0.6 catches all three frauds with one false alarm: F1 = 6/7, the best.
    assert c.threshold == 0.6
    assert (c.precision, c.recall) == (0.75, 1.0)
    assert c.f1 == pytest.approx(6 / 7)


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(
        st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]), min_size=1, max_size=60
    ),
    seed=st.integers(0, 2**16),
    rule=st.sampled_from(["f1", "precision", "budget"]),
)
def test_reported_figures_match_what_the_threshold_flags(
    scores: list[float], seed: int, rule: str
) -> None:
    s = np.array(scores)
    y = (np.random.default_rng(seed).random(len(s)) < 0.3).astype(int)
    c = choose_threshold(s, y, rule, target_precision=0.6, alert_budget=200.0)
    at = at_threshold(y, s, c.threshold)
    assert c.precision == pytest.approx(at["precision"])
    assert c.recall == pytest.approx(at["recall"])
    assert c.alerts_per_1000 == pytest.approx(at["alerts_per_1000"])
    if c.rule == "f1" and y.any():
        # No other cut does better.
        best = max(at_threshold(y, s, t)["f1"] for t in np.unique(s))
        assert c.f1 == pytest.approx(best)


def test_precision_rule_takes_the_most_recall_at_the_target() -> None:
    scores = np.linspace(1.0, 0.0, 11)
    labels = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    c = choose_threshold(scores, labels, "precision", target_precision=0.8)
    assert c.precision >= 0.8
    assert c.recall == 0.8  # flagging down to the 5th (4 of 5 frauds, precision 0.8)
    unreachable = choose_threshold(scores, labels, "precision", target_precision=1.01)
    assert unreachable.rule == "precision" and "out of reach" in unreachable.note


def test_budget_rule_respects_the_alert_budget_without_labels() -> None:
    scores = np.arange(1000) / 1000.0
    c = choose_threshold(scores, None, "budget", alert_budget=5.0)
    assert (scores >= c.threshold).sum() == 5
    assert c.alerts_per_1000 == 5.0
    none = choose_threshold(scores, None, "budget", alert_budget=0.0)
    assert (scores >= none.threshold).sum() == 0


def test_no_fraud_in_validation_falls_back_to_the_budget() -> None:
    c = choose_threshold(np.linspace(0, 1, 2000), np.zeros(2000), "f1", alert_budget=1.0)
    assert c.rule == "budget" and "no positive" in c.note


def test_card_precision_at_k_ranks_cards_per_day() -> None:
    day1, day2 = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC")
    ts = pd.Series([day1, day1, day1, day1, day2, day2])
    cards = np.array(["a", "a", "b", "c", "a", "b"])
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7])
    labels = np.array([0, 1, 1, 0, 1, 0])
    # Day 1 top-2 cards: a (0.9, compromised), b (0.8, compromised) -> 1.0.
    # Day 2 top-2: b (0.7, clean), a (0.3, compromised) -> 0.5. Mean 0.75.
    assert card_precision_at_k(ts, cards, scores, labels, k=2) == 0.75
    assert card_precision_at_k(ts, cards, scores, labels, k=4) == pytest.approx((2 / 4 + 1 / 4) / 2)


def test_ranking_metrics_with_one_class_are_none() -> None:
    assert ranking_metrics(np.zeros(5), np.arange(5.0)) == {
        "auc_roc": None,
        "average_precision": None,
    }


def _three_days() -> tuple[pd.Series, np.ndarray, np.ndarray, np.ndarray]:
    """Cards a (compromised every day), c (compromised from day 2), b (never) over 3 days."""
    days = [pd.Timestamp(f"2024-01-0{d}", tz="UTC") for d in (1, 2, 3)]
    ts = pd.Series([days[0]] * 3 + [days[1]] * 3 + [days[2]] * 3)
    cards = np.array(["a", "b", "c"] * 3)
    scores = np.array([0.9, 0.8, 0.1, 0.95, 0.5, 0.6, 0.9, 0.7, 0.8])
    labels = np.array([1, 0, 0, 1, 0, 1, 1, 0, 1])
    return ts, cards, scores, labels


def test_card_precision_new_cards_leaves_out_cards_caught_on_earlier_days() -> None:
    ts, cards, scores, labels = _three_days()
    # Top 1 every day is card a, compromised: 1.0 each day.
    assert card_precision_at_k(ts, cards, scores, labels, k=1) == 1.0
    # New cards: day 1 catches a; day 2 ranks c (a left out) and catches it; day 3 has only b
    # left, clean: (1 + 1 + 0) / 3.
    new = card_precision_at_k(ts, cards, scores, labels, k=1, new_cards_only=True)
    assert new == pytest.approx(2 / 3)
    # k = 2. Day 1: a (caught), b (clean, so not left out later) -> 0.5; day 2: c, b -> 0.5;
    # day 3: b alone -> 0. The plain variant: 0.5, 1.0, 1.0.
    assert card_precision_at_k(ts, cards, scores, labels, k=2) == pytest.approx(2.5 / 3)
    new2 = card_precision_at_k(ts, cards, scores, labels, k=2, new_cards_only=True)
    assert new2 == pytest.approx(1 / 3)


def test_a_flagged_clean_card_stays_in_later_rankings() -> None:
    """Only compromised cards found in the top k leave the ranking, not every alerted card."""
    ts, cards, scores, labels = _three_days()
    labels = np.zeros_like(labels)
    assert card_precision_at_k(ts, cards, scores, labels, k=1, new_cards_only=True) == 0.0
    labels[[3, 6]] = 1  # card a compromised on days 2 and 3 only
    # Day 1: a clean (stays); day 2: a caught; day 3: a left out, c (0.8) clean.
    new = card_precision_at_k(ts, cards, scores, labels, k=1, new_cards_only=True)
    assert new == pytest.approx(1 / 3)


def test_daily_budget_precision_takes_each_days_top_alerts() -> None:
    day1, day2 = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC")
    ts = pd.Series([day1] * 1000 + [day2] * 500)
    scores = np.r_[np.linspace(1.0, 0.0, 1000), np.linspace(1.0, 0.0, 500)]
    labels = np.zeros(1500, dtype=int)
    labels[[0, 2, 4, 600]] = 1  # day 1: 3 of its top 5 (budget 5 per 1,000), one far below
    labels[[1000, 1300]] = 1  # day 2: budget floor(2.5) = 2, one of its top 2
    out = daily_budget_precision(ts, scores, labels, alert_budget=5.0)
    assert out["precision"] == pytest.approx((3 / 5 + 1 / 2) / 2)
    assert out["alerts_per_day"] == pytest.approx(3.5)
    assert out["recall"] == pytest.approx(4 / 6)
    tiny = daily_budget_precision(ts, scores, labels, alert_budget=1.0)  # day 2: B = 0
    assert tiny["precision"] == 1.0 and tiny["alerts_per_day"] == 1.0
    assert daily_budget_precision(ts, scores, labels, alert_budget=0.0)["precision"] is None
