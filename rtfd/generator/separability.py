"""How well single columns of a simulated history separate fraud from legitimate transactions.

The simulator promises that fraud is learnable from behaviour, not from one column or from an
artefact of the generator. ``tests/unit/test_generator_history.py`` holds it to that, and
``scripts/simulator_columns.py`` writes the measured table into docs/simulator.md; both use
these functions, so the published figures are the tested ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rtfd.schemas import TRANSACTION


def auc(y: np.ndarray, x: np.ndarray) -> float:
    """ROC AUC of ``x`` as a score for ``y``, folded so that 0.5 means no signal either way."""
    from sklearn.metrics import roc_auc_score

    a = float(roc_auc_score(y, x))
    return max(a, 1 - a)


def target_encoded(values: pd.Series, y: np.ndarray) -> np.ndarray:
    """Each value's fraud rate learnt on the other half of the history (time split), so that
    a categorical column is scored on what it predicts out of sample."""
    codes, uniques = pd.factorize(values)
    half = len(codes) // 2
    prior = y.mean()
    out = np.empty(len(codes))
    for fit, use in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        frauds = np.bincount(codes[fit], weights=y[fit], minlength=len(uniques))
        counts = np.bincount(codes[fit], minlength=len(uniques))
        out[use] = ((frauds + 20 * prior) / (counts + 20))[codes[use]]
    return out


def column_aucs(history: pd.DataFrame) -> dict[str, float]:
    """Univariate AUC of every transaction column (numeric columns directly, text columns by
    their out-of-sample fraud rate, the timestamp as a number)."""
    y = history["label"].to_numpy()
    aucs = {}
    for col in TRANSACTION.names:
        x = history[col]
        if col == "timestamp":
            aucs[col] = auc(y, x.astype("int64").to_numpy())
        elif pd.api.types.is_numeric_dtype(x):
            aucs[col] = auc(y, x.fillna(-1).to_numpy())
        else:
            aucs[col] = auc(y, target_encoded(x, y))
    return aucs


def artefact_aucs(history: pd.DataFrame) -> dict[str, float]:
    """AUC of generator artefacts: cents, round amounts, digits of coordinates, id characters,
    the hour of day."""
    y = history["label"].to_numpy()
    cents = np.round(history["amount"].to_numpy() * 100).astype(np.int64) % 100
    digits = history["lat"].map(lambda v: len(repr(v).split(".")[-1]))
    return {
        "cents": auc(y, cents),
        "round amount": auc(y, (cents == 0).astype(int)),
        "lat digits": auc(y, digits.to_numpy()),
        "id character": auc(y, target_encoded(history["transaction_id"].str[3:5], y)),
        "hour": auc(y, target_encoded(history["timestamp"].dt.hour, y)),
    }
