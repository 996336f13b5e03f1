"""The console's live bookkeeping, without a screen: what the Live tab and the status bar show is
derived here from the supervisor's events, so it can be tested with a fake clock and no Textual.

* :class:`LiveStats` — each component's latest status, dead letters, the alert rate over a
  sliding window, when the stream went quiet (Spark reports nothing while no input arrives),
  and the live model's threshold;
* :class:`ScoredPoller` — the newest scored rows read from the lake when the stream's progress
  carries none (the real stream never sends rows with its progress).

Nothing here imports textual; the app calls these from its handlers and workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rtfd.components import ComponentStatus, State

if TYPE_CHECKING:
    from rtfd.stream.progress import StreamProgress
    from rtfd.supervisor import StreamProgressEvent
    from rtfd.tui.backends import QueryBackend

log = logging.getLogger(__name__)

#: After this long (or two batch durations, whichever is longer) without a batch, a running
#: stream shows as idle with an input rate of 0.
STREAM_IDLE_S = 10.0
ALERT_RATE_WINDOW_S = 60.0
#: Progress records with ``recent`` rows make the lake poll unnecessary for this long.
RECENT_FRESH_S = 5.0
#: The supervisor reports a failure as a status change and as an error notice: the notice that
#: follows a failure toast within this long is the same news.
SAME_FAILURE_S = 2.0
SCORED_POLL_ROWS = 50
SCORED_COLUMNS = "transaction_id, user_id, amount, fraud_score, is_fraud, model_version, timestamp"


@dataclass(frozen=True)
class ProgressBatch:
    """What a drained batch of progress events adds to the charts and the scored table."""

    throughput: list[float | None]
    latency_p99_ms: list[float | None]
    recent: list[Mapping[str, Any]]


class LiveStats:
    """Figures kept across events. Not thread-safe: the UI thread alone calls it."""

    def __init__(
        self, statuses: Mapping[str, ComponentStatus], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.statuses = dict(statuses)
        self._last_failure = -1e9
        self.latest_progress: StreamProgress | None = None
        self.dead_letters = 0
        self.threshold: float | None = None
        self._alert_times: deque[tuple[float, int]] = deque()
        self._last_recent = -1e9
        self._last_progress = clock()

    # -- components ----------------------------------------------------------------------------
    def update_status(self, status: ComponentStatus) -> tuple[bool, bool]:
        """Record a component's status; returns (its state moved, it is a new failure to
        toast)."""
        old = self.statuses.get(status.name)
        self.statuses[status.name] = status
        moved = old is None or old.state != status.state
        toast = moved and status.state == State.FAILED
        if toast:
            self._last_failure = self._clock()
        return moved, toast

    def is_up(self, name: str) -> bool:
        status = self.statuses.get(name)
        return status is not None and status.state == State.RUNNING

    def repeats_failure(self, level: str) -> bool:
        """An error notice that only repeats the failure just toasted."""
        return level == "error" and self._clock() - self._last_failure < SAME_FAILURE_S

    # -- stream progress ---------------------------------------------------------------------
    def add_progress(self, events: Sequence[StreamProgressEvent]) -> ProgressBatch:
        """Fold a batch of progress events in; returns what the charts and table gain."""
        recent: list[Mapping[str, Any]] = []
        for event in events:
            self.dead_letters += event.progress.dead_letters
            recent.extend(event.recent)
        if events:
            self.latest_progress = events[-1].progress
            self._last_progress = self._clock()
        if recent:
            self._last_recent = self._clock()
        return ProgressBatch(
            throughput=[e.progress.input_rows_per_s for e in events],
            latency_p99_ms=[e.progress.latency_p99_ms for e in events],
            recent=recent,
        )

    def stream_idle_s(self) -> float | None:
        """Seconds since the last batch when the running stream has gone quiet, else None."""
        if not self.is_up("stream") or self.latest_progress is None:
            return None
        batch_s = self.latest_progress.batch_duration_ms / 1000
        quiet = self._clock() - self._last_progress
        return quiet if quiet > max(STREAM_IDLE_S, 2 * batch_s) else None

    @property
    def skipping(self) -> bool:
        """The stream reported offsets retention deleted before it read them."""
        return bool(self.latest_progress and self.latest_progress.skipped_offsets)

    def recent_fresh(self) -> bool:
        """Progress brought scored rows lately: no need to read them from the lake."""
        return self._clock() - self._last_recent < RECENT_FRESH_S

    # -- alerts ------------------------------------------------------------------------------
    def add_alerts(self, live_count: int, threshold: float | None) -> None:
        """Count ``live_count`` new alerts now; the first threshold an alert carries stands in
        until the model's own is known."""
        if live_count:
            self._alert_times.append((self._clock(), live_count))
        if threshold is not None and self.threshold is None:
            self.threshold = threshold

    def alerts_per_min(self) -> float:
        """Alerts per minute over the last :data:`ALERT_RATE_WINDOW_S` seconds."""
        now = self._clock()
        while self._alert_times and now - self._alert_times[0][0] > ALERT_RATE_WINDOW_S:
            self._alert_times.popleft()
        return sum(n for _, n in self._alert_times) * 60.0 / ALERT_RATE_WINDOW_S


def scored_rows_sql(since: object | None) -> str:
    """The newest scored rows, after ``since`` (a timestamp already shown) when given."""
    where = ""
    if since is not None:
        text = since.isoformat() if hasattr(since, "isoformat") else str(since)
        where = f"WHERE timestamp > TIMESTAMPTZ '{text}'"
    return (
        f"SELECT {SCORED_COLUMNS} FROM enriched_transactions {where} "
        f"ORDER BY timestamp DESC LIMIT {SCORED_POLL_ROWS}"
    )


class ScoredPoller:
    """Reads the newest scored rows through the read-only query service, from a worker thread.

    The service is opened on first use and kept; :meth:`close` (at quit) waits for a poll in
    flight for a moment and then closes it, and no poll runs after it.
    """

    def __init__(self, open_service: Callable[[], QueryBackend]) -> None:
        self._open = open_service
        self._service: QueryBackend | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.mark: object | None = None

    def poll(self) -> list[dict[str, Any]]:
        """Rows newer than the last poll's newest (empty when there is none yet, or no lake)."""
        try:
            with self._lock:
                if self._closed:
                    return []
                if self._service is None:
                    self._service = self._open()
                result = self._service.run(scored_rows_sql(self.mark), limit=SCORED_POLL_ROWS)
            rows = [dict(zip(result.columns, r, strict=False)) for r in result.rows]
        except Exception as e:  # no Parquet yet, or a schema in flux: try again next time
            log.debug("scored-rows poll: %s", e)
            return []
        self.advance(rows)
        return rows

    def advance(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Remember the newest timestamp shown, so the next poll reads only what is newer."""
        stamps = [r["timestamp"] for r in rows]
        if stamps:
            self.mark = max(stamps)

    def close(self, timeout: float = 1.0) -> None:
        self._closed = True  # no poll starts from now on, even if the lock stays busy
        if not self._lock.acquire(timeout=timeout):  # a poll in flight: the exit closes it
            return
        try:
            if self._service is not None:
                self._service.close()
                self._service = None
        finally:
            self._lock.release()
