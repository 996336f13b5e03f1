"""Population stability index (PSI) over quantile bins of a reference sample.

The reference (a model's training data) fixes the bins: ``bins - 1`` interior edges at its
quantiles, so each bin holds about the same share of the reference, plus an edge just below its
minimum and one at its maximum, so that live values outside the range the model was trained on
have bins of their own (empty in the reference). Repeated edges (a binary flag, a count that is
mostly 0, a constant column) collapse into one, so a discrete feature gets one bin per value it
takes instead of empty bins that would make the index noisy, and a constant column gets three:
below, at and above its value. A value ``x`` falls in bin ``i`` when
``edges[i-1] < x <= edges[i]``, with open ends below the first edge and above the last one (the
same rule the SQL side of the monitor's report, :mod:`rtfd.monitor.report`, counts with).
Missing values (NaN) get their own last bin, so a feature that starts arriving empty shows as
drift rather than vanishing from both sides.

    PSI = Σ_i (a_i − e_i) · ln(a_i / e_i)

with ``e_i`` the reference share of bin ``i`` and ``a_i`` the live share. An empty bin on either
side would make a term infinite, so shares are floored at :data:`EPSILON` first (a bin empty on
both sides then adds exactly 0). The usual reading: below 0.1 stable, 0.1 to 0.25 a moderate
shift, above 0.25 a significant one (:func:`band`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

#: Shares are floored at this before the logarithm (a bin empty on one side).
EPSILON = 1e-4
#: Quantile bins of a reference (at most: repeated quantiles merge).
DEFAULT_BINS = 10
#: Upper bounds of the bands.
STABLE_BELOW = 0.1
MODERATE_UP_TO = 0.25


class Band(StrEnum):
    """How far a distribution moved, by the usual PSI bands."""

    STABLE = "stable"
    MODERATE = "moderate"
    SIGNIFICANT = "significant"


def band(value: float) -> Band:
    """The band of a PSI: < 0.1 stable, 0.1–0.25 moderate, > 0.25 significant."""
    if value < STABLE_BELOW:
        return Band.STABLE
    if value <= MODERATE_UP_TO:
        return Band.MODERATE
    return Band.SIGNIFICANT


@dataclass(frozen=True)
class Bins:
    """A reference distribution: interior bin edges and each bin's share.

    ``shares`` has ``len(edges) + 2`` entries: the ``len(edges) + 1`` value bins, then the
    missing-value bin. They sum to 1 (all zero for an empty reference).
    """

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.edges) + 2:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) + 2} shares")
        if not all(math.isfinite(e) for e in self.edges):
            raise ValueError("edges must be finite numbers")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must increase")
        if not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in self.shares):
            raise ValueError("shares must be numbers from 0 to 1")
        total = sum(self.shares)
        if total and abs(total - 1.0) > 1e-6:
            raise ValueError(f"shares must sum to 1, not {total:g}")

    def to_dict(self) -> dict[str, list[float]]:
        return {"edges": list(self.edges), "shares": list(self.shares)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Bins:
        """Bins read back from JSON; ValueError on anything but two lists of numbers."""
        edges, shares = doc.get("edges"), doc.get("shares")
        if not isinstance(edges, list) or not isinstance(shares, list):
            raise ValueError("'edges' and 'shares' must be lists")
        if not all(_is_number(v) for v in [*edges, *shares]):
            raise ValueError("'edges' and 'shares' must hold numbers")
        return cls(tuple(float(e) for e in edges), tuple(float(s) for s in shares))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def quantile_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> tuple[float, ...]:
    """Edges at the ``1/bins … (bins-1)/bins`` quantiles of the finite ``values``, just below
    their minimum and at their maximum, repeated ones merged; none for an all-missing sample."""
    if bins < 2:
        raise ValueError("at least 2 bins")
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return ()
    qs = np.quantile(x, np.arange(1, bins) / bins)
    low = np.nextafter(x.min(), -np.inf)
    edges = np.unique(np.concatenate([[low], qs, [x.max()]]))
    return tuple(float(e) for e in edges if math.isfinite(e))


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """How many ``values`` fall in each bin of ``edges`` (see the module docstring), then the
    missing (NaN) count: an array of ``len(edges) + 2`` integers."""
    x = np.asarray(values, dtype=np.float64).ravel()
    missing = np.isnan(x)
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), x[~missing], side="left")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return np.append(counts, int(missing.sum())).astype(np.int64)


def shares(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts as shares of their total (all zero when the total is 0)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def reference_bins(values: np.ndarray, bins: int = DEFAULT_BINS) -> Bins:
    """The reference distribution of a sample: its quantile edges and the shares in them."""
    edges = quantile_edges(values, bins)
    return Bins(edges, tuple(float(s) for s in shares(bin_counts(values, edges))))


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """The PSI of ``actual`` against ``expected``: shares or counts over the same bins (each
    side is normalised to sum to 1; shares under :data:`EPSILON` are raised to it)."""
    e, a = shares(expected), shares(actual)
    if e.shape != a.shape:
        raise ValueError(f"{e.size} reference bins but {a.size} live ones")
    e = np.maximum(e, EPSILON)
    a = np.maximum(a, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_of(reference: Bins, values: np.ndarray) -> float:
    """The PSI of a live sample against a reference's bins."""
    return psi(reference.shares, bin_counts(values, reference.edges))
