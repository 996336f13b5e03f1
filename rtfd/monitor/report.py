"""The monitor's report: drift, alert volume and alert precision, read from the lake.

Everything comes from the real pieces, read-only: the live model's files from the registry (each
checked against its manifest, none unpickled) and the Parquet lake through the query service
(:class:`rtfd.query.service.QueryService`, so the SQL guard and DuckDB's lockdown apply to these
queries as to the SQL panel's). The heavy lifting stays in DuckDB: the live window's bin counts
are one aggregate over the window, never its rows in Python.

* **Live window** — transactions *processed* (``processed_at``) in the last ``hours`` hours:
  processing time, so a replay of old transactions is judged when it is scored.
* **Drift** — each model feature's PSI and the score's (:mod:`rtfd.ml.psi`) against the
  model's ``reference.json`` (:mod:`rtfd.ml.reference`).
* **Alert volume** — alerts per processing hour over the window, the latest hour last.
* **Alert precision per day** — by the alert's event day (UTC): confirmed / resolved, where an
  alert is *resolved* once it has a label under :mod:`rtfd.query.labels` (an analyst's decision,
  or a chargeback, which wins) or has matured unlabelled (older than ``label_maturity_days``: then
  legitimate, as in training), and *confirmed* when that label is fraud. Alerts still waiting
  for either are left out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from rtfd.errors import RtfdError
from rtfd.ml.psi import Band, Bins, band, psi
from rtfd.ml.reference import FILE as REFERENCE_FILE
from rtfd.ml.reference import Reference
from rtfd.monitor.rules import Advice, Evidence, RetrainRule, advise

if TYPE_CHECKING:
    from rtfd.config import Settings

#: Default live window, in hours of processing time.
DEFAULT_HOURS = 24.0
#: Days of alert precision the report lists.
PRECISION_DAYS = 14
#: Buckets of the score histogram over [0, 1].
SCORE_BUCKETS = 20
_DAY_S = 86_400


class MonitorError(RtfdError):
    """Nothing to monitor yet (no model, no scored transaction) or the lake cannot be read."""

    title = "Monitor"


class ResultLike(Protocol):
    @property
    def columns(self) -> list[str]: ...
    @property
    def rows(self) -> list[tuple[Any, ...]]: ...


class QueryRunner(Protocol):
    """The part of :class:`rtfd.query.service.QueryService` the report uses."""

    def run(self, sql: str, limit: int | None = None) -> ResultLike: ...


@dataclass(frozen=True)
class Drift:
    """One distribution's drift: a feature's or the score's."""

    name: str
    psi: float | None
    band: Band | None
    missing_share: float = 0.0  # share of the live window without a value
    note: str = ""


@dataclass(frozen=True)
class HourAlerts:
    """Alerts and transactions processed in one hour of the window (``hours_ago`` 0 = latest)."""

    hours_ago: int
    transactions: int
    alerts: int


@dataclass(frozen=True)
class DayPrecision:
    """Alert precision of one event day (UTC)."""

    day: date
    alerts: int
    resolved: int
    confirmed: int
    by_analyst: int  # resolved by an analyst's decision (no chargeback)

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.resolved if self.resolved else None


@dataclass(frozen=True)
class MonitorReport:
    """Everything the Monitor tab and ``rtfd monitor`` show."""

    generated_at: datetime
    model_version: str
    threshold: float | None
    window_hours: float
    window_rows: int
    window_alerts: int
    event_span_days: float
    reference_note: str | None
    score: Drift | None
    features: list[Drift]
    score_histogram: list[int]
    alerts_per_hour: list[HourAlerts]
    precision_per_day: list[DayPrecision]
    precision_7d: float | None  # the live model's alerts, over the rule's days
    resolved_7d: int
    validation_precision: float | None
    advice: Advice
    rule: RetrainRule = field(default_factory=RetrainRule)

    @property
    def drifted(self) -> list[Drift]:
        """Features above the rule's PSI threshold, worst first."""
        top = [d for d in self.features if d.psi is not None and d.psi > self.rule.feature_psi]
        return sorted(top, key=lambda d: -(d.psi or 0.0))

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (``rtfd monitor --json``)."""

        def drift(d: Drift | None) -> dict[str, Any] | None:
            return None if d is None else {**asdict(d), "band": d.band and d.band.value}

        return {
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            "model_version": self.model_version,
            "threshold": self.threshold,
            "window": {
                "hours": self.window_hours,
                "transactions": self.window_rows,
                "alerts": self.window_alerts,
                "event_span_days": self.event_span_days,
            },
            "reference_note": self.reference_note,
            "score": drift(self.score),
            "features": [drift(d) for d in self.features],
            "score_histogram": self.score_histogram,
            "alerts_per_hour": [asdict(h) for h in self.alerts_per_hour],
            "precision_per_day": [
                {**asdict(d), "day": d.day.isoformat(), "precision": d.precision}
                for d in self.precision_per_day
            ],
            "precision_7d": self.precision_7d,
            "resolved_7d": self.resolved_7d,
            "validation_precision": self.validation_precision,
            "retrain": self.advice.to_dict(),
            "rule": asdict(self.rule),
        }


@dataclass(frozen=True)
class LiveModel:
    """What the report needs of the live model: JSON files only."""

    version: str
    features: list[str]
    threshold: float | None
    validation_precision: float | None
    reference: Reference | None
    reference_note: str | None


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def live_model(settings: Settings) -> LiveModel:
    """The live version's features, threshold, validation precision and drift reference."""
    from rtfd.ml.registry import Registry

    registry = Registry(settings.models_dir)
    version = registry.current()
    if version is None:
        raise MonitorError(
            f"no live model in {settings.models_dir} yet: run `rtfd train` "
            "(or start the appliance, which trains one)"
        )
    features_doc = registry.json_artifact(version, "features.json") or {}
    features = [str(f) for f in features_doc.get("features", []) if isinstance(f, str)]
    threshold = registry.json_artifact(version, "threshold.json") or {}
    metrics = registry.json_artifact(version, "metrics.json") or {}
    reference, note = None, None
    try:
        doc = registry.json_artifact(version, REFERENCE_FILE)
    except RtfdError as e:
        doc, note = None, f"reference for {version} refused ({e.message}): retrain to enable drift"
    if doc is None:
        note = note or f"no reference for {version}: retrain to enable drift"
    else:
        try:
            reference = Reference.from_dict(doc)
        except ValueError as e:
            note = f"reference for {version} unreadable ({e}): retrain to enable drift"
    return LiveModel(
        version,
        features,
        _finite(threshold.get("threshold")),
        _finite(metrics.get("precision")),
        reference,
        note,
    )


def _literal(value: float) -> str:
    return f"CAST('{float(value)!r}' AS DOUBLE)"


def _stamp(when: datetime) -> str:
    return f"CAST('{when.astimezone(UTC).isoformat()}' AS TIMESTAMPTZ)"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _bins_sql(column: str, bins: Bins) -> str:
    """An aggregate of the window's values of ``column`` per bin: a map from the bin index
    (``len(edges) + 1`` for a missing value) to its count (see :mod:`rtfd.ml.psi`)."""
    c = _quoted(column)
    missing = len(bins.edges) + 1
    whens = " ".join(f"WHEN {c} <= {_literal(e)} THEN {i}" for i, e in enumerate(bins.edges))
    return (
        f"histogram(CASE WHEN {c} IS NULL OR isnan({c}) THEN {missing} {whens} "
        f"ELSE {len(bins.edges)} END)"
    )


def _bin_counts(bins: Bins, histogram: Any) -> list[int]:
    """The counts of every bin (value bins, then missing) from ``_bins_sql``'s map, which
    arrives as a dict or as (key, value) pairs and lists only the bins that are not empty."""
    pairs = histogram.items() if isinstance(histogram, dict) else (histogram or [])
    counts = [0] * (len(bins.edges) + 2)
    for key, n in pairs:
        counts[int(key)] += int(n)
    return counts


def _drift(name: str, reference: Bins, total: int, histogram: Any) -> Drift:
    counts = _bin_counts(reference, histogram)
    missing = counts[-1] / total if total else 0.0
    if total == 0:
        return Drift(name, None, None, note="no live transactions")
    value = psi(reference.shares, counts)
    return Drift(name, value, band(value), missing)


class _Lake:
    """The queries of one report, over the query service's views."""

    def __init__(self, query: QueryRunner, now: datetime, hours: float) -> None:
        self.query = query
        self.now = now
        self.since = now - timedelta(hours=hours)
        self.hours = hours

    def rows(self, sql: str, limit: int = 10_000) -> list[tuple[Any, ...]]:
        return self.query.run(sql, limit=limit).rows

    def columns(self, view: str) -> set[str]:
        return set(self.query.run(f"SELECT * FROM {view} LIMIT 0", limit=1).columns)

    def window(self, time_column: str) -> str:
        return f"{_quoted(time_column)} >= {_stamp(self.since)}"

    def drift(
        self, model: LiveModel, available: set[str], where: str
    ) -> tuple[int, int, float, Drift | None, list[Drift]]:
        """(rows, alerts, event span in days, score drift, feature drift) of the live window."""
        ref = model.reference
        names = [f for f in model.features if ref is not None and f in ref.features]
        present = [f for f in names if f in available]
        cells = [
            "count(*)",
            "count(*) FILTER (WHERE is_fraud)",
            "epoch(max(CAST(timestamp AS TIMESTAMPTZ)))"
            " - epoch(min(CAST(timestamp AS TIMESTAMPTZ)))",
        ]
        targets = [(f, ref.features[f]) for f in present] if ref is not None else []
        if ref is not None and ref.score is not None and "fraud_score" in available:
            targets.append(("fraud_score", ref.score))
        cells += [_bins_sql(name, bins) for name, bins in targets]
        row = self.rows(f"SELECT {', '.join(cells)} FROM enriched_transactions WHERE {where}")[0]
        total, alerts, span_s = int(row[0] or 0), int(row[1] or 0), float(row[2] or 0.0)
        found = {
            name: _drift(name, bins, total, row[3 + i]) for i, (name, bins) in enumerate(targets)
        }
        features = [
            found.get(f) or Drift(f, None, None, note="not in the enriched Parquet") for f in names
        ]
        if ref is not None:
            features += [
                Drift(f, None, None, note="not in the reference")
                for f in model.features
                if f not in ref.features
            ]
        return total, alerts, span_s / _DAY_S, found.get("fraud_score"), features

    def score_histogram(self, where: str) -> list[int]:
        rows = self.rows(
            f"SELECT least(CAST(floor(fraud_score * {SCORE_BUCKETS}) AS INTEGER), "
            f"{SCORE_BUCKETS - 1}) AS bucket, count(*) FROM enriched_transactions "
            f"WHERE {where} AND fraud_score >= 0 GROUP BY bucket"
        )
        out = [0] * SCORE_BUCKETS
        for bucket, n in rows:
            if bucket is not None and 0 <= bucket < SCORE_BUCKETS:
                out[int(bucket)] = int(n)
        return out

    def alerts_per_hour(self, time_column: str, where: str) -> list[HourAlerts]:
        hours = max(1, math.ceil(self.hours))
        now = self.now.timestamp()
        ago = f"CAST(floor(({now!r} - epoch({_quoted(time_column)})) / 3600) AS INTEGER)"
        rows = self.rows(
            f"SELECT {ago} AS ago, count(*), count(*) FILTER (WHERE is_fraud) "
            f"FROM enriched_transactions WHERE {where} GROUP BY ago"
        )
        found = {int(a): (int(n), int(k)) for a, n, k in rows if a is not None}
        return [
            HourAlerts(h, *found.get(h, (0, 0)))
            for h in range(hours - 1, -1, -1)  # oldest first, as a sparkline reads
        ]

    def precision(
        self, label_columns: set[str], maturity_days: float, live: str, days: int
    ) -> tuple[list[DayPrecision], int, int]:
        """Per event day, and the live model's (resolved, confirmed) over its last ``days``."""
        from rtfd.query.labels import effective_labels_sql

        cutoff = self.now - timedelta(days=maturity_days)
        recent = self.now - timedelta(days=days)
        resolved = f"(lb.label IS NOT NULL OR al.ts <= {_stamp(cutoff)})"
        mine = f"al.model_version = '{live.replace(chr(39), chr(39) * 2)}'"
        mine += f" AND al.ts > {_stamp(recent)}"
        sql = f"""
            WITH lb AS ({effective_labels_sql(label_columns, source="labels")}),
            al AS (
                SELECT transaction_id, any_value(CAST(timestamp AS TIMESTAMPTZ)) AS ts,
                       any_value(model_version) AS model_version
                FROM enriched_transactions WHERE is_fraud GROUP BY transaction_id
            )
            SELECT CAST(floor(epoch(al.ts) / {_DAY_S}) AS BIGINT) AS day, count(*),
                   count(*) FILTER (WHERE {resolved}),
                   count(*) FILTER (WHERE {resolved} AND lb.label = 1),
                   count(*) FILTER (WHERE lb.source = 'analyst'),
                   count(*) FILTER (WHERE {resolved} AND {mine}),
                   count(*) FILTER (WHERE {resolved} AND {mine} AND lb.label = 1)
            FROM al LEFT JOIN lb USING (transaction_id)
            WHERE al.ts IS NOT NULL
            GROUP BY day ORDER BY day DESC LIMIT {PRECISION_DAYS}
        """
        rows = self.rows(sql)
        epoch = date(1970, 1, 1)
        per_day = [
            DayPrecision(epoch + timedelta(days=int(d)), int(n), int(r), int(c), int(a))
            for d, n, r, c, a, _, _ in reversed(rows)
        ]
        return per_day, sum(int(r[5]) for r in rows), sum(int(r[6]) for r in rows)


def build_report(
    settings: Settings,
    *,
    hours: float = DEFAULT_HOURS,
    now: datetime | None = None,
    query: QueryRunner | None = None,
    rule: RetrainRule | None = None,
) -> MonitorReport:
    """Read the lake and the registry into a report (blocking: call it from a worker).

    ``query`` defaults to a fresh :class:`~rtfd.query.service.QueryService`, closed after.
    Raises :class:`MonitorError` when there is no live model or no scored transaction yet.
    """
    from rtfd.lake import visible_files

    rule = rule or RetrainRule()
    now = now or datetime.now(UTC)
    model = live_model(settings)
    if not visible_files(settings.enriched_dir):
        raise MonitorError(
            f"no scored transactions under {settings.enriched_dir} yet: start the stream "
            "(`rtfd up` or `rtfd tui`)"
        )
    own = query is None
    if query is None:
        from rtfd.query.service import QueryService

        query = QueryService(settings)
    try:
        return _read(settings, query, model, now, hours, rule)
    finally:
        if own:
            query.close()  # type: ignore[attr-defined]


def _read(
    settings: Settings,
    query: QueryRunner,
    model: LiveModel,
    now: datetime,
    hours: float,
    rule: RetrainRule,
) -> MonitorReport:
    lake = _Lake(query, now, hours)
    available = lake.columns("enriched_transactions")
    # Lakes written before processed_at existed fall back to event time.
    time_column = "processed_at" if "processed_at" in available else "timestamp"
    where = lake.window(time_column)
    rows, alerts, span_days, score, features = lake.drift(model, available, where)
    per_day, resolved, confirmed = lake.precision(
        lake.columns("labels"), settings.label_maturity_days, model.version, rule.days
    )
    precision = confirmed / resolved if resolved else None
    advice = advise(
        Evidence(
            window_rows=rows,
            event_span_days=span_days,
            feature_psi=[(d.name, d.psi) for d in features],
            score_psi=score.psi if score else None,
            has_reference=model.reference is not None,
            precision=precision,
            resolved=resolved,
            validation_precision=model.validation_precision,
        ),
        rule,
    )
    return MonitorReport(
        generated_at=now,
        model_version=model.version,
        threshold=model.threshold,
        window_hours=hours,
        window_rows=rows,
        window_alerts=alerts,
        event_span_days=span_days,
        reference_note=model.reference_note,
        score=score,
        features=sorted(features, key=lambda d: (d.psi is None, -(d.psi or 0.0), d.name)),
        score_histogram=lake.score_histogram(where),
        alerts_per_hour=lake.alerts_per_hour(time_column, where),
        precision_per_day=per_day,
        precision_7d=precision,
        resolved_7d=resolved,
        validation_precision=model.validation_precision,
        advice=advice,
        rule=rule,
    )
