"""Threshold rules and metrics: what a threshold flags is what its numbers say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtfd.ml.metrics import at_threshold, card_precision_at_k, ranking_metrics
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
