"""The Monitor tab: drift, alert volume, alert precision and the retrain suggestion.

The report (:func:`rtfd.monitor.report.build_report`) is read in a thread worker — DuckDB scans
the live window, about a second per two million rows — and only while the tab is on screen: the
panel reads it when it is shown, then every :attr:`MonitorPanel.REFRESH_S` seconds after the
previous read finished (never overlapping), and stops when another tab is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Label, Sparkline, Static

from rtfd.errors import RtfdError

if TYPE_CHECKING:
    from rtfd.config import Settings
    from rtfd.monitor.report import MonitorReport
    from rtfd.tui.backends import ConsoleLike

ReportLoader = Callable[["Settings"], "MonitorReport"]


def load_report(settings: Settings) -> MonitorReport:
    """The real report over the lake and the registry (blocking: call from a worker)."""
    from rtfd.monitor.report import build_report

    return build_report(settings)


class MonitorLoaded(Message):
    def __init__(self, report: MonitorReport) -> None:
        super().__init__()
        self.report = report


class MonitorFailed(Message):
    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title = title
        self.message = message


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class MonitorPanel(Vertical):
    """Sparklines of alerts per hour, precision per day and the score distribution, a table of
    each feature's PSI with its band, and a banner that says whether to retrain and why."""

    #: Seconds between the end of one read and the start of the next while the tab is shown.
    REFRESH_S: ClassVar[float] = 30.0

    DEFAULT_CSS = """
    MonitorPanel { height: 1fr; }
    MonitorPanel #monitor-title { text-style: bold; padding: 0 1; }
    MonitorPanel #monitor-advice { padding: 0 1; margin: 0 0 1 0; height: auto; }
    MonitorPanel #monitor-advice.suggested { background: $error 40%; text-style: bold; }
    MonitorPanel #monitor-advice.ok { background: $success 30%; }
    MonitorPanel #monitor-advice.waiting { background: $panel; }
    MonitorPanel #monitor-charts { height: 5; }
    MonitorPanel .monitor-chart { width: 1fr; height: 5; padding: 0 1; }
    MonitorPanel .monitor-chart Sparkline { height: 3; }
    MonitorPanel #psi { height: 1fr; }
    """

    def __init__(self, *, load: ReportLoader = load_report, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.load = load
        self.report: MonitorReport | None = None
        self.loading = False
        self.shown = False
        self.reads = 0
        self._timer: Timer | None = None

    @property
    def rtfd(self) -> ConsoleLike:
        return cast("ConsoleLike", self.app)

    def compose(self) -> ComposeResult:
        yield Label("Monitor · drift, alerts and precision of the live model", id="monitor-title")
        yield Static("reading the lake…", id="monitor-advice", classes="waiting")
        with Horizontal(id="monitor-charts"):
            with Vertical(classes="monitor-chart"):
                yield Label("alerts / hour", id="alerts-label")
                yield Sparkline([], id="alerts-spark")
            with Vertical(classes="monitor-chart"):
                yield Label("alert precision / day", id="precision-label")
                yield Sparkline([], id="precision-spark")
            with Vertical(classes="monitor-chart"):
                yield Label("score distribution", id="score-label")
                yield Sparkline([], id="score-spark")
        yield DataTable(id="psi", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#psi", DataTable)
        for name in ("distribution", "PSI", "band", "missing", "note"):
            table.add_column(name, key=name)

    # -- refreshing only while shown ----------------------------------------------------------
    def on_show(self) -> None:
        self.shown = True
        self.refresh_report()

    def on_hide(self) -> None:
        self.shown = False
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def refresh_report(self) -> None:
        """Read the report now, unless a read is already running."""
        if self.loading:
            return
        self._stop_timer()  # one pending read at most: this one replaces it
        self.loading = True
        self._read(self.rtfd.settings)

    @work(thread=True, exclusive=True, exit_on_error=False, group="monitor")
    def _read(self, settings: Settings) -> None:
        try:
            report = self.load(settings)
        except RtfdError as e:
            self.post_message(MonitorFailed(e.title, e.message))
            return
        except Exception as e:  # the console must survive any failed read and say what it was
            self.post_message(MonitorFailed("Monitor", f"{type(e).__name__}: {e}"))
            return
        self.post_message(MonitorLoaded(report))

    def _next(self) -> None:
        self.loading = False
        self.reads += 1
        self._stop_timer()
        if self.shown and self.is_mounted:
            self._timer = self.set_timer(self.REFRESH_S, self.refresh_report)

    @on(MonitorFailed)
    def _failed(self, message: MonitorFailed) -> None:
        # Nothing to monitor yet (no model, no lake) is a state, not an alarm: no toast.
        advice = self.query_one("#monitor-advice", Static)
        advice.set_classes("waiting")
        advice.update(f"{message.title}: {message.message}")
        self._next()

    @on(MonitorLoaded)
    def _loaded(self, message: MonitorLoaded) -> None:
        self.report = r = message.report
        at = r.generated_at.astimezone().strftime("%H:%M:%S") if r.generated_at else ""
        self.query_one("#monitor-title", Label).update(
            f"Monitor · model {r.model_version} · last {r.window_hours:g} h: "
            f"{r.window_rows:,} transactions, {r.window_alerts:,} alerts · read {at}"
        )
        self._advice(r)
        self._charts(r)
        self._table(r)
        self._next()

    # -- rendering --------------------------------------------------------------------------------
    def _advice(self, r: MonitorReport) -> None:
        advice = self.query_one("#monitor-advice", Static)
        notes = [n for n in [r.reference_note, *r.advice.notes] if n]
        if r.advice.suggested:
            advice.set_classes("suggested")
            text = "RETRAIN SUGGESTED · " + " · ".join(r.advice.reasons)
        else:
            advice.set_classes("ok")
            text = "No retrain suggested"
        advice.update("\n".join([text, *notes]))

    def _charts(self, r: MonitorReport) -> None:
        hourly = [h.alerts for h in r.alerts_per_hour]
        self.query_one("#alerts-spark", Sparkline).data = hourly
        latest = hourly[-1] if hourly else 0
        self.query_one("#alerts-label", Label).update(
            f"alerts / hour: {latest:,} latest · peak {max(hourly, default=0):,}"
        )
        days = [d for d in r.precision_per_day if d.precision is not None]
        self.query_one("#precision-spark", Sparkline).data = [d.precision or 0.0 for d in days]
        self.query_one("#precision-label", Label).update(
            f"precision / day: {r.rule.days} d {_number(r.precision_7d, 2)} "
            f"vs validation {_number(r.validation_precision, 2)}"
        )
        self.query_one("#score-spark", Sparkline).data = r.score_histogram
        score = r.score.psi if r.score else None
        self.query_one("#score-label", Label).update(f"score 0 → 1 · PSI {_number(score)}")

    def _table(self, r: MonitorReport) -> None:
        table = self.query_one("#psi", DataTable)
        selected = table.cursor_row
        table.clear()
        for d in [*([r.score] if r.score else []), *r.features]:
            table.add_row(
                d.name,
                _number(d.psi),
                d.band.value if d.band else "-",
                f"{d.missing_share:.1%}",
                d.note,
                key=d.name,
            )
        if table.row_count:
            table.move_cursor(row=min(selected, table.row_count - 1))
