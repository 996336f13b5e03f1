"""The retrain suggestion: drift and precision thresholds, and what is not judged."""

from __future__ import annotations

import pytest

from rtfd.monitor.rules import Evidence, RetrainRule, advise

pytestmark = pytest.mark.unit

WEEK = 30.0  # event days a window spans: enough for the calendar features


def evidence(**kw: object) -> Evidence:
    base: dict[str, object] = {
        "window_rows": 50_000,
        "event_span_days": WEEK,
        "feature_psi": [("amount_log1p", 0.02), ("count_1h", 0.08)],
        "score_psi": 0.01,
        "precision": 0.85,
        "resolved": 200,
        "validation_precision": 0.9,
    }
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def test_a_healthy_model_needs_no_retrain() -> None:
    advice = advise(evidence())
    assert not advice.suggested and advice.reasons == [] and advice.notes == []


@pytest.mark.parametrize("value", [0.2501, 0.4, 3.0])
def test_a_feature_above_the_threshold_suggests_a_retrain_and_names_it(value: float) -> None:
    advice = advise(evidence(feature_psi=[("amount_log1p", value), ("count_1h", 0.05)]))
    assert advice.suggested
    assert advice.reasons == [f"feature drift: PSI > 0.25 for amount_log1p {value:.2f}"]


@pytest.mark.parametrize("value", [0.0, 0.1, 0.25, None])
def test_a_feature_at_or_below_the_threshold_does_not(value: float | None) -> None:
    assert not advise(evidence(feature_psi=[("amount_log1p", value)])).suggested


def test_the_worst_three_features_are_named_and_the_rest_counted() -> None:
    psis = [(f"f{i}", 0.3 + i / 10) for i in range(5)]
    (reason,) = advise(evidence(feature_psi=psis)).reasons
    assert reason == "feature drift: PSI > 0.25 for f4 0.70, f3 0.60, f2 0.50 and 2 more"


def test_score_drift_suggests_a_retrain() -> None:
    advice = advise(evidence(score_psi=0.31))
    assert advice.reasons == ["score drift: PSI 0.31 > 0.25"]


def test_drift_on_a_small_window_is_a_note_not_a_reason() -> None:
    advice = advise(evidence(window_rows=999, feature_psi=[("amount_log1p", 2.0)], score_psi=2.0))
    assert not advice.suggested
    assert advice.notes == [
        "drift not judged: 999 transactions in the window (at least 1,000 needed)"
    ]


@pytest.mark.parametrize("feature", RetrainRule().calendar_features)
def test_calendar_features_count_only_on_a_week_of_event_time(feature: str) -> None:
    short = advise(evidence(event_span_days=0.5, feature_psi=[(feature, 3.0)]))
    assert not short.suggested
    assert short.notes[0].startswith("calendar features not judged: the window spans 0.5 days")
    assert advise(evidence(event_span_days=7.0, feature_psi=[(feature, 3.0)])).suggested


def test_other_features_count_on_a_short_window() -> None:
    advice = advise(evidence(event_span_days=0.5, feature_psi=[("amount_log1p", 3.0)]))
    assert advice.suggested


def test_without_a_reference_drift_is_not_judged() -> None:
    advice = advise(evidence(has_reference=False, feature_psi=[("x", 9.0)], score_psi=9.0))
    assert not advice.suggested and advice.notes == []


@pytest.mark.parametrize(
    ("precision", "suggested"),
    [(0.719, True), (0.5, True), (0.0, True), (0.721, False), (0.95, False)],
)
def test_precision_below_80_percent_of_validation_suggests_a_retrain(
    precision: float, suggested: bool
) -> None:
    advice = advise(evidence(precision=precision, validation_precision=0.9))
    assert advice.suggested is suggested
    if suggested:
        assert advice.reasons == [
            f"precision: {precision:.2f} over 7 days is below 80% of the validation precision 0.90"
        ]


def test_precision_on_too_few_resolved_alerts_is_a_note() -> None:
    advice = advise(evidence(precision=0.1, resolved=29))
    assert not advice.suggested
    assert advice.notes == [
        "precision not judged: 29 of the live model's alerts of the last 7 days resolved "
        "(at least 30 needed)"
    ]


@pytest.mark.parametrize("target", [None, 0.0])
def test_a_model_without_validation_precision_is_not_judged_on_it(target: float | None) -> None:
    advice = advise(evidence(precision=0.1, validation_precision=target))
    assert not advice.suggested
    assert advice.notes == ["precision not judged: the model has no validation precision"]


def test_drift_and_precision_both_give_reasons() -> None:
    advice = advise(evidence(score_psi=0.5, precision=0.2))
    assert advice.suggested and len(advice.reasons) == 2


def test_the_thresholds_are_settings_of_the_rule() -> None:
    strict = RetrainRule(feature_psi=0.05, precision_ratio=0.99, min_resolved=10)
    assert advise(evidence(), strict).suggested
    assert not advise(evidence(feature_psi=[("x", 0.9)]), RetrainRule(feature_psi=1.0)).suggested
