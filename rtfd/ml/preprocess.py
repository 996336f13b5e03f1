"""Feature preprocessing saved with every model as ``preprocess_scaler.pkl``.

The file is a format-2 artifact (:mod:`rtfd.ml.artifact`, despite its historical name not a
pickle): the feature names and flags in its JSON header, the scaling mean and scale as arrays.

Trees (XGBoost) need none: their preprocessor only replaces missing values. Linear models and
IsolationForest see heavy-tailed counts, sums, distances and speeds through ``log1p`` and then a
standard scaling fitted on the training rows, so that one card with a thousand transactions does
not stretch a whole axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rtfd.ml.artifact import PREPROCESSOR, ArtifactFormatError, pack, unpack

# Non-negative, heavy-tailed features that linear models and IsolationForest see as log1p.
LOG_FEATURES = frozenset(
    {
        "amount_ratio",
        "user_txn_count",
        "count_10m",
        "count_1h",
        "count_24h",
        "count_7d",
        "sum_10m",
        "sum_1h",
        "sum_24h",
        "sum_7d",
        "seconds_since_prev",
        "distance_prev_km",
        "travel_speed_kmh",
        "merchant_user_count",
        "merchant_volume_7d",
        "merchant_volume_28d",
    }
)


@dataclass
class Preprocessor:
    """Missing values -> 0, optional log1p of heavy-tailed columns, optional standard scaling."""

    features: list[str]
    log: bool = False
    standardise: bool = False
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))

    @property
    def log_index(self) -> np.ndarray:
        if not self.log:
            return np.zeros(0, dtype=np.int64)
        index = [i for i, f in enumerate(self.features) if f in LOG_FEATURES]
        return np.array(index, dtype=np.int64)

    @classmethod
    def fit(
        cls, X: np.ndarray, features: list[str], *, log: bool, standardise: bool
    ) -> Preprocessor:
        """Fit on the training matrix (rows x features, in ``features`` order)."""
        pre = cls(list(features), log=log, standardise=False)
        Xt = pre.transform(X)
        if standardise:
            pre.mean = Xt.mean(axis=0)
            std = Xt.std(axis=0)
            pre.scale = np.where(std > 1e-12, std, 1.0)
            pre.standardise = True
        return pre

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The model's input matrix (float64, a new array)."""
        Xt = np.nan_to_num(np.array(X, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        idx = self.log_index
        if len(idx):
            Xt[:, idx] = np.log1p(np.maximum(Xt[:, idx], 0.0))
        if self.standardise:
            Xt = (Xt - self.mean) / self.scale
        return Xt

    def to_bytes(self) -> bytes:
        """The preprocessor as a format-2 artifact (plain arrays, no pickle)."""
        header = {"features": list(self.features), "log": self.log, "standardise": self.standardise}
        return pack(PREPROCESSOR, header, {"mean": self.mean, "scale": self.scale})

    @classmethod
    def from_bytes(cls, blob: bytes) -> Preprocessor:
        """Inverse of :meth:`to_bytes` (never unpickles); :class:`ArtifactFormatError` for
        anything else."""
        payload = unpack(blob, PREPROCESSOR)
        payload.expect(frozenset({"mean", "scale"}))
        features = payload.header.get("features")
        if not (
            isinstance(features, list)
            and 1 <= len(features) <= 100_000
            and all(isinstance(f, str) for f in features)
        ):
            raise ArtifactFormatError("header field 'features' must be a list of names")
        pre = cls(
            features,
            log=payload.field("log", bool),
            standardise=payload.field("standardise", bool),
            mean=payload.array("mean", "<f8"),
            scale=payload.array("scale", "<f8"),
        )
        width = len(features) if pre.standardise else 0
        if len(pre.mean) != width or len(pre.scale) != width:
            raise ArtifactFormatError(f"mean and scale must have {width} values")
        if not (np.isfinite(pre.mean).all() and np.isfinite(pre.scale).all()):
            raise ArtifactFormatError("mean and scale must be finite")
        if (pre.scale <= 0.0).any():
            raise ArtifactFormatError("scale must be positive")
        return pre
