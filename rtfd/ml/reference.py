"""The drift reference a model carries: its training data's distributions, as plain JSON.

The trainer writes ``reference.json`` next to ``features.json`` (through
:meth:`rtfd.ml.registry.Registry.save`, so the manifest covers it): for each feature the quantile
bins of the rows the model was fitted on, and for the score the bins of the model's own scores on
its validation window. Validation, not training, for the score: the live scores are
out-of-sample, and a model scores the rows it was fitted on more confidently than any other, so
in-sample scores would show drift on the first live minute.

JSON only, read with the registry's strict parser and checked here field by field: a reference
cannot run code, and a damaged one is refused with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtfd.ml.psi import DEFAULT_BINS, Bins, reference_bins

FILE = "reference.json"
FORMAT = 1
#: Rows sampled from the training part for the feature bins (quantiles need no more).
MAX_ROWS = 500_000


@dataclass(frozen=True)
class Reference:
    """A model's reference distributions: per feature, and of its score."""

    features: dict[str, Bins]
    score: Bins | None = None
    rows: int = 0
    score_rows: int = 0
    bins: int = DEFAULT_BINS
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``reference.json`` holds."""
        doc: dict[str, Any] = {
            "format": FORMAT,
            "bins": self.bins,
            "rows": self.rows,
            "score_rows": self.score_rows,
            "features": {name: b.to_dict() for name, b in self.features.items()},
            "notes": dict(self.notes),
        }
        if self.score is not None:
            doc["score"] = self.score.to_dict()
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Reference:
        """A reference read back from JSON; ValueError saying what is wrong otherwise."""
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, not {FORMAT}")
        features = doc.get("features")
        if not isinstance(features, dict):
            raise ValueError("'features' must be an object")
        parsed = {}
        for name, value in features.items():
            if not isinstance(value, dict):
                raise ValueError(f"feature {name!r}: an object was expected")
            try:
                parsed[name] = Bins.from_dict(value)
            except ValueError as e:
                raise ValueError(f"feature {name!r}: {e}") from e
        score = doc.get("score")
        if score is not None and not isinstance(score, dict):
            raise ValueError("'score' must be an object")
        try:
            score_bins = Bins.from_dict(score) if score is not None else None
        except ValueError as e:
            raise ValueError(f"score: {e}") from e
        counts = [doc.get(k, 0) for k in ("rows", "score_rows", "bins")]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("'rows', 'score_rows' and 'bins' must be counts")
        notes = doc.get("notes", {})
        if not isinstance(notes, dict) or not all(isinstance(v, str) for v in notes.values()):
            raise ValueError("'notes' must map names to text")
        return cls(parsed, score_bins, counts[0], counts[1], counts[2] or DEFAULT_BINS, notes)


def build_reference(
    features: np.ndarray,
    names: Sequence[str],
    scores: np.ndarray | None,
    *,
    bins: int = DEFAULT_BINS,
    seed: int = 42,
) -> Reference:
    """The reference of a model fitted on ``features`` (rows × ``names``) whose validation
    scores are ``scores``. More than :data:`MAX_ROWS` rows are sampled (seeded)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"features must be rows × {len(names)} columns, got shape {x.shape}")
    rows = len(x)
    if rows > MAX_ROWS:
        x = x[np.sort(np.random.default_rng(seed).choice(rows, MAX_ROWS, replace=False))]
    per_feature = {name: reference_bins(x[:, i], bins) for i, name in enumerate(names)}
    score = None if scores is None or len(scores) == 0 else reference_bins(scores, bins)
    return Reference(
        per_feature,
        score,
        rows=len(x),
        score_rows=0 if scores is None else len(scores),
        bins=bins,
        notes={
            "features": "the rows the model was fitted on (sampled above 500,000)",
            "score": "the model's calibrated scores on its validation window",
        },
    )
