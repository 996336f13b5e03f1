"""Small widgets of the console: status bar, training bar, charts and the live tables."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, ProgressBar, Sparkline, Static

from rtfd.components import ComponentStatus, State
from rtfd.tui.format import (
    field,
    fmt_amount,
    fmt_int,
    fmt_rate,
    fmt_time,
    number,
    reasons_text,
    score_text,
    stream_summary,
)

if TYPE_CHECKING:
    from rtfd.components import GeneratorInfo
    from rtfd.tui.live_stats import LiveStats

STATES = ("starting", "running", "degraded", "stopped", "failed")


class Badge(Static):
    """One component in the status bar, coloured by its state."""

    def __init__(self, label: str, *, id: str) -> None:
        super().__init__(f"{label} …", id=id, classes="badge -stopped", markup=False)
        self.label = label
        self.state = "stopped"
        self.text = ""

    def show(self, state: str, text: str) -> None:
        """Set the state (a class for the colour) and the text after the label."""
        self.state = state
        self.text = text
        for s in STATES:
            self.set_class(s == state, f"-{s}")
        marker = {"failed": "✖ ", "starting": "◌ ", "degraded": "▲ "}.get(state, "")
        self.update(Text.assemble((f"{self.label} ", "bold"), marker, text))


class StatusBar(Vertical):
    """Two rows: broker · generator · model, then stream · dead letters."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.badges = {
            name: Badge(label, id=f"badge-{name}")
            for name, label in (
                ("broker", "broker"),
                ("generator", "generator"),
                ("stream", "stream"),
                ("model", "model"),
                ("dlq", "DLQ"),
            )
        }

    def compose(self) -> ComposeResult:
        # The model's line (threshold, expected precision and alerts a day) is the longest:
        # it shares its row with the broker only, so that 140 columns show all of it.
        with Horizontal(classes="status-row"):
            yield self.badges["broker"]
            yield self.badges["model"]
        with Horizontal(classes="status-row"):
            yield self.badges["generator"]
            yield self.badges["stream"]
            yield self.badges["dlq"]

    def badge(self, name: str) -> Badge:
        return self.badges[name]

    def show(self, status: ComponentStatus, stats: LiveStats) -> None:
        """The broker, model or stream: its state and detail (the stream's from its batches)."""
        if status.name == "stream":
            self.show_stream(status, stats)
        elif status.name in ("broker", "model"):
            self.badges[status.name].show(status.state.value, status.detail or status.state.value)

    def show_stream(self, status: ComponentStatus, stats: LiveStats) -> None:
        """The stream: its last batch while it runs, idle when Spark has gone quiet."""
        state = status.state.value
        idle = stats.stream_idle_s()
        if idle is not None:
            text = f"0 rows/s · idle: no batch for {idle:.0f} s"
        elif status.state == State.RUNNING and stats.latest_progress is not None:
            text = stream_summary(stats.latest_progress)
            if stats.skipping:
                state = "degraded"  # transactions the stream will never score
        else:
            text = status.detail or state
        self.badges["stream"].show(state, text)

    def show_generator(self, status: ComponentStatus | None, info: GeneratorInfo | None) -> None:
        """The generator: its rate and what it actually sends while it runs."""
        state = status.state.value if status else "stopped"
        if info is None or status is None or status.state != State.RUNNING:
            text = (status.detail if status else "") or state
        else:
            text = info.summary()
            if not info.paused and info.actual_rate is not None:
                text += f" · sent {fmt_rate(info.actual_rate)}"
            if info.cards_pending:
                text += f" · drawing {fmt_int(info.cards_pending)} cards"
            if info.failed:
                text += f" · {fmt_int(info.failed)} failed"
            if info.paused:
                state = "degraded"
        self.badges["generator"].show(state, text)

    def show_dlq(self, dead_letters: int) -> None:
        self.badges["dlq"].show("degraded" if dead_letters else "running", fmt_int(dead_letters))


class TrainingBar(Horizontal):
    """Shown while a model trains (bootstrap at start or a retrain): phase and progress."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phase = Label("training", id="training-phase")
        self.bar = ProgressBar(total=100, show_eta=False, id="training-progress")

    def compose(self) -> ComposeResult:
        yield self.phase
        yield self.bar

    def show_progress(self, fraction: float | None, phase: str) -> None:
        self.display = True
        self.phase.update(f"training: {phase}")
        f = number(fraction)
        if f is not None:
            self.bar.update(progress=max(0.0, min(1.0, f)) * 100)

    def hide(self) -> None:
        self.display = False


class MetricChart(Vertical):
    """A titled sparkline over the last few minutes of one metric."""

    def __init__(
        self,
        title: str,
        fmt: Callable[[Any], str],
        *,
        history: int = 300,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, classes="chart")
        self.title = title
        self.fmt = fmt
        self.values: deque[float] = deque(maxlen=history)
        self.label = Label(f"{title}  -", classes="chart-title")
        self.sparkline = Sparkline([], summary_function=max)

    def compose(self) -> ComposeResult:
        yield self.label
        yield self.sparkline

    def push(self, *values: Any) -> None:
        """Append samples (non-numbers are skipped) and redraw once."""
        added = False
        for value in values:
            f = number(value)
            if f is not None:
                self.values.append(f)
                added = True
        if not added:
            return
        self.sparkline.data = list(self.values)
        last, peak = self.values[-1], max(self.values)
        self.label.update(
            Text.assemble(
                (self.title, "bold"), f"  {self.fmt(last)}", (f"  · max {self.fmt(peak)}", "dim")
            )
        )


class ScoredTable(DataTable[Any]):
    """The newest scored transactions, newest first; the whole table is redrawn per update.

    A live feed, so there is no cursor (arrow keys scroll); the transaction id comes last so a
    narrow terminal cuts it rather than the score.
    """

    COLUMNS = (("time", 8), ("user", 9), ("amount", 10), ("score", 5), ("", 1), ("model", 5),
               ("transaction", 27))  # fmt: skip

    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.zebra_stripes = True
        _add_fixed_columns(self, self.COLUMNS)

    def show_rows(self, rows: Iterable[Mapping[str, Any]], threshold: float | None) -> None:
        self.clear()
        for row in rows:
            flagged = bool(field(row, "is_fraud"))
            self.add_row(
                fmt_time(field(row, "timestamp")),
                str(field(row, "user_id", "-")),
                Text(fmt_amount(field(row, "amount")), justify="right"),
                score_text(field(row, "fraud_score"), threshold),
                Text("●", style="bold red") if flagged else "",
                str(field(row, "model_version", "-")),
                str(field(row, "transaction_id", "-")),
            )


class AlertsTable(DataTable[Any]):
    """The alerts read from the fraud_alerts topic, newest first, with their triage state and
    reasons. A row cursor picks one (enter opens its case); it stays on the same alert while
    new ones arrive above it."""

    COLUMNS = (("time", 8), ("user", 9), ("amount", 10), ("score", 5), ("state", 9),
               ("reasons", 110))  # fmt: skip
    STATE_STYLE: ClassVar[dict[str, str]] = {
        "open": "",
        "confirmed": "bold red",
        "cleared": "green",
    }

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        _add_fixed_columns(self, self.COLUMNS)

    def show_alerts(
        self, alerts: Iterable[Mapping[str, Any]], state: Callable[[str], str] | None = None
    ) -> None:
        """Redraw every row; ``state(transaction_id)`` gives each alert's triage state."""
        selected = self._selected_key()
        self.clear()
        for alert in alerts:
            threshold = number(field(alert, "threshold"))
            tx = str(field(alert, "transaction_id") or "")
            now = state(tx) if state is not None and tx else "open"
            self.add_row(
                fmt_time(field(alert, "timestamp")),
                str(field(alert, "user_id", "-")),
                Text(fmt_amount(field(alert, "amount")), justify="right"),
                score_text(field(alert, "fraud_score"), threshold),
                Text(now, style=self.STATE_STYLE.get(now, "")),
                reasons_text(field(alert, "reasons")),
                key=alert_key(alert) or None,
            )
        if selected is not None and selected in self.rows:
            self.move_cursor(row=self.get_row_index(selected), scroll=False)

    def _selected_key(self) -> str | None:
        if not self.row_count or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # the cursor is outside the rows (a cleared table)
            return None
        return key.value


def alert_key(alert: Mapping[str, Any]) -> str:
    """An alert's identity in the feed: its alert_id, else its transaction id."""
    return str(field(alert, "alert_id") or field(alert, "transaction_id") or "")


def _add_fixed_columns(table: DataTable[Any], columns: Iterable[tuple[str, int]]) -> None:
    """Fixed widths: a live feed must not jitter, and DataTable's auto widths are measured
    only when idle (a table redrawn before that keeps rows cut at the header's width)."""
    for name, width in columns:
        label = Text(name, justify="right") if name in ("amount", "score") else name
        table.add_column(label, key=name or "flag", width=width)
