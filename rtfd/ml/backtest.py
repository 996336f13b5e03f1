"""``rtfd backtest``: train on one window, skip the label delay, test on the next.

::

    |<-------- train (N days) -------->|<-- delay (D days) -->|<-- test (T days) -->|

Features come from the kernel over the whole file (so each user's history before the test window
counts, as it would in production); merchant risk is joined point in time with the same label
delay. The model is fitted on the first 75 % of the train window and its threshold chosen on the
last 25 %; transactions of the delay gap are never used for training (their labels would not be
known yet at test time). Reported on the test window: ROC AUC, average precision, precision and
recall at the threshold, card precision@100 — for each test day, cards (user_id) ranked by their
highest score that day, the share of compromised cards among the top 100, averaged over days —
and its "new cards" variant (cards caught on an earlier test day left out), the precision of the
daily alert budget, and how well calibrated the scores are (Brier score, reliability deciles).
The definitions are in :mod:`rtfd.ml.metrics` and docs/ml.md's glossary.

With ``tune``, the hyperparameters are searched first on time-ordered folds of the fitting part
(:mod:`rtfd.ml.tuning`, the backtest's delay left out between each fold's parts); the test window
is never seen by the search.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rtfd.errors import DataError
from rtfd.features.names import FEATURE_NAMES
from rtfd.progress import Progress, no_progress, scaled

if TYPE_CHECKING:
    from rtfd.ml.tuning import TuneSpec

JSON_KEYS = (
    "auc_roc",
    "average_precision",
    "card_precision_at_100",
    "card_precision_at_100_new_cards",
    "budget_precision",
    "brier",
    "precision",
    "recall",
    "threshold",
    "n_train",
    "n_test",
)


@dataclass(frozen=True)
class Windows:
    """The three consecutive windows of a backtest (UTC, start inclusive, end exclusive)."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    def to_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self.__dict__.items()}


def make_windows(
    timestamps: pd.Series,
    *,
    train_start: date | datetime | str | None,
    train_days: float,
    delay_days: float,
    test_days: float,
) -> Windows:
    """Windows from ``train_start`` (a date), or ending with the data's last day by default."""
    day = pd.Timedelta(days=1)
    if train_start is None:
        test_end = pd.Timestamp(timestamps.max()).floor("D") + day
        test_start = test_end - test_days * day
        train_end = test_start - delay_days * day
        start = train_end - train_days * day
    else:
        start = pd.Timestamp(train_start)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        train_end = start + train_days * day
        test_start = train_end + delay_days * day
        test_end = test_start + test_days * day
    if start < pd.Timestamp(timestamps.min()).floor("D"):
        raise DataError(
            f"the train window would start on {start.date()}, before the data "
            f"({pd.Timestamp(timestamps.min()).date()}): use fewer days or a later --train-start"
        )
    return Windows(start, train_end, test_start, test_end)


@dataclass
class BacktestResult:
    """The report: :data:`JSON_KEYS` in ``metrics``, the rest for people."""

    metrics: dict[str, Any]
    algo: str
    mode: str
    windows: Windows
    details: dict[str, Any] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Exactly the keys ``--json`` promises."""
        return {k: self.metrics[k] for k in JSON_KEYS}


def run_backtest(
    transactions: pd.DataFrame,
    *,
    train_start: date | datetime | str | None = None,
    train_days: float = 21,
    delay_days: float = 7,
    test_days: float = 7,
    algo: str = "xgboost",
    mode: str | None = None,
    rule: str = "f1",
    target_precision: float = 0.9,
    alert_budget: float = 5.0,
    seed: int = 42,
    tune: TuneSpec | None = None,
    plots_dir: Path | None = None,
    progress: Progress = no_progress,
) -> BacktestResult:
    """Backtest ``algo`` on a labelled transactions frame (see the module docstring).

    ``alert_budget`` (alerts per 1,000 transactions) is both the budget threshold rule's and
    the daily budget whose precision is reported."""
    from rtfd.ml.data import labelled_features
    from rtfd.ml.metrics import (
        at_threshold,
        calibration_metrics,
        card_precision_at_k,
        daily_budget_precision,
        ranking_metrics,
    )
    from rtfd.ml.train import fit_and_select, resolve_mode_algo, time_split

    started = time.monotonic()
    mode, algo = resolve_mode_algo(mode, algo, default_mode="supervised", default_algo=algo)
    if tune is not None:
        from rtfd.ml.tuning import search_space

        search_space(algo)  # an algorithm --tune cannot search is refused before any work
    w = make_windows(
        transactions["timestamp"],
        train_start=train_start,
        train_days=train_days,
        delay_days=delay_days,
        test_days=test_days,
    )
    progress(f"computing features of {len(transactions):,} transactions", 0.0)
    feats = labelled_features(transactions, label_delay_s=delay_days * 86_400.0)
    ts = feats["timestamp"]
    train = feats[(ts >= w.train_start) & (ts < w.train_end)]
    test = feats[(ts >= w.test_start) & (ts < w.test_end)]
    if len(train) == 0 or len(test) == 0:
        raise DataError(
            f"empty window: {len(train):,} transactions to train on ({w.train_start.date()} to "
            f"{w.train_end.date()}), {len(test):,} to test on ({w.test_start.date()} to "
            f"{w.test_end.date()})"
        )
    fit_part, val_part = time_split(train)
    tuned = None
    fit_from = 0.25
    if tune is not None:
        from rtfd.ml.tuning import tune as search

        fit_from = 0.7
        tuned = search(
            fit_part,
            algo=algo,
            label_delay_s=delay_days * 86_400.0,
            spec=tune,
            progress=scaled(progress, 0.25, fit_from),
        )
    progress(f"training {algo} on {len(fit_part):,} transactions", fit_from)
    fitted = fit_and_select(
        fit_part,
        val_part,
        mode=mode,
        algo=algo,
        rule=rule,
        target_precision=target_precision,
        alert_budget=alert_budget,
        seed=seed,
        params=tuned.best_params if tuned is not None else None,
        progress=scaled(progress, fit_from, 0.85),
    )
    progress(f"scoring the test window ({len(test):,} transactions)", 0.9)
    raw = fitted.model.raw(fitted.preprocessor.transform(test[FEATURE_NAMES].to_numpy()))
    scores = fitted.score_map.apply(raw)
    y = test["label"].to_numpy()
    thr = fitted.choice.threshold
    at = at_threshold(y, scores, thr)
    cards = test["user_id"].to_numpy()
    budget = daily_budget_precision(test["timestamp"], scores, y, alert_budget)
    calibrated = calibration_metrics(y, scores)
    metrics: dict[str, Any] = {
        **ranking_metrics(y, scores),
        "card_precision_at_100": card_precision_at_k(test["timestamp"], cards, scores, y),
        "card_precision_at_100_new_cards": card_precision_at_k(
            test["timestamp"], cards, scores, y, new_cards_only=True
        ),
        "budget_precision": budget["precision"],
        "brier": calibrated["brier"],
        "precision": at["precision"],
        "recall": at["recall"],
        "threshold": thr,
        "n_train": len(train),
        "n_test": len(test),
    }
    details: dict[str, Any] = {
        "fraud_rate_test": float(y.mean()),
        "test_positives": int(y.sum()),
        "train_positives": int(train["label"].sum()),
        "f1": at["f1"],
        "alerts_per_1000": at["alerts_per_1000"],
        "threshold_rule": fitted.choice.rule,
        "alert_budget_per_1000": alert_budget,
        "budget_alerts_per_day": budget["alerts_per_day"],
        "budget_recall": budget["recall"],
        "calibration": {
            **fitted.calibration_report,
            "expected_precision_validation": fitted.metrics["expected_precision"],
            "test": calibrated,
            "test_uncalibrated": calibration_metrics(y, fitted.score_map.normalise(raw)),
        },
        "params": fitted.params,
        "seconds": round(time.monotonic() - started, 1),
    }
    if tuned is not None:
        details["tuning"] = tuned.to_dict()
    if "fraud_type" in transactions.columns:
        kinds = transactions.loc[test.index, "fraud_type"]
        details["recall_by_fraud_type"] = {
            str(k): float((scores[(kinds == k).to_numpy()] >= thr).mean())
            for k in sorted(kinds.dropna().unique())
        }
    result = BacktestResult(metrics, algo, mode, w, details)
    if plots_dir is not None:
        progress("plotting", 0.97)
        result.plots = save_plots(
            y, scores, thr, plots_dir, algo=algo, ap=metrics["average_precision"]
        )
    progress("backtest done", 1.0)
    return result


def save_plots(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    out_dir: Path,
    *,
    algo: str,
    ap: float | None,
) -> list[Path]:
    """The PR curve and the score distributions, as PNGs in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    y = np.asarray(labels) > 0

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    if y.any() and not y.all():
        precision, recall, _ = precision_recall_curve(y, scores)
        ax.plot(recall, precision, lw=1.5, label=f"{algo} (AP {ap:.3f})" if ap else algo)
        flagged = scores >= threshold
        p_at = (y & flagged).sum() / max(flagged.sum(), 1)
        r_at = (y & flagged).sum() / y.sum()
        ax.scatter([r_at], [p_at], color="crimson", zorder=3, label=f"threshold {threshold:.3f}")
        ax.axhline(y.mean(), color="grey", ls=":", lw=1, label=f"fraud rate {y.mean():.2%}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"Precision-recall on the test window ({algo})")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    path = out_dir / f"backtest_{algo}_pr.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 4.8), dpi=110)
    bins = [i / 50 for i in range(51)]
    ax.hist(scores[~y], bins=bins, alpha=0.6, label=f"legitimate ({(~y).sum():,})", density=True)
    ax.hist(scores[y], bins=bins, alpha=0.6, label=f"fraud ({y.sum():,})", density=True)
    ax.axvline(threshold, color="crimson", ls="--", lw=1, label="threshold")
    ax.set(xlabel="fraud score", ylabel="density (log)", yscale="log")
    ax.set_title(f"Score distribution on the test window ({algo})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    path = out_dir / f"backtest_{algo}_scores.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
    return paths


def write_json(result: BacktestResult, path: Path) -> None:
    """Write exactly :data:`JSON_KEYS` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
