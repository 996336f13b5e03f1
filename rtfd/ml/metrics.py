"""Evaluation metrics, always on a time-ordered holdout."""

from __future__ import annotations

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


def card_precision_at_k(
    timestamps: pd.Series, cards: np.ndarray, scores: np.ndarray, labels: np.ndarray, k: int = 100
) -> float | None:
    """Card precision@k: for each day, rank cards (users) by their highest score that day and
    take the share of compromised cards (at least one fraud that day) among the top k; the mean
    over days. Days count k in the denominator even when fewer cards were active."""
    days = pd.Series(pd.to_datetime(timestamps, utc=True)).dt.floor("D").to_numpy()
    frame = pd.DataFrame(
        {"day": days, "card": np.asarray(cards), "score": scores, "fraud": np.asarray(labels) > 0}
    )
    per_card = frame.groupby(["day", "card"], sort=False).agg(
        score=("score", "max"), fraud=("fraud", "max")
    )
    if per_card.empty:
        return None
    top = per_card.sort_values("score", ascending=False, kind="stable").groupby(level="day").head(k)
    per_day = top.groupby(level="day")["fraud"].sum() / k
    return float(per_day.mean())


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
