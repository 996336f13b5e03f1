"""The monitor's report over a real Parquet lake, a real DuckDB and a really trained model."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from rtfd.config import Settings, load_settings
from rtfd.features.names import FEATURE_NAMES
from rtfd.ml.artifact import strict_json
from rtfd.ml.psi import Band, psi_of
from rtfd.ml.reference import Reference
from rtfd.ml.registry import Registry
from rtfd.monitor.report import MonitorError, build_report
from tests.monitor_lake import (
    NOW,
    at,
    install_model,
    scored,
    training_rows,
    write_enriched,
    write_labels,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def settings() -> Settings:
    s = load_settings({"label_maturity_days": 1})
    s.ensure_dirs()
    install_model(s)
    return s


def reference(settings: Settings) -> Reference:
    doc = Registry(settings.models_dir).json_artifact("v0001", "reference.json")
    assert doc is not None
    return Reference.from_dict(doc)


def test_training_writes_reference_json_as_plain_json(settings: Settings) -> None:
    registry = Registry(settings.models_dir)
    files = registry.verify("v0001")["files"]
    assert "reference.json" in files  # covered by the manifest's digests
    raw = (settings.models_dir / "v0001" / "reference.json").read_bytes()
    doc = strict_json(raw)  # no NaN, no duplicate keys: nothing but JSON

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return isinstance(value, str | int | float)

    assert plain(doc)
    ref = Reference.from_dict(doc)
    assert set(ref.features) == set(FEATURE_NAMES)
    assert ref.rows == len(training_rows())
    validation = len(training_rows()) // 3  # the 25 % after the 75 %
    assert ref.score is not None and abs(ref.score_rows - validation) <= 1
    amount = ref.features["amount_log1p"]
    expected = psi_of(amount, training_rows()["amount_log1p"].to_numpy())
    assert expected == pytest.approx(0.0, abs=1e-12)  # the bins are the training rows'


def test_the_training_rows_as_live_window_show_no_drift(settings: Settings) -> None:
    """Same rows, same bins: DuckDB's counts must equal numpy's, so every PSI is 0."""
    write_enriched(settings, scored(training_rows(), settings))
    report = build_report(settings, now=NOW)
    assert report.window_rows == len(training_rows())
    assert report.reference_note is None
    assert len(report.features) == len(FEATURE_NAMES)
    for drift in report.features:
        assert drift.psi == pytest.approx(0.0, abs=1e-9), drift
        assert drift.band is Band.STABLE
    assert report.score is not None and report.score.psi is not None
    assert report.score.psi < 0.1  # training rows scored vs validation scores: close


def test_shifted_amounts_are_significant_drift_and_suggest_a_retrain(settings: Settings) -> None:
    live = training_rows().copy()
    live["amount_log1p"] += 1.5  # amounts about 4.5 times larger
    live["amount_ratio"] *= 4.5
    write_enriched(settings, scored(live, settings))
    report = build_report(settings, now=NOW)
    drifted = {d.name: d for d in report.drifted}
    assert set(drifted) >= {"amount_log1p", "amount_ratio"}
    assert drifted["amount_log1p"].band is Band.SIGNIFICANT
    assert report.advice.suggested
    assert "amount_log1p" in report.advice.reasons[0]
    # DuckDB's bins agree with numpy's on the same values.
    ref = reference(settings)
    for name in ("amount_log1p", "amount_ratio", "count_1h", "is_night"):
        expected = psi_of(ref.features[name], live[name].to_numpy())
        assert next(d for d in report.features if d.name == name).psi == pytest.approx(expected)
    untouched = next(d for d in report.features if d.name == "count_1h")
    assert untouched.band is Band.STABLE


def test_missing_values_count_as_drift(settings: Settings) -> None:
    live = training_rows().copy()
    live.loc[live.index[: len(live) // 2], "distance_prev_km"] = np.nan
    write_enriched(settings, scored(live.fillna({"amount_log1p": 0.0}), settings))
    report = build_report(settings, now=NOW)
    drift = next(d for d in report.features if d.name == "distance_prev_km")
    assert drift.missing_share == pytest.approx(0.5, abs=0.001)
    assert drift.band is Band.SIGNIFICANT


def test_the_window_holds_only_rows_processed_in_the_last_hours(settings: Settings) -> None:
    rows = scored(training_rows().iloc[:3000], settings)
    hours_ago = np.repeat([0.5, 1.5, 2.5, 30.0], [1000, 800, 700, 500])
    write_enriched(settings, rows, pd.Series(NOW - pd.to_timedelta(hours_ago, unit="h")))
    report = build_report(settings, now=NOW, hours=3)
    assert report.window_rows == 2500
    assert report.window_hours == 3
    per_hour = [(h.hours_ago, h.transactions) for h in report.alerts_per_hour]
    assert per_hour == [(2, 700), (1, 800), (0, 1000)]  # oldest first
    alerts = rows["is_fraud"].to_numpy()
    expected = [
        int(alerts[s].sum()) for s in (slice(1800, 2500), slice(1000, 1800), slice(0, 1000))
    ]
    assert [h.alerts for h in report.alerts_per_hour] == expected
    assert report.window_alerts == sum(expected)
    assert build_report(settings, now=NOW, hours=40).window_rows == 3000
    empty = build_report(settings, now=NOW + timedelta(days=3))
    assert empty.window_rows == 0 and empty.score is not None and empty.score.psi is None
    assert "drift not judged" in empty.advice.notes[0]


def test_score_histogram_counts_the_window(settings: Settings) -> None:
    rows = scored(training_rows(), settings)
    write_enriched(settings, rows)
    report = build_report(settings, now=NOW)
    buckets = np.minimum((rows["fraud_score"].to_numpy() * 20).astype(int), 19)
    assert report.score_histogram == np.bincount(buckets, minlength=20).tolist()


def _alerts(settings: Settings, n: int, day: float, prefix: str) -> pd.DataFrame:
    """``n`` alerts of the live model with event times ``day`` days before NOW."""
    rows = scored(training_rows().iloc[:n], settings).copy()
    rows["transaction_id"] = [f"{prefix}{i}" for i in range(n)]
    rows["timestamp"] = pd.Timestamp(at(days=day))
    rows["is_fraud"] = True
    return rows


def test_precision_per_day_from_chargebacks_and_analyst_labels(settings: Settings) -> None:
    """Day 3 (matured): 10 alerts, 4 charged back (one file without a source column), 1 cleared
    by an analyst then charged back (the chargeback wins), the rest unlabelled = legitimate.
    Today (not matured): 6 alerts, 2 confirmed and 1 cleared by an analyst, 1 confirmed then
    undone, 2 waiting."""
    old = _alerts(settings, 10, 3.0, "old")
    new = _alerts(settings, 6, 0.0, "new")
    write_enriched(settings, pd.concat([old, new]))
    write_labels(
        settings,
        [{"transaction_id": f"old{i}", "label": 1, "reported_at": at(days=2)} for i in range(2)],
        name="old-producer",
    )
    analyst = {"source": "analyst", "withdrawn": False}
    write_labels(
        settings,
        [
            {"transaction_id": "old2", "label": 1, "reported_at": at(2), "source": "chargeback"},
            {"transaction_id": "old3", "label": 1, "reported_at": at(2), "source": None},
            {"transaction_id": "old4", "label": 0, "reported_at": at(2.5), **analyst},
            {"transaction_id": "old4", "label": 1, "reported_at": at(2), "source": "chargeback"},
            {"transaction_id": "new0", "label": 1, "reported_at": at(hours=1), **analyst},
            {"transaction_id": "new1", "label": 1, "reported_at": at(hours=1), **analyst},
            {"transaction_id": "new2", "label": 0, "reported_at": at(hours=1), **analyst},
            {"transaction_id": "new3", "label": 1, "reported_at": at(hours=2), **analyst},
            {
                "transaction_id": "new3",
                "label": 1,
                "reported_at": at(hours=1),
                "source": "analyst",
                "withdrawn": True,
            },
        ],
        name="mixed",
    )
    report = build_report(settings, now=NOW)
    days = {d.day: d for d in report.precision_per_day}
    matured = days[at(days=3).date()]
    assert (matured.alerts, matured.resolved, matured.confirmed) == (10, 10, 5)
    assert matured.by_analyst == 0 and matured.precision == pytest.approx(0.5)
    today = days[NOW.date()]
    assert (today.alerts, today.resolved, today.confirmed, today.by_analyst) == (6, 3, 2, 3)
    assert report.resolved_7d == 13
    assert report.precision_7d == pytest.approx(7 / 13)
    assert [d.day for d in report.precision_per_day] == sorted(days)


def test_low_precision_suggests_a_retrain(settings: Settings) -> None:
    alerts = _alerts(settings, 40, 3.0, "a")
    write_enriched(settings, alerts)
    write_labels(
        settings,
        [{"transaction_id": f"a{i}", "label": 1, "reported_at": at(2)} for i in range(8)],
        name="cb",
    )
    report = build_report(settings, now=NOW)
    assert report.precision_7d == pytest.approx(0.2)
    assert report.validation_precision is not None and report.validation_precision > 0.5
    assert any(r.startswith("precision: 0.20 over 7 days") for r in report.advice.reasons)
    assert report.advice.suggested


def test_alerts_of_another_model_do_not_count_for_the_live_models_precision(
    settings: Settings,
) -> None:
    alerts = _alerts(settings, 40, 3.0, "a")
    alerts["model_version"] = "v0000"
    write_enriched(settings, alerts)
    report = build_report(settings, now=NOW)
    assert report.precision_per_day[-1].resolved == 40  # shown per day
    assert report.resolved_7d == 0 and report.precision_7d is None  # not the live model's


def test_an_older_model_without_reference_still_reports(settings: Settings) -> None:
    registry = Registry(settings.models_dir)
    live = registry.load()
    version = registry.save(
        model=live.model,
        preprocessor=live.preprocessor,
        features=live.features,
        threshold={"threshold": live.threshold, "mode": live.mode, "algo": live.algo},
        metrics=live.metrics,
    )  # saved as before reference.json existed
    registry.promote(version, force=True)
    write_enriched(settings, scored(training_rows(), settings))
    report = build_report(settings, now=NOW)
    assert report.model_version == "v0002"
    assert report.reference_note == "no reference for v0002: retrain to enable drift"
    assert report.features == [] and report.score is None
    assert report.window_rows == len(training_rows())
    assert not any("drift" in n for n in report.advice.notes)
    json.dumps(report.to_dict())


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc: doc.replace(b'"format": 1', b'"format": 9'),
        lambda doc: doc.replace(b"[", b"{", 1),
        lambda doc: b"\xff" + doc,
        lambda doc: doc + b" ",
    ],
)
def test_a_damaged_reference_is_a_note_not_a_failure(settings: Settings, damage: object) -> None:
    write_enriched(settings, scored(training_rows().iloc[:100], settings))
    path = settings.models_dir / "v0001" / "reference.json"
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    report = build_report(settings, now=NOW)
    assert report.reference_note is not None
    assert report.reference_note.startswith("reference for v0001 refused")
    assert "does not match its SHA-256" in report.reference_note
    assert report.features == []


def test_no_model_is_a_clear_error() -> None:
    settings = load_settings()
    with pytest.raises(MonitorError, match=r"no live model .* run `rtfd train`"):
        build_report(settings)


def test_no_lake_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(MonitorError, match=r"no scored transactions .* start the stream"):
        build_report(settings)


def test_the_report_is_json(settings: Settings) -> None:
    write_enriched(settings, scored(training_rows(), settings))
    doc = json.loads(json.dumps(build_report(settings, now=NOW).to_dict()))
    assert doc["model_version"] == "v0001"
    assert doc["window"]["transactions"] == len(training_rows())
    assert {f["name"] for f in doc["features"]} == set(FEATURE_NAMES)
    assert doc["features"][0]["band"] == "stable"
    assert doc["retrain"] == {"suggested": False, "reasons": [], "notes": doc["retrain"]["notes"]}
    assert len(doc["score_histogram"]) == 20


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"format": 2, "features": {}}, "format"),
        ({"format": 1}, "'features' must be an object"),
        ({"format": 1, "features": []}, "'features' must be an object"),
        ({"format": 1, "features": {"x": [1, 2]}}, "feature 'x'"),
        ({"format": 1, "features": {"x": {"edges": [1.0], "shares": [1.0]}}}, "feature 'x'"),
        ({"format": 1, "features": {}, "score": [0.5]}, "'score' must be an object"),
        ({"format": 1, "features": {}, "score": {"edges": "0"}}, "score:"),
        ({"format": 1, "features": {}, "rows": -1}, "counts"),
        ({"format": 1, "features": {}, "rows": True}, "counts"),
        ({"format": 1, "features": {}, "bins": 2.5}, "counts"),
        ({"format": 1, "features": {}, "notes": {"a": 1}}, "'notes'"),
    ],
)
def test_a_malformed_reference_is_refused_with_its_reason(
    doc: dict[str, object], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        Reference.from_dict(doc)


def test_a_reference_rewritten_with_its_manifest_is_still_parsed_strictly(
    settings: Settings,
) -> None:
    """Someone able to rewrite the manifest too defeats the digest; the parser still refuses a
    reference that is not one, and the monitor says so instead of failing."""
    import hashlib

    from rtfd.ml.registry import _canonical

    write_enriched(settings, scored(training_rows().iloc[:100], settings))
    vdir = settings.models_dir / "v0001"
    raw = _canonical({"format": 1, "features": {"amount_log1p": {"edges": [2.0, 1.0]}}})
    (vdir / "reference.json").write_bytes(raw)
    manifest = json.loads((vdir / "manifest.json").read_bytes())
    manifest["files"]["reference.json"] = hashlib.sha256(raw).hexdigest()
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    manifest["manifest_sha256"] = hashlib.sha256(_canonical(body)).hexdigest()
    (vdir / "manifest.json").write_bytes(_canonical(manifest))
    report = build_report(settings, now=NOW)
    assert report.reference_note is not None
    assert report.reference_note.startswith("reference for v0001 unreadable (feature")
