"""Typed messages the TUI's background threads post, and the thread-safe facade that posts them.

Backend threads never touch widgets: they call :class:`Bridge` methods, which only
``post_message``. High-rate sources (stream progress, alerts, log lines) go through an
:class:`Inbox`: items are buffered under a lock and at most one wake-up message is queued at a
time, so a flood cannot fill Textual's queue; the handler drains the whole buffer at once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from textual.message import Message

from rtfd.supervisor import (
    ComponentChanged,
    Event,
    ModelLive,
    Notice,
    StreamProgressEvent,
    TrainingProgress,
)

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from rtfd.components import ComponentStatus, ModelInfo
    from rtfd.ml.train import TrainResult
    from rtfd.tui.backends import ModelCatalog, QueryResultLike

T = TypeVar("T")
Handler = TypeVar("Handler", bound=Callable[..., Any])


def while_running(handler: Handler) -> Handler:
    """Skip a message handler once the app is shutting down (its widgets may be gone)."""

    @functools.wraps(handler)
    def wrapper(self: Any, *args: Any) -> Any:
        if not self.is_running:
            return None
        return handler(self, *args)

    return cast("Handler", wrapper)


class Inbox(Generic[T]):
    """A bounded, thread-safe buffer that wakes its consumer with one message at a time."""

    def __init__(self, wake: Callable[[], object], cap: int) -> None:
        self._wake = wake
        self._cap = cap
        self._items: list[T] = []
        self._pending = False
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, *items: T) -> None:
        with self._lock:
            self._items.extend(items)
            overflow = len(self._items) - self._cap
            if overflow > 0:  # keep the newest: the screen only shows recent history anyway
                del self._items[:overflow]
                self.dropped += overflow
            if self._pending:
                return
            self._pending = True
        self._wake()

    def drain(self) -> list[T]:
        with self._lock:
            items, self._items = self._items, []
            self._pending = False
        return items


# -- supervisor events -------------------------------------------------------------------------
class ComponentUpdate(Message):
    """A component's status changed."""

    def __init__(self, status: ComponentStatus) -> None:
        super().__init__()
        self.status = status


class ProgressReady(Message):
    """Stream progress records wait in the progress inbox."""


class TrainingUpdate(Message):
    """Training progress (only the newest matters, so it replaces a pending one), in
    :data:`rtfd.progress.Progress`'s terms."""

    def __init__(self, message: str, fraction: float | None) -> None:
        super().__init__()
        self.message = message
        self.fraction = fraction  # None: this step's share of the work is unknown

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TrainingUpdate)


class NoticePosted(Message):
    """Something to show once as a notification."""

    def __init__(self, level: str, text: str) -> None:
        super().__init__()
        self.level = level
        self.text = text


# -- alert consumer ----------------------------------------------------------------------------
class AlertsReady(Message):
    """Alerts wait in ``inbox``."""

    def __init__(self, inbox: Inbox[dict[str, Any]]) -> None:
        super().__init__()
        self.inbox = inbox


class AlertFeedState(Message):
    def __init__(self, ok: bool, detail: str) -> None:
        super().__init__()
        self.ok = ok
        self.detail = detail


# -- app workers -------------------------------------------------------------------------------
class StartDone(Message):
    """Supervisor.start() returned (``error`` set when it raised)."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__()
        self.error = error


class StopDone(Message):
    """Everything the app started is stopped: the app may exit."""


class RetrainDone(Message):
    def __init__(self, result: TrainResult | None = None, error: str | None = None) -> None:
        super().__init__()
        self.result = result
        self.error = error


class ModelUpdate(Message):
    """The live model: at start, after a retrain, or re-read after a rollback."""

    def __init__(self, info: ModelInfo) -> None:
        super().__init__()
        self.info = info


class ScoredRows(Message):
    """Newest scored rows polled from the enriched Parquet (when progress carries none)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.rows = rows


# -- panels ------------------------------------------------------------------------------------
class QueryDone(Message):
    """A query finished; ``cells`` are its rows already formatted for the table."""

    def __init__(self, sql: str, result: QueryResultLike, cells: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self.sql = sql
        self.result = result
        self.cells = cells


class QueryFailed(Message):
    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title = title
        self.message = message


class ExportDone(Message):
    def __init__(self, path: str, rows: int) -> None:
        super().__init__()
        self.path = path
        self.rows = rows


class CatalogLoaded(Message):
    def __init__(self, catalog: ModelCatalog) -> None:
        super().__init__()
        self.catalog = catalog


class LogLines(Message):
    """New complete lines of the log file and where the next read starts."""

    def __init__(self, lines: list[str], offset: int, reset: bool = False) -> None:
        super().__init__()
        self.lines = lines
        self.offset = offset
        self.reset = reset


class Bridge:
    """The one thread-safe facade between backend threads and the app: it only posts messages."""

    def __init__(self, target: MessagePump, alerts_to: MessagePump | None = None) -> None:
        """Supervisor events go to ``target``; the alert feed's to ``alerts_to`` (the panel
        that shows them), or to ``target`` too."""
        self._target = target
        self._alerts_to = feed = alerts_to or target
        self.progress: Inbox[StreamProgressEvent] = Inbox(
            lambda: target.post_message(ProgressReady()), cap=600
        )
        self.alerts: Inbox[dict[str, Any]] = Inbox(
            lambda: feed.post_message(AlertsReady(self.alerts)), cap=2000
        )

    def __call__(self, event: Event) -> None:
        """Supervisor subscriber (called from its threads)."""
        if isinstance(event, StreamProgressEvent):
            self.progress.put(event)
        elif isinstance(event, ComponentChanged):
            self._target.post_message(ComponentUpdate(event.status))
        elif isinstance(event, ModelLive):
            self._target.post_message(ModelUpdate(event.info))
        elif isinstance(event, TrainingProgress):
            self._target.post_message(TrainingUpdate(event.message, event.fraction))
        elif isinstance(event, Notice):
            self._target.post_message(NoticePosted(event.level, event.message))

    def on_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self.alerts.put(*alerts)

    def on_alert_state(self, ok: bool, detail: str) -> None:
        self._alerts_to.post_message(AlertFeedState(ok, detail))
