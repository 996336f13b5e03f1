"""Calibrated scores: ``fraud_score`` as the probability that a transaction is fraud.

A model ranks transactions well, but its raw number is not a probability: IsolationForest's is
an anomaly score, and a supervised model fitted on undersampled rows is corrected for the
sampling only on average. So every model version carries a :class:`ScoreMap` from the model's
raw output to ``fraud_score``, applied by ``LoadedModel.score`` (the stream needs no change):

1. **normalise** — IsolationForest's raw score is mapped onto [0, 1] by the training rows' min
   and max; every score is then clipped to [0, 1];
2. **calibrate** — a monotone map fitted on the labels of the validation window (the last 25 %
   of the training data, in time order), isotonic regression or Platt scaling (a logistic
   regression on the logit of the score), **chosen by the data**: the validation rows are cut in
   time order, the older :data:`FIT_SHARE` fit both maps and the newer rest (held out) scores
   them by the Brier score; the lower Brier score wins (the log loss is recorded too: isotonic
   regression can say 0 where a fraud later happens, which log loss punishes without limit),
   and the winner is refitted on the whole validation window.

The map keeps the ranking: Platt scaling with a positive slope is strictly increasing, and
isotonic regression, a step function that would tie scores that differed, is blended with the
score it maps, ``(1 - ε) · iso(s) + ε · s`` with ε = :data:`BLEND` (10⁻⁶, far below any
figure's precision). ROC AUC and average precision are those of the uncalibrated score.

Storage: the map is plain JSON in ``threshold.json`` under ``calibration`` — ``min``/``max``
(the normalisation), ``method`` (``isotonic`` or ``platt``), ``x``/``y`` (isotonic knots: ``x``
strictly increasing, ``y`` non-decreasing in [0, 1]) or ``a``/``b`` (Platt: ``a > 0``).
:meth:`ScoreMap.from_dict` checks every field and the registry refuses a version whose map does
not pass (a tampered map could invert the ranking or hide every alert).

Without labels, or with fewer than :data:`MIN_CLASS_ROWS` frauds or legitimate rows in either
part of the validation window, no map is fitted: the score stays the normalised one, and the
model's metrics say it is not calibrated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FIT_SHARE = 2 / 3
MIN_CLASS_ROWS = 10
BLEND = 1e-6
MAX_KNOTS = 20_000
METHODS = ("isotonic", "platt")
# Platt scaling works on the logit of the score: scores are kept this far from 0 and 1.
LOGIT_EPS = 1e-12
_FIELDS = frozenset({"min", "max", "method", "x", "y", "a", "b"})
_METHOD_FIELDS: dict[str | None, frozenset[str]] = {
    None: frozenset(),
    "isotonic": frozenset({"x", "y"}),
    "platt": frozenset({"a", "b"}),
}


def _number(doc: dict[str, Any], key: str) -> float:
    value = doc.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{key!r} must be a number")
    try:
        out = float(value)
    except OverflowError as e:
        raise ValueError(f"{key!r} must be finite") from e
    if not math.isfinite(out):
        raise ValueError(f"{key!r} must be finite")
    return out


def _numbers(doc: dict[str, Any], key: str) -> np.ndarray:
    values = doc.get(key)
    if not isinstance(values, list) or not 2 <= len(values) <= MAX_KNOTS:
        raise ValueError(f"{key!r} must list 2 to {MAX_KNOTS:,} numbers")
    return np.array([_number({key: v}, key) for v in values], dtype=np.float64)


@dataclass(frozen=True, eq=False)  # arrays: compare to_dict() instead
class Isotonic:
    """Isotonic regression as knots, interpolated linearly (clipped at the ends)."""

    x: np.ndarray
    y: np.ndarray
    method = "isotonic"

    def apply(self, s: np.ndarray) -> np.ndarray:
        return (1.0 - BLEND) * np.interp(s, self.x, self.y) + BLEND * s

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Isotonic:
        x, y = _numbers(doc, "x"), _numbers(doc, "y")
        if len(x) != len(y):
            raise ValueError("'x' and 'y' must have as many values")
        if not (np.diff(x) > 0).all():
            raise ValueError("'x' must be strictly increasing")
        if not (np.diff(y) >= 0).all():
            raise ValueError("'y' must be non-decreasing (a decreasing map inverts the ranking)")
        if y[0] < 0.0 or y[-1] > 1.0:
            raise ValueError("'y' must lie in [0, 1]")
        return cls(x, y)

    @classmethod
    def fit(cls, s: np.ndarray, y: np.ndarray) -> Isotonic:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        return cls(
            np.asarray(iso.X_thresholds_, dtype=np.float64),
            np.asarray(iso.y_thresholds_, dtype=np.float64),
        )


@dataclass(frozen=True)
class Platt:
    """Platt scaling: ``sigmoid(a · logit(s) + b)``, strictly increasing when ``a > 0``."""

    a: float
    b: float
    method = "platt"

    def apply(self, s: np.ndarray) -> np.ndarray:
        from scipy.special import expit, logit

        return np.asarray(
            expit(self.a * logit(np.clip(s, LOGIT_EPS, 1.0 - LOGIT_EPS)) + self.b),
            dtype=np.float64,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Platt:
        a, b = _number(doc, "a"), _number(doc, "b")
        if a <= 0.0:
            raise ValueError("'a' must be positive (a negative slope inverts the ranking)")
        return cls(a, b)

    @classmethod
    def fit(cls, s: np.ndarray, y: np.ndarray) -> Platt | None:
        """None when the fitted slope is not positive (the score does not rank frauds up)."""
        from scipy.special import logit
        from sklearn.linear_model import LogisticRegression

        z = logit(np.clip(s, LOGIT_EPS, 1.0 - LOGIT_EPS)).reshape(-1, 1)
        lr = LogisticRegression(C=1e4, max_iter=1000).fit(z, y)
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if not (a > 0.0 and math.isfinite(a) and math.isfinite(b)):
            return None
        return cls(a, b)


Calibrator = Isotonic | Platt


@dataclass(frozen=True)
class ScoreMap:
    """Raw model output -> ``fraud_score``: normalisation, then calibration (both optional)."""

    low: float | None = None
    high: float | None = None
    calibrator: Calibrator | None = None

    @property
    def method(self) -> str | None:
        """``isotonic``, ``platt``, or None when the score is not a calibrated probability."""
        return None if self.calibrator is None else self.calibrator.method

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """The score before calibration, in [0, 1]."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.low is not None and self.high is not None:
            lo, hi = self.low, self.high
            raw = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
        return np.clip(raw, 0.0, 1.0)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """``fraud_score`` of raw model outputs (float64, in [0, 1])."""
        s = self.normalise(raw)
        if self.calibrator is None:
            return s
        return np.clip(self.calibrator.apply(s), 0.0, 1.0)

    def with_calibrator(self, calibrator: Calibrator | None) -> ScoreMap:
        return ScoreMap(self.low, self.high, calibrator)

    def to_dict(self) -> dict[str, Any] | None:
        """The JSON stored in threshold.json's ``calibration`` (None: nothing to apply)."""
        doc: dict[str, Any] = {}
        if self.low is not None and self.high is not None:
            doc.update(min=self.low, max=self.high)
        if self.calibrator is not None:
            doc.update(self.calibrator.to_dict())
        return doc or None

    @classmethod
    def from_dict(cls, doc: Any) -> ScoreMap:
        """The map stored by :meth:`to_dict`; ValueError (one line) for anything else."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise ValueError("must be a JSON object")
        unknown = sorted(set(doc) - _FIELDS)
        if unknown:
            raise ValueError(f"has an unknown field {unknown[0][:40]!r}")
        if ("min" in doc) != ("max" in doc):
            raise ValueError("must hold a finite min and max, or neither")
        low = high = None
        if "min" in doc:
            low, high = _number(doc, "min"), _number(doc, "max")
            if low > high:
                raise ValueError("'min' above 'max' would invert the ranking")
        method = doc.get("method")
        if method is not None and method not in METHODS:
            raise ValueError(f"'method' must be isotonic or platt, not {str(method)[:40]!r}")
        stray = sorted(set(doc) - {"min", "max", "method"} - _METHOD_FIELDS[method])
        if stray:
            raise ValueError(f"field {stray[0]!r} does not belong to method {method}")
        calibrator: Calibrator | None = None
        if method == "isotonic":
            calibrator = Isotonic.from_dict(doc)
        elif method == "platt":
            calibrator = Platt.from_dict(doc)
        return cls(low, high, calibrator)


@dataclass(frozen=True)
class CalibrationFit:
    """The fitted calibrator (None when none could be fitted) and how it was chosen."""

    calibrator: Calibrator | None
    report: dict[str, Any]


def _losses(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    q = np.clip(p, 1e-15, 1.0 - 1e-15)
    return {
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q))),
    }


def _fit(method: str, s: np.ndarray, y: np.ndarray) -> Calibrator | None:
    return Isotonic.fit(s, y) if method == "isotonic" else Platt.fit(s, y)


def fit_calibration(scores: np.ndarray, labels: np.ndarray | None) -> CalibrationFit:
    """Choose and fit the calibration of validation ``scores`` (normalised, in time order).

    See the module docstring for the rule; the report records every candidate's held-out Brier
    score and log loss, the uncalibrated score's, and the rows each part had.
    """
    if labels is None:
        return CalibrationFit(None, {"method": None, "reason": "no labels in validation"})
    s = np.asarray(scores, dtype=np.float64)
    y = (np.asarray(labels) > 0).astype(np.float64)
    cut = round(len(s) * FIT_SHARE)
    parts = {"fit": y[:cut], "held_out": y[cut:]}
    counts = {
        name: {"rows": len(part), "positives": int(part.sum())} for name, part in parts.items()
    }
    short = [
        name
        for name, part in parts.items()
        if min(part.sum(), len(part) - part.sum()) < MIN_CLASS_ROWS
    ]
    if short:
        reason = (
            f"fewer than {MIN_CLASS_ROWS} frauds or legitimate rows in the {short[0]} part "
            "of the validation window"
        )
        return CalibrationFit(None, {"method": None, "reason": reason, "rows": counts})
    candidates: dict[str, dict[str, float]] = {}
    for method in METHODS:
        fitted = _fit(method, s[:cut], y[:cut])
        if fitted is not None:
            candidates[method] = _losses(y[cut:], fitted.apply(s[cut:]))
    if not candidates:
        reason = "no monotone calibration fits (the score does not rank frauds higher)"
        return CalibrationFit(None, {"method": None, "reason": reason, "rows": counts})
    method = min(candidates, key=lambda m: (candidates[m]["brier"], m))
    calibrator = _fit(method, s, y)
    return CalibrationFit(
        calibrator,
        {
            "method": method if calibrator is not None else None,
            "chosen_by": "lower Brier score on the newest third of the validation window",
            "rows": counts,
            "held_out": {**candidates, "uncalibrated": _losses(y[cut:], s[cut:])},
        },
    )
