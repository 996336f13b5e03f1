"""What the TUI needs from the rest of rtfd, as small interfaces, and the real implementations.

The app talks to the supervisor, the query service, the model registry and the alert consumer
only through these shapes, so Pilot tests can swap any of them for a fake. The real modules are
imported lazily: none of them is needed to draw the screen.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rtfd.tui.format import ModelRow, number

if TYPE_CHECKING:
    from rtfd.config import Settings
    from rtfd.ml.registry import Promotion
    from rtfd.query.labels import AnalystDecision
    from rtfd.supervisor import ComponentStatus, Event

log = logging.getLogger(__name__)


class SupervisorLike(Protocol):
    """The part of :class:`rtfd.supervisor.Supervisor` the TUI uses."""

    settings: Settings
    broker: Any
    generator: Any
    stream: Any

    def subscribe(self, fn: Callable[[Event], None]) -> None: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = 15.0) -> None: ...
    def toggle_generator(self) -> bool: ...
    def set_generator_rate(self, rate: float) -> float: ...
    def retrain(self, *, mode: str | None = None, algo: str | None = None) -> Any: ...
    def statuses(self) -> dict[str, ComponentStatus]: ...
    def model_summary(self, version: str | None = None) -> str: ...
    def generator_summary(self) -> str: ...
    def publish_label(self, decision: AnalystDecision) -> dict[str, Any]: ...

    @property
    def training(self) -> bool: ...


class QueryResultLike(Protocol):
    """``rtfd.query.service.QueryResult``: capped rows plus the total row count."""

    @property
    def columns(self) -> list[str]: ...
    @property
    def rows(self) -> list[tuple[Any, ...]]: ...
    @property
    def row_count(self) -> int: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def elapsed_s(self) -> float: ...


class QueryBackend(Protocol):
    """The read-only DuckDB service (``rtfd.query.service.QueryService``)."""

    def run(self, sql: str, limit: int | None = None) -> QueryResultLike: ...
    def examples(self) -> dict[str, str]: ...
    def export_csv(self, sql: str, path: Path | str) -> int: ...
    def close(self) -> None: ...


class AlertFeedLike(Protocol):
    """The consumer of ``fraud_alerts`` (``rtfd.tui.alerts.AlertFeed``)."""

    def start(self) -> None: ...
    def stop(self, timeout: float = 3.0) -> None: ...


AlertsCallback = Callable[[list[dict[str, Any]]], None]
StateCallback = Callable[[bool, str], None]
AlertFeedFactory = Callable[[dict[str, str], AlertsCallback, StateCallback], AlertFeedLike]


def real_query_service(settings: Settings) -> QueryBackend:
    from rtfd.query.service import QueryService

    return QueryService(settings)


def real_alert_feed(
    config: dict[str, str], on_alerts: AlertsCallback, on_state: StateCallback
) -> AlertFeedLike:
    from rtfd.tui.alerts import AlertFeed

    return AlertFeed(config, on_alerts, on_state)


@dataclass(frozen=True)
class ModelCatalog:
    """The registry's versions, newest first, and the live one."""

    rows: list[ModelRow] = field(default_factory=list)
    current: str | None = None
    summary: str = ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(registry: Any, version: str, models_dir: Path) -> dict[str, Any]:
    """What the panel shows of one version, from small JSON files only (nothing unpickled).

    The manifest is read through the registry, which checks its digest: a tampered version
    shows with a note instead of metrics that may be lies.
    """
    info: dict[str, Any] = {}
    manifest = getattr(registry, "manifest", None)
    if callable(manifest):
        try:
            doc = manifest(version)
        except Exception as e:  # one unreadable version must not hide the others
            return {"note": getattr(e, "message", str(e))}
        info.update({k: doc.get(k) for k in ("created_at", "mode", "algo") if doc.get(k)})
    vdir = models_dir / version
    threshold = _read_json(vdir / "threshold.json")
    info.setdefault("mode", threshold.get("mode"))
    info.setdefault("algo", threshold.get("algo"))
    info["threshold"] = threshold.get("threshold")
    info["metrics"] = _read_json(vdir / "metrics.json")
    return info


def load_model_catalog(settings: Settings) -> ModelCatalog:
    """Read every version's metadata from the registry (blocking: call from a worker)."""
    from rtfd.ml.registry import Registry

    models_dir = settings.models_dir
    registry = Registry(models_dir)
    current = registry.current()
    try:
        promotions = {p.version: p for p in registry.promotions()}  # a version's latest one
    except Exception as e:  # an unreadable history.json must not hide the versions
        log.warning("model panel: promotions not shown: %s", e)
        promotions = {}
    rows = []
    for version in reversed(registry.versions()):
        info = _describe(registry, version, models_dir)
        metrics = info.get("metrics")
        created = info.get("created_at") or "-"
        decided_by, promotion = promotion_texts(promotions.get(version))
        rows.append(
            ModelRow(
                version=version,
                live=version == current,
                algo=str(info.get("algo") or "-"),
                mode=str(info.get("mode") or "-"),
                threshold=number(info.get("threshold")),
                metrics=metrics if isinstance(metrics, Mapping) else {},
                created=str(created)[:19].replace("T", " "),
                note=str(info.get("note", "")),
                decided_by=decided_by,
                promotion=promotion,
            )
        )
    return ModelCatalog(rows, current)


def promotion_texts(promotion: Promotion | None) -> tuple[str, str]:
    """What the model panel shows of the promotion that made a version live: the deciding
    holdout's "challenger AP vs champion AP" for the table, and the whole comparison (both
    holdouts) with when and why, for the detail line; empty for a version never promoted."""
    if promotion is None:
        return "", ""
    comparison = promotion.comparison
    deciding = comparison.deciding if comparison is not None else None
    if promotion.forced:
        short = "forced"
    elif deciding is not None:
        short = f"{number_text(deciding.challenger_ap)} vs {number_text(deciding.champion_ap)}"
    else:
        short = "first" if comparison is None else "no holdout"
    when = (promotion.at or "")[:19].replace("T", " ")
    parts = [f"promoted {when}".strip()]
    if promotion.reason:
        parts.append(promotion.reason)
    if comparison is not None:
        parts.append(f"challenger vs {comparison.champion}: {comparison.describe()}")
    return short, " · ".join(parts)


def number_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def rollback_model(settings: Settings) -> str | None:
    """Make the previously promoted version live again; returns its name.

    The stream notices ``models/CURRENT`` change and scores the next batch with it.
    """
    from rtfd.ml.registry import Registry

    return Registry(settings.models_dir).rollback()


@dataclass
class Services:
    """Factories of everything the app reaches besides the supervisor (tests replace them)."""

    query_service: Callable[[Settings], QueryBackend] = real_query_service
    alert_feed: AlertFeedFactory | None = real_alert_feed
    model_catalog: Callable[[Settings], ModelCatalog] = load_model_catalog
    rollback: Callable[[Settings], str | None] = rollback_model
