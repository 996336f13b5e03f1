"""When the monitor suggests a retrain, and why: one rule, its thresholds in one place.

A retrain is suggested when any of these holds (each adds its reason):

* **feature drift** — a model feature's PSI between the live window and the training data is
  above :attr:`RetrainRule.feature_psi` (0.25, the top of the "moderate" band);
* **score drift** — the score's PSI against the model's validation scores is above
  :attr:`RetrainRule.score_psi` (0.25);
* **precision** — the live model's alert precision over the last :attr:`RetrainRule.days` days
  (7) is below :attr:`RetrainRule.precision_ratio` (80 %) of its validation precision, once at
  least :attr:`RetrainRule.min_resolved` (30) of those alerts are resolved.

Drift is judged only on a window of at least :attr:`RetrainRule.min_rows` (1,000) transactions:
the PSI of a handful of rows is noise. The calendar features (hour of day, day of week, night,
weekend) count only when the window spans at least :attr:`RetrainRule.calendar_days` (7) days of
event time: a shorter window holds some hours and days and not others, so they would "drift" in
every window of a real-time deployment (the simulator's time-lapse packs 600 days in 24 hours, so
there they count). What could not be judged is said as a note, never as a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetrainRule:
    """The thresholds of the retrain suggestion (see the module docstring)."""

    feature_psi: float = 0.25
    score_psi: float = 0.25
    precision_ratio: float = 0.8
    days: int = 7
    min_resolved: int = 30
    min_rows: int = 1_000
    calendar_days: float = 7.0
    calendar_features: tuple[str, ...] = (
        "hour_sin",
        "hour_cos",
        "day_of_week",
        "is_night",
        "is_weekend",
    )


@dataclass(frozen=True)
class Advice:
    """Whether to retrain, the reasons if so, and what could not be judged."""

    suggested: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"suggested": self.suggested, "reasons": self.reasons, "notes": self.notes}


@dataclass(frozen=True)
class Evidence:
    """What the rule looks at, from a monitor report."""

    window_rows: int
    event_span_days: float = 0.0  # the window's last event time less its first
    feature_psi: Sequence[tuple[str, float | None]] = ()
    score_psi: float | None = None
    has_reference: bool = True
    precision: float | None = None  # the live model's, over the last ``days`` days
    resolved: int = 0
    validation_precision: float | None = None


def advise(evidence: Evidence, rule: RetrainRule = RetrainRule()) -> Advice:
    """Apply the rule to ``evidence``."""
    reasons: list[str] = []
    notes: list[str] = []
    # Without a reference there is no drift to judge; the report says so once, elsewhere.
    if evidence.has_reference:
        _drift(evidence, rule, reasons, notes)
    _precision(evidence, rule, reasons, notes)
    return Advice(bool(reasons), reasons, notes)


def _drift(evidence: Evidence, rule: RetrainRule, reasons: list[str], notes: list[str]) -> None:
    if evidence.window_rows < rule.min_rows:
        notes.append(
            f"drift not judged: {evidence.window_rows:,} transactions in the window "
            f"(at least {rule.min_rows:,} needed)"
        )
        return
    calendar = evidence.event_span_days < rule.calendar_days
    if calendar:
        notes.append(
            f"calendar features not judged: the window spans {evidence.event_span_days:.1f} "
            f"days of event time (at least {rule.calendar_days:g} needed)"
        )
    drifted = sorted(
        (
            (v, n)
            for n, v in evidence.feature_psi
            if v is not None
            and v > rule.feature_psi
            and not (calendar and n in rule.calendar_features)
        ),
        reverse=True,
    )
    if drifted:
        named = ", ".join(f"{n} {v:.2f}" for v, n in drifted[:3])
        more = f" and {len(drifted) - 3} more" if len(drifted) > 3 else ""
        reasons.append(f"feature drift: PSI > {rule.feature_psi:g} for {named}{more}")
    if evidence.score_psi is not None and evidence.score_psi > rule.score_psi:
        reasons.append(f"score drift: PSI {evidence.score_psi:.2f} > {rule.score_psi:g}")


def _precision(evidence: Evidence, rule: RetrainRule, reasons: list[str], notes: list[str]) -> None:
    target = evidence.validation_precision
    if target is None or target <= 0:
        notes.append("precision not judged: the model has no validation precision")
    elif evidence.resolved < rule.min_resolved or evidence.precision is None:
        notes.append(
            f"precision not judged: {evidence.resolved} of the live model's alerts of the last "
            f"{rule.days} days resolved (at least {rule.min_resolved} needed)"
        )
    elif evidence.precision < rule.precision_ratio * target:
        reasons.append(
            f"precision: {evidence.precision:.2f} over {rule.days} days is below "
            f"{rule.precision_ratio:.0%} of the validation precision {target:.2f}"
        )
