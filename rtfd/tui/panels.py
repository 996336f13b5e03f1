"""The four tabs of the console: live view, DuckDB query panel, model registry, log tail."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Log, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from rtfd.tui.format import (
    ModelRow,
    field,
    fmt_metric,
    fmt_ms,
    fmt_rate,
    number,
    result_cells,
)
from rtfd.tui.messages import (
    AlertFeedState,
    AlertsReady,
    CatalogLoaded,
    ExportDone,
    LogLines,
    QueryDone,
    QueryFailed,
    ScoredRows,
    while_running,
)
from rtfd.tui.triage import CaseBook
from rtfd.tui.widgets import AlertsTable, MetricChart, ScoredTable

if TYPE_CHECKING:
    from rtfd.tui.backends import ConsoleLike, ModelCatalog, QueryBackend
    from rtfd.tui.live_stats import LiveStats, ProgressBatch, ScoredPoller

log = logging.getLogger(__name__)

SCORED_CAP = 200
ALERTS_CAP = 200
ALERT_IDS_REMEMBERED = 5000
SCORED_POLL_S = 2.0


class LivePanel(Vertical):
    """Scored transactions, the alerts feed and the throughput/latency/alert-rate charts."""

    def __init__(self, stats: LiveStats, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stats = stats
        self.scored: deque[Mapping[str, Any]] = deque(maxlen=SCORED_CAP)
        self.alerts: deque[Mapping[str, Any]] = deque(maxlen=ALERTS_CAP)
        self._seen_ids: deque[str] = deque(maxlen=ALERT_IDS_REMEMBERED)
        self._seen: set[str] = set()
        self.threshold: float | None = None
        self.scored_total = 0
        self.alerts_total = 0
        self._feed_problem: str | None = None
        self.scored_title = Label("Scored transactions · newest first", id="scored-title")
        self.alerts_title = Label("Alerts · fraud_alerts topic", id="alerts-title")
        self.scored_table = ScoredTable(id="scored")
        self.alerts_table = AlertsTable(id="alerts")
        #: The analyst's verdicts on the alerts (their state in the list).
        self.cases = CaseBook()
        self.charts = {
            "throughput": MetricChart("input rate", fmt_rate, id="chart-throughput"),
            "latency": MetricChart("latency p99", fmt_ms, id="chart-latency"),
            "alerts": MetricChart("alert rate", lambda v: fmt_rate(v, "/min"), id="chart-alerts"),
        }

    def compose(self) -> ComposeResult:
        with Horizontal(id="live-tables"):
            with Vertical(id="scored-box", classes="box"):
                yield self.scored_title
                yield self.scored_table
            with Vertical(id="alerts-box", classes="box"):
                yield self.alerts_title
                yield self.alerts_table
        with Horizontal(id="charts"):
            yield from self.charts.values()

    def add_scored(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows in any order; shown newest first (by timestamp when present)."""
        new = sorted(rows, key=lambda r: str(field(r, "timestamp", "")))
        if not new:
            return
        self.scored_total += len(new)
        self.scored.extendleft(new)
        self.scored_table.show_rows(self.scored, self.threshold)
        self.scored_title.update(f"Scored transactions · newest first · {self.scored_total:,} seen")

    def add_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> int:
        """Add alerts, dropping replays of one already shown (same alert_id); returns live ones."""
        live = 0
        fresh = []
        # A batch mixes partitions: order it by event time so the feed reads newest first.
        for alert in sorted(alerts, key=lambda a: str(field(a, "timestamp", ""))):
            key = str(field(alert, "alert_id") or field(alert, "transaction_id") or "")
            if key:
                if key in self._seen:
                    continue
                if len(self._seen_ids) == self._seen_ids.maxlen:
                    self._seen.discard(self._seen_ids[0])
                self._seen_ids.append(key)
                self._seen.add(key)
            fresh.append(alert)
            live += 0 if field(alert, "_backfill") else 1
        if fresh:
            self.alerts_total += len(fresh)
            self.alerts.extendleft(fresh)
            self.show_alert_states()
            self._alerts_heading()
        return live

    def on_mount(self) -> None:
        self._restore_decisions()

    @work(thread=True, exclusive=True, exit_on_error=False, group="decisions")
    def _restore_decisions(self) -> None:
        """Analysts' verdicts of earlier sessions, from the labels table (once, at start)."""
        from rtfd.tui.triage import load_decisions

        app = cast("ConsoleLike", self.app)
        try:
            service = app.services.query_service(app.settings)
        except Exception:
            return  # no lake yet: every alert starts open
        try:
            rows = load_decisions(service)
        finally:
            service.close()
        if rows:
            self.app.call_from_thread(self._restored, rows)

    def _restored(self, rows: list[dict[str, Any]]) -> None:
        if self.cases.restore(rows):
            self.show_alert_states()

    def show_alert_states(self) -> None:
        """Redraw the alerts with each one's triage state (open, confirmed, cleared)."""
        self.alerts_table.show_alerts(self.alerts, self.cases.state)

    @on(DataTable.RowSelected, "#alerts")
    def _open_case(self, event: DataTable.RowSelected) -> None:
        """Enter on an alert opens its case; its state shows when the case closes."""
        if not 0 <= event.cursor_row < len(self.alerts):
            return
        from rtfd.tui.case import CaseScreen

        app = cast("ConsoleLike", self.app)
        screen = CaseScreen(
            self.alerts[event.cursor_row],
            self.cases,
            publish=app.supervisor.publish_label,
            query_service=lambda: app.services.query_service(app.settings),
        )
        self.app.push_screen(screen, lambda _: self.show_alert_states())

    @on(AlertsReady)
    @while_running
    def _alerts_ready(self, message: AlertsReady) -> None:
        alerts = message.inbox.drain()
        if alerts:
            live = self.add_alerts(alerts)
            self.stats.add_alerts(live, number(field(alerts[-1], "threshold")))

    @on(AlertFeedState)
    @while_running
    def _alert_feed_state(self, message: AlertFeedState) -> None:
        self.feed_state(message.ok, message.detail)

    def feed_state(self, ok: bool, detail: str) -> None:
        """Mark the alerts title red, with the reason, while the consumer cannot read."""
        self._feed_problem = None if ok else detail
        if not ok:
            log.info("alert feed: %s", detail)
        self.alerts_title.set_class(not ok, "-failed")
        self._alerts_heading()

    def _alerts_heading(self) -> None:
        if self._feed_problem:
            suffix = f" · {self._feed_problem}"
        elif self.alerts_total:
            suffix = f" · {self.alerts_total:,} received"
        else:
            suffix = ""
        self.alerts_title.update(f"Alerts · fraud_alerts topic{suffix}")

    def chart(self, name: str) -> MetricChart:
        return self.charts[name]

    def show_progress(self, batch: ProgressBatch) -> None:
        """Chart a batch of stream progress; show the scored rows it carries."""
        self.chart("throughput").push(*batch.throughput)
        self.chart("latency").push(*batch.latency_p99_ms)
        if batch.recent:
            self.add_scored(batch.recent)

    # -- scored rows from the lake, when the stream's progress carries none ----------------------
    def poll_scored(
        self, poller: ScoredPoller, *, wanted: Callable[[], bool], ended: Callable[[], bool]
    ) -> None:
        """Every :data:`SCORED_POLL_S`, read the newest scored rows while ``wanted()`` (in a
        worker, one poll at a time: each schedules the next); stop for good once ``ended()``."""
        self._poller, self._poll_wanted, self._poll_ended = poller, wanted, ended
        self.set_timer(SCORED_POLL_S, self._maybe_poll)

    def _maybe_poll(self) -> None:
        if self._poll_ended():
            return
        if not self._poll_wanted():
            self.set_timer(SCORED_POLL_S, self._maybe_poll)
            return
        self._poll()

    @work(thread=True, exclusive=True, exit_on_error=False, group="scored-poll")
    def _poll(self) -> None:
        self.post_message(ScoredRows(self._poller.poll()))

    @on(ScoredRows)
    @while_running
    def _scored(self, message: ScoredRows) -> None:
        if message.rows:
            self.add_scored(message.rows)
        if not self._poll_ended():
            self.set_timer(SCORED_POLL_S, self._maybe_poll)


class QueryPanel(Horizontal):
    """SQL over the enriched transactions, labels and alerts (read-only DuckDB views)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5,ctrl+j", "run_query", "Run SQL", priority=True),
        Binding("ctrl+s", "export", "Export CSV", priority=True),
        Binding("escape", "leave_editor", "Leave editor", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._service: QueryBackend | None = None
        self._service_lock = threading.Lock()  # one DuckDB call at a time on the connection
        self._examples: dict[str, str] = {}
        self.last_sql: str | None = None
        self.running = False

    @property
    def rtfd(self) -> ConsoleLike:
        return cast("ConsoleLike", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="examples-box", classes="box"):
            yield Label("Saved queries", classes="box-title")
            yield OptionList(id="examples")
            yield Static(
                "views: enriched_transactions, labels, alerts\n"
                "F5 / ctrl+j run · ctrl+s export · esc leave the editor · 2 back to it",
                id="query-help",
            )
        with Vertical(id="query-main"):
            yield TextArea(
                "SELECT * FROM enriched_transactions ORDER BY timestamp DESC LIMIT 100",
                id="sql",
                show_line_numbers=True,
                soft_wrap=False,
                tab_behavior="focus",
            )
            yield Label("Write SQL and press F5 (or pick a saved query).", id="query-status")
            yield DataTable(id="results", zebra_stripes=True)

    def on_mount(self) -> None:
        self._load_examples()

    def _get_service(self) -> QueryBackend:
        if self._service is None:
            self._service = self.rtfd.services.query_service(self.rtfd.settings)
        return self._service

    def close(self) -> None:
        """Close the DuckDB connection (called by the app when it stops); a query still running
        keeps it, and the process exit closes it instead of making quitting wait."""
        if not self._service_lock.acquire(timeout=1.0):
            return
        try:
            if self._service is not None:
                self._service.close()
                self._service = None
        finally:
            self._service_lock.release()

    @work(thread=True, exclusive=True, exit_on_error=False, group="query-examples")
    def _load_examples(self) -> None:
        try:
            with self._service_lock:
                examples = self._get_service().examples()
        except Exception as e:
            self.post_message(QueryFailed(_title(e, "Query service"), _message(e)))
            return
        self.app.call_from_thread(self._show_examples, examples)

    def _show_examples(self, examples: dict[str, str]) -> None:
        self._examples = dict(examples)
        options = self.query_one("#examples", OptionList)
        options.clear_options()
        options.add_options([Option(name, id=name) for name in self._examples])
        if self._examples:
            options.highlighted = 0

    @on(OptionList.OptionSelected, "#examples")
    def _pick_example(self, event: OptionList.OptionSelected) -> None:
        sql = self._examples.get(str(event.option.id))
        if sql:
            self.query_one("#sql", TextArea).text = sql
            self.action_run_query()

    def action_run_query(self) -> None:
        sql = self.query_one("#sql", TextArea).text.strip()
        if not sql:
            self._status(Text("Nothing to run: the editor is empty.", style="yellow"))
            return
        self.running = True
        self._status(Text("running…", style="italic"))
        self._run(sql)

    def action_export(self) -> None:
        if not self.last_sql:
            self.app.notify("Run a query first, then export its result.", severity="warning")
            return
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.rtfd.settings.data_dir / "exports" / f"query-{stamp}.csv"
        self._export(self.last_sql, path)

    def action_leave_editor(self) -> None:
        self.query_one("#results", DataTable).focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="query")
    def _run(self, sql: str) -> None:
        try:
            with self._service_lock:
                result = self._get_service().run(sql, limit=self.rtfd.settings.query_row_cap)
        except Exception as e:
            self.post_message(QueryFailed(_title(e, "Query error"), _message(e)))
            return
        # Cells are built here, off the event loop: a 10,000-row result stays snappy.
        cells = result_cells(result.rows)
        self.post_message(QueryDone(sql, result, cells))

    @work(thread=True, exclusive=True, exit_on_error=False, group="query-export")
    def _export(self, sql: str, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._service_lock:
                rows = self._get_service().export_csv(sql, path)
        except Exception as e:
            self.post_message(QueryFailed(_title(e, "Export failed"), _message(e)))
            return
        self.post_message(ExportDone(str(path), rows))

    @on(QueryDone)
    def _show_result(self, message: QueryDone) -> None:
        self.running = False
        self.last_sql = message.sql
        result = message.result
        table = self.query_one("#results", DataTable)
        table.clear(columns=True)
        table.add_columns(*result.columns)
        table.add_rows(message.cells)
        shown = len(message.cells)
        count = f"{result.row_count:,} rows"
        if result.truncated or shown < result.row_count:
            count += f" (showing the first {shown:,})"
        self._status(Text(f"✔ {count} · {result.elapsed_s * 1000:,.0f} ms", style="green"))
        # Read the result from the keyboard; letter and digit keys act as shortcuts again.
        table.focus()

    @on(QueryFailed)
    def _show_error(self, message: QueryFailed) -> None:
        self.running = False
        self._status(Text(f"✖ {message.title}: {message.message}", style="bold red"))
        self.app.notify(message.message, title=message.title, severity="error")

    @on(ExportDone)
    def _exported(self, message: ExportDone) -> None:
        self.app.notify(f"{message.rows:,} rows written to {message.path}", title="Exported")

    def _status(self, text: Text) -> None:
        self.query_one("#query-status", Label).update(text)


class ModelPanel(Vertical):
    """The registry: every version with its metrics, the live one marked; rollback."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("b", "rollback", "Rollback model")]

    COLUMNS = ("", "version", "algo", "mode", "threshold", "ROC AUC", "avg prec", "precision",
               "recall", "promoted: AP", "created")  # fmt: skip

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.catalog: ModelCatalog | None = None
        self.rolling_back = False

    @property
    def rtfd(self) -> ConsoleLike:
        return cast("ConsoleLike", self.app)

    def compose(self) -> ComposeResult:
        yield Label("Model registry · ● live · r retrain · b roll back", id="models-title")
        yield DataTable(id="versions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="model-detail")

    def on_mount(self) -> None:
        table = self.query_one("#versions", DataTable)
        for name in self.COLUMNS:
            table.add_column(name, key=name or "live")
        self.refresh_catalog()

    def refresh_catalog(self) -> None:
        """Reload the registry in a worker (after a start, retrain or rollback)."""
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="catalog")
    def _load(self) -> None:
        try:
            catalog = self.rtfd.services.model_catalog(self.rtfd.settings)
        except ModuleNotFoundError:
            return  # the registry is not part of this build yet: nothing to show
        except Exception as e:
            self.post_message(QueryFailed(_title(e, "Model registry"), _message(e)))
            return
        self.post_message(CatalogLoaded(catalog))

    @on(CatalogLoaded)
    def _show(self, message: CatalogLoaded) -> None:
        self.catalog = message.catalog
        table = self.query_one("#versions", DataTable)
        selected = table.cursor_row
        table.clear()
        for row in message.catalog.rows:
            table.add_row(*_model_cells(row), key=row.version)
        if message.catalog.rows:
            table.move_cursor(row=min(selected, len(message.catalog.rows) - 1))
            self._detail(message.catalog.rows[table.cursor_row])
        else:
            self.query_one("#model-detail", Static).update(
                "No model yet: the appliance trains a bootstrap model at start."
            )
        self.screen.refresh_bindings()

    @on(QueryFailed)
    def _failed(self, message: QueryFailed) -> None:
        self.rolling_back = False
        self.app.notify(message.message, title=message.title, severity="error")
        self.screen.refresh_bindings()

    @on(DataTable.RowHighlighted, "#versions")
    def _highlight(self, event: DataTable.RowHighlighted) -> None:
        if self.catalog and 0 <= event.cursor_row < len(self.catalog.rows):
            self._detail(self.catalog.rows[event.cursor_row])

    def _detail(self, row: ModelRow) -> None:
        metrics = dict(row.metrics or {})
        flat = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
        parts = [f"[b]{row.version}[/b]{'  (live)' if row.live else ''}  {row.algo} {row.mode}"]
        parts += [f"{k} [b]{_metric_text(v)}[/b]" for k, v in sorted(flat.items())]
        if row.promotion:
            # The comparison that promoted it: its own holdout's figures above may be lower.
            parts.append(escape(row.promotion))
        if row.note:
            parts.append(f"[red]{row.note}[/red]")
        self.query_one("#model-detail", Static).update("  ·  ".join(parts))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "rollback":
            catalog = self.catalog
            can = (
                catalog is not None
                and len(catalog.rows) > 1
                and not self.rolling_back
                and not self.rtfd.training_now
            )
            return True if can else None
        return True

    def action_rollback(self) -> None:
        self.rolling_back = True
        self.screen.refresh_bindings()
        self._rollback()

    @work(thread=True, exclusive=True, exit_on_error=False, group="rollback")
    def _rollback(self) -> None:
        try:
            live = self.rtfd.services.rollback(self.rtfd.settings)
        except Exception as e:
            self.post_message(QueryFailed("Rollback refused", _message(e)))
            return
        self.app.call_from_thread(self._rolled_back, live)

    def _rolled_back(self, live: str | None) -> None:
        self.rolling_back = False
        self.app.notify(f"{live or 'previous version'} is live again", title="Rolled back")
        self.rtfd.model_changed()
        self.refresh_catalog()


def _metric_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else fmt_metric(value)


def _model_cells(row: ModelRow) -> list[Any]:
    return [
        Text("●", style="bold green") if row.live else "",
        Text(row.version, style="bold" if row.live else ""),
        row.algo,
        row.mode,
        fmt_metric(row.threshold),
        fmt_metric(row.metric("auc_roc", "roc_auc", "auc")),
        fmt_metric(row.metric("average_precision", "avg_precision", "ap", "pr_auc")),
        fmt_metric(row.metric("precision")),
        fmt_metric(row.metric("recall")),
        row.decided_by or "-",
        row.created,
    ]


class LogPanel(Vertical):
    """Tails the log file: a short worker reads new bytes, then the next read is scheduled."""

    POLL_S = 1.0
    INITIAL_BYTES = 64 * 1024

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self._offset: int | None = None

    def compose(self) -> ComposeResult:
        yield Label(f"Log · {self.path}", id="log-title")
        yield Log(id="log", max_lines=5000, auto_scroll=True)

    def on_mount(self) -> None:
        self._tail(self._offset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="log-tail")
    def _tail(self, offset: int | None) -> None:
        lines, new_offset, reset = read_new_lines(self.path, offset, self.INITIAL_BYTES)
        self.post_message(LogLines(lines, new_offset, reset))

    @on(LogLines)
    def _append(self, message: LogLines) -> None:
        log = self.query_one(Log)
        if message.reset and self._offset is not None:
            log.write_line("--- log file rotated ---")
        self._offset = message.offset
        if message.lines:
            log.write_lines(message.lines)
        self.set_timer(self.POLL_S, lambda: self._tail(self._offset))


def read_new_lines(path: Path, offset: int | None, initial: int) -> tuple[list[str], int, bool]:
    """Complete lines appended to ``path`` since ``offset`` -> (lines, next offset, rotated).

    ``offset`` None means "start near the end" (the last ``initial`` bytes). A file shorter
    than ``offset`` was rotated or truncated: reading restarts from its beginning.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0 if offset is None else offset, False
    reset = offset is not None and size < offset
    start = max(0, size - initial) if offset is None else (0 if reset else offset)
    if size == start:
        return [], start, reset
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(min(size - start, 4 * 1024 * 1024))
    end = data.rfind(b"\n")
    if end < 0:
        return [], start, reset
    chunk = data[: end + 1].decode("utf-8", errors="replace")
    lines = chunk.splitlines()
    if offset is None and start > 0 and lines:
        lines = lines[1:]  # the first line is cut in the middle
    return lines, start + end + 1, reset


def _title(e: BaseException, default: str) -> str:
    return str(getattr(e, "title", "") or default)


def _message(e: BaseException) -> str:
    text = str(getattr(e, "message", "") or e) or type(e).__name__
    return text.splitlines()[0] if text else text
