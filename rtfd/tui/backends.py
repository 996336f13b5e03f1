"""What the TUI needs from the rest of rtfd, as small interfaces, and the real implementations.

The app talks to the supervisor, the query service, the model registry and the alert consumer
only through these shapes, so Pilot tests can swap any of them for a fake. The real modules are
imported lazily: none of them is needed to draw the screen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rtfd.tui.alerts import AlertsCallback, StateCallback
from rtfd.tui.format import ModelRow

if TYPE_CHECKING:
    from rtfd.components import ComponentStatus, GeneratorInfo, ModelInfo
    from rtfd.config import Settings
    from rtfd.ml.registry import Promotion
    from rtfd.ml.train import TrainResult
    from rtfd.query.labels import AnalystDecision
    from rtfd.supervisor import Event

log = logging.getLogger(__name__)


class SupervisorLike(Protocol):
    """The part of :class:`rtfd.supervisor.Supervisor` the TUI uses: control methods, typed
    snapshots and events; never the components themselves."""

    settings: Settings

    def subscribe(self, fn: Callable[[Event], None]) -> None: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = 15.0) -> None: ...
    def toggle_generator(self) -> bool: ...
    def set_generator_rate(self, rate: float) -> float: ...
    def retrain(self, *, mode: str | None = None, algo: str | None = None) -> TrainResult: ...
    def statuses(self) -> dict[str, ComponentStatus]: ...
    def model_info(self) -> ModelInfo | None: ...
    def generator_info(self) -> GeneratorInfo | None: ...
    def client_config(self) -> dict[str, str]: ...
    def publish_label(self, decision: AnalystDecision) -> dict[str, Any]: ...

    @property
    def training(self) -> bool: ...


class ConsoleLike(Protocol):
    """What the panels need of the app: its settings, backends and supervisor (a Protocol, so
    the panels do not import the app that composes them)."""

    settings: Settings
    services: Services
    supervisor: SupervisorLike

    @property
    def training_now(self) -> bool: ...
    def model_changed(self) -> None: ...


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


def load_model_catalog(settings: Settings) -> ModelCatalog:
    """Every version as the model panel shows it, through the registry's read API (blocking:
    call from a worker). A version that cannot be read shows with a note instead of figures."""
    from rtfd.ml.registry import Registry

    registry = Registry(settings.models_dir)
    try:
        promotions = {p.version: p for p in registry.promotions()}  # a version's latest one
    except Exception as e:  # an unreadable history.json must not hide the versions
        log.warning("model panel: promotions not shown: %s", e)
        promotions = {}
    rows = []
    for info in registry.catalog():
        decided_by, promotion = promotion_texts(promotions.get(info.version))
        rows.append(
            ModelRow(
                version=info.version,
                live=info.live,
                algo=info.algo or "-",
                mode=info.mode or "-",
                threshold=info.threshold,
                metrics=info.metrics,
                created=(info.created_at or "-")[:19].replace("T", " "),
                note=info.note,
                decided_by=decided_by,
                promotion=promotion,
            )
        )
    return ModelCatalog(rows, registry.current())


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
