"""Choosing the alert threshold on a validation set, by a documented rule.

Every rule flags the transactions with ``score >= threshold``:

* ``f1`` (default): the threshold with the best F1 on validation (ties: the higher threshold);
* ``precision``: the lowest threshold whose precision reaches the target — the most recall the
  target allows; if no threshold reaches it, the best-F1 threshold (and the choice says so);
* ``budget``: at most ``alert_budget`` alerts per 1,000 transactions — the lowest threshold that
  flags no more than that share of validation transactions. Needs no labels, so it is also the
  rule of an unsupervised model trained without any.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RULES = ("f1", "precision", "budget")


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and what it gives on the validation set."""

    threshold: float
    rule: str
    precision: float
    recall: float
    f1: float
    alerts_per_1000: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per distinct score (descending): threshold, flagged count, true positives."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    # The last row of each run of equal scores: everything >= that score is flagged.
    last = np.r_[s[1:] != s[:-1], True]
    k = np.flatnonzero(last) + 1
    return s[last], k, tp[last]


def choose_threshold(
    scores: np.ndarray,
    labels: np.ndarray | None,
    rule: str = "f1",
    *,
    target_precision: float = 0.9,
    alert_budget: float = 5.0,
) -> ThresholdChoice:
    """Pick a threshold on validation ``scores`` (higher = more suspicious) and ``labels``."""
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}")
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        raise ValueError("no validation scores to choose a threshold on")
    y = np.zeros(n) if labels is None else np.asarray(labels, dtype=np.float64)
    positives = float(y.sum())
    thr, k, tp = _curve(scores, y)
    precision = tp / k
    recall = tp / positives if positives else np.zeros_like(tp)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    note = ""
    if rule != "budget" and positives == 0:
        rule, note = "budget", "no positive label in validation: alert budget used"
    if rule == "precision":
        ok = np.flatnonzero(precision >= target_precision)
        if len(ok):
            i = int(ok[-1])
        else:
            i = int(np.argmax(f1))
            note = f"precision {target_precision:.0%} is out of reach: best F1 used"
    elif rule == "f1":
        i = int(np.argmax(f1))  # first maximum = highest threshold among ties
    if rule == "budget":
        allowed = math.floor(alert_budget / 1000.0 * n)
        ok = np.flatnonzero(k <= allowed)
        if len(ok):
            i = int(ok[-1])
        else:
            # Not even the top score fits the budget: a threshold above every score.
            top = float(thr[0])
            return ThresholdChoice(
                float(np.nextafter(top, np.inf)), "budget", 0.0, 0.0, 0.0, 0.0, note
            )
    return ThresholdChoice(
        threshold=float(thr[i]),
        rule=rule,
        precision=float(precision[i]),
        recall=float(recall[i]),
        f1=float(f1[i]),
        alerts_per_1000=float(1000.0 * k[i] / n),
        note=note,
    )


@dataclass(frozen=True)
class Expected:
    """What a threshold promises on live traffic, read off the validation window.

    ``precision`` is the mean calibrated fraud probability of the validation rows the threshold
    flags — the share of its alerts expected to be fraud (None when the scores are not
    calibrated). ``alerts_per_day`` scales the validation window's share of flagged rows to a
    day of live traffic at ``rate_per_s`` transactions a second, around the clock, assuming the
    live traffic's mix is the validation window's (None when no rate is known).
    """

    threshold: float
    precision: float | None
    alerts_per_1000: float
    alerts_per_day: float | None
    rate_per_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_at(
    scores: np.ndarray,
    threshold: float,
    *,
    calibrated: bool,
    rate_per_s: float | None = None,
) -> Expected:
    """:class:`Expected` of flagging ``scores >= threshold`` (validation scores)."""
    s = np.asarray(scores, dtype=np.float64)
    flagged = s >= threshold
    share = float(flagged.mean()) if len(s) else 0.0
    precision = float(s[flagged].mean()) if calibrated and flagged.any() else None
    per_day = share * rate_per_s * 86_400.0 if rate_per_s is not None else None
    return Expected(threshold, precision, 1000.0 * share, per_day, rate_per_s)
