"""Evaluation metrics, always on a time-ordered holdout.

The daily ones follow Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud
Detection – Practical Handbook* (chapter 4, "Precision top-k metrics"): investigators check a
fixed number of alerts a day, so what matters is the precision of each day's top of the ranking.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """ROC AUC and average precision; None when the labels have a single class."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        return {"auc_roc": None, "average_precision": None}
    return {
        "auc_roc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
    }


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and alerts per 1,000 of flagging ``score >= threshold``."""
    y = np.asarray(labels) > 0
    flagged = np.asarray(scores) >= threshold
    tp = float((y & flagged).sum())
    precision = tp / flagged.sum() if flagged.any() else 0.0
    recall = tp / y.sum() if y.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "alerts_per_1000": float(1000.0 * flagged.mean()) if len(flagged) else 0.0,
    }


def _days(timestamps: pd.Series) -> np.ndarray:
    return pd.Series(pd.to_datetime(timestamps, utc=True)).dt.floor("D").to_numpy()


def card_precision_at_k(
    timestamps: pd.Series,
    cards: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    k: int = 100,
    *,
    new_cards_only: bool = False,
) -> float | None:
    """Card precision@k: for each day, rank cards (users) by their highest score that day and
    take the share of compromised cards (at least one fraud that day) among the top k; the mean
    over days. Days count k in the denominator even when fewer cards were active.

    ``new_cards_only`` is the handbook's variant: a card found compromised in an earlier day's
    top k is left out of every later day's ranking (it would have been blocked), so a card that
    keeps scoring high after it was caught is not counted again.
    """
    frame = pd.DataFrame(
        {
            "day": _days(timestamps),
            "card": np.asarray(cards),
            "score": scores,
            "fraud": np.asarray(labels) > 0,
        }
    )
    per_card = frame.groupby(["day", "card"], sort=False).agg(
        score=("score", "max"), fraud=("fraud", "max")
    )
    if per_card.empty:
        return None
    if not new_cards_only:
        top = per_card.sort_values("score", ascending=False, kind="stable")
        top = top.groupby(level="day").head(k)
        per_day = top.groupby(level="day")["fraud"].sum() / k
        return float(per_day.mean())
    detected: set[Any] = set()
    precisions = []
    for _day, day_cards in per_card.groupby(level="day", sort=True):
        cards_today = day_cards.index.get_level_values("card")
        ranked = day_cards[~cards_today.isin(list(detected))]
        top = ranked.sort_values("score", ascending=False, kind="stable").head(k)
        caught = top.index.get_level_values("card")[top["fraud"].to_numpy()]
        precisions.append(len(caught) / k)
        detected.update(caught)
    return float(np.mean(precisions))


def daily_budget_precision(
    timestamps: pd.Series, scores: np.ndarray, labels: np.ndarray, alert_budget: float
) -> dict[str, float | None]:
    """The precision of a daily alert budget: each day, the ``alert_budget`` per 1,000 of that
    day's transactions with the highest scores (B = floor(budget x transactions / 1,000)), the
    share of frauds among them, averaged over the days with B >= 1. Also the mean B and the
    share of all frauds those alerts catch (recall within the budget)."""
    frame = pd.DataFrame(
        {"day": _days(timestamps), "score": scores, "fraud": np.asarray(labels) > 0}
    )
    precisions, alerts, caught = [], [], 0
    for _day, part in frame.groupby("day", sort=True):
        budget = math.floor(alert_budget * len(part) / 1000.0)
        if budget < 1:
            continue
        top = part.sort_values("score", ascending=False, kind="stable").head(budget)
        hits = int(top["fraud"].sum())
        precisions.append(hits / budget)
        alerts.append(budget)
        caught += hits
    frauds = int(frame["fraud"].sum())
    return {
        "precision": float(np.mean(precisions)) if precisions else None,
        "alerts_per_day": float(np.mean(alerts)) if alerts else None,
        "recall": caught / frauds if frauds else None,
    }


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability table: rows whose calibrated score falls in it."""

    rows: int
    mean_predicted: float
    observed_rate: float
    low: float
    high: float


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[ReliabilityBin]:
    """Mean predicted probability against the observed fraud rate, in ``bins`` equal-count bins
    of the predicted probability (deciles by default), lowest first."""
    order = np.argsort(np.asarray(probs), kind="stable")
    p = np.asarray(probs, dtype=np.float64)[order]
    y = (np.asarray(labels) > 0)[order]
    out = []
    for part in np.array_split(np.arange(len(p)), bins):
        if len(part) == 0:
            continue
        out.append(
            ReliabilityBin(
                rows=len(part),
                mean_predicted=float(p[part].mean()),
                observed_rate=float(y[part].mean()),
                low=float(p[part[0]]),
                high=float(p[part[-1]]),
            )
        )
    return out


def calibration_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Brier score, log loss, expected calibration error (deciles, weighted by rows) and the
    reliability deciles of probabilities ``probs``."""
    y = (np.asarray(labels) > 0).astype(np.float64)
    p = np.asarray(probs, dtype=np.float64)
    eps = 1e-15
    q = np.clip(p, eps, 1.0 - eps)
    table = reliability(y, p)
    ece = sum(b.rows * abs(b.mean_predicted - b.observed_rate) for b in table) / max(len(p), 1)
    return {
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q))),
        "ece": float(ece),
        "mean_predicted": float(p.mean()),
        "observed_rate": float(y.mean()),
        "deciles": [asdict(b) for b in table],
    }


def summary(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    *,
    timestamps: pd.Series | None = None,
    cards: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every metric of a scored holdout, for metrics.json and backtest reports."""
    out: dict[str, Any] = dict(ranking_metrics(labels, scores))
    out.update(at_threshold(labels, scores, threshold))
    out["n"] = len(scores)
    out["positives"] = int((np.asarray(labels) > 0).sum())
    if timestamps is not None and cards is not None:
        out["card_precision_at_100"] = card_precision_at_k(timestamps, cards, scores, labels)
    return out
