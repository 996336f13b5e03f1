"""An alert's case: why it fired, the card's recent transactions, the merchant's risk; the verdict.

Opened from the Live tab's alerts list (enter). ``f`` confirms fraud, ``l`` marks a false
positive, ``u`` withdraws the verdict; each is published to ``fraud_labels`` (``source =
analyst``) through the supervisor in a worker, and the alert's state changes only once the broker
acknowledged it. The lake is read through the read-only query service, also in a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from rtfd.features.names import RISK_FEATURES
from rtfd.query.labels import AnalystDecision, Verdict
from rtfd.tui.backends import QueryBackend
from rtfd.tui.format import (
    field,
    fmt_amount,
    fmt_metric,
    fmt_score,
    fmt_time,
    number,
    score_text,
)
from rtfd.tui.triage import CaseBook, CaseFile, load_case

Publish = Callable[[AnalystDecision], Any]


class CaseLoaded(Message):
    def __init__(self, case: CaseFile) -> None:
        super().__init__()
        self.case = case


class DecisionDone(Message):
    """A decision was published (``error`` None) or refused."""

    def __init__(self, decision: AnalystDecision, error: str | None) -> None:
        super().__init__()
        self.decision = decision
        self.error = error


class CaseScreen(Screen[None]):
    """One alert under review; esc goes back to the live view."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "decide('fraud')", "Confirm fraud"),
        Binding("l", "decide('legit')", "False positive"),
        Binding("u", "undo", "Undo"),
        Binding("escape", "close", "Back"),
        # The tab keys leave the case for that tab (the tabs are behind this screen).
        Binding("1", "leave('live')", show=False),
        Binding("2", "leave('query')", show=False),
        Binding("3", "leave('models')", show=False),
        Binding("4", "leave('logs')", show=False),
    ]

    def __init__(
        self,
        alert: Mapping[str, Any],
        book: CaseBook,
        *,
        publish: Publish,
        query_service: Callable[[], QueryBackend],
    ) -> None:
        super().__init__()
        self.alert = dict(alert)
        self.transaction_id = str(field(alert, "transaction_id") or "")
        self.book = book
        self.publish = publish
        self.query_service = query_service
        self.case: CaseFile | None = None
        self.pending: AnalystDecision | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="case-box"):
            yield Label("", id="case-title")
            with Horizontal(id="case-top"):
                yield Static(self._summary(), id="case-summary", classes="box")
                yield Static(self._reasons(), id="case-reasons", classes="box")
                yield Static("merchant risk · reading the lake…", id="case-risk", classes="box")
            yield Label("The card's recent transactions · newest first", id="case-recent-title")
            yield DataTable(id="case-recent", cursor_type="row", zebra_stripes=True)
            yield Label("", id="case-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#case-recent", DataTable)
        for name in ("time", "transaction", "merchant", "amount", "location", "score", ""):
            table.add_column(name, key=name or "flag")
        self._show_state()
        table.focus()
        self._load()

    # -- reading ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="case-load")
    def _load(self) -> None:
        try:
            service = self.query_service()
        except Exception as e:  # no lake yet, a locked data dir: the alert alone still shows
            self.post_message(CaseLoaded(CaseFile(self.alert, problem=str(e).splitlines()[0])))
            return
        try:
            case = load_case(service, self.alert)
        finally:
            service.close()
        self.post_message(CaseLoaded(case))

    @on(CaseLoaded)
    def _loaded(self, message: CaseLoaded) -> None:
        self.case = message.case
        threshold = number(field(self.alert, "threshold"))
        table = self.query_one("#case-recent", DataTable)
        table.clear()
        for row in message.case.recent:
            tx = str(row.get("transaction_id", "-"))
            mark = Text("◀ alert", style="bold") if tx == self.transaction_id else ""
            table.add_row(
                fmt_time(row.get("timestamp")),
                tx,
                str(row.get("merchant_id", "-")),
                Text(fmt_amount(row.get("amount")), justify="right"),
                str(row.get("location") or "-"),
                score_text(row.get("fraud_score"), threshold),
                mark,
            )
        self.query_one("#case-risk", Static).update(self._risk(message.case.risk))
        if message.case.problem:
            self._status(Text(message.case.problem, style="yellow"))

    # -- deciding -----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # One decision at a time, and the case stays open until the broker answered: its
        # outcome is shown here and recorded in the book only then.
        if action in ("close", "leave") and self.pending is not None:
            return None
        if action in ("decide", "undo") and (self.pending is not None or not self.transaction_id):
            return None
        if action == "undo" and self.book.state(self.transaction_id) == "open":
            return None
        return True

    def action_decide(self, verdict: Verdict) -> None:
        self._send(self.book.decide(self.transaction_id, verdict))

    def action_undo(self) -> None:
        self._send(self.book.undo(self.transaction_id))

    def action_close(self) -> None:
        self.dismiss(None)

    def action_leave(self, tab: str) -> None:
        app = self.app
        self.dismiss(None)
        app.call_later(app.run_action, f"tab({tab!r})")

    def _send(self, decision: AnalystDecision | None) -> None:
        if decision is None or self.pending is not None:
            return
        self.pending = decision
        what = "withdrawing the verdict" if decision.withdrawn else f"marking it {decision.verdict}"
        self._status(Text(f"{what}: publishing to fraud_labels…", style="italic"))
        self.refresh_bindings()
        self._publish(decision)

    @work(thread=True, exclusive=True, exit_on_error=False, group="case-publish")
    def _publish(self, decision: AnalystDecision) -> None:
        try:
            self.publish(decision)
        except Exception as e:  # a dead broker is a line on the screen, never a crash
            title = str(getattr(e, "title", "") or type(e).__name__)
            text = str(getattr(e, "message", "") or e).splitlines()[0]
            self.post_message(DecisionDone(decision, f"{title}: {text}"))
            return
        self.post_message(DecisionDone(decision, None))

    @on(DecisionDone)
    def _decided(self, message: DecisionDone) -> None:
        self.pending = None
        if message.error:
            self._status(Text(f"✖ not recorded · {message.error}", style="bold red"))
            self.app.notify(message.error, title="Label not published", severity="error")
        else:
            state = self.book.apply(message.decision)
            self._status(Text(f"✔ {_done_text(message.decision)} · alert {state}", style="green"))
        self._show_state()
        self.refresh_bindings()

    # -- text ---------------------------------------------------------------------------------
    def _show_state(self) -> None:
        state = self.book.state(self.transaction_id)
        style = {"confirmed": "bold red", "cleared": "bold green"}.get(state, "bold")
        title = Text.assemble(
            ("Case · ", "bold"),
            (self.transaction_id or "?", "bold"),
            f" · card {field(self.alert, 'user_id', '-')} · ",
            (state, style),
            "   f confirm fraud · l false positive · u undo · esc back",
        )
        self.query_one("#case-title", Label).update(title)

    def _summary(self) -> Text:
        a = self.alert
        lines = [
            ("score", fmt_score(field(a, "fraud_score"))),
            ("threshold", fmt_score(field(a, "threshold"))),
            ("amount", fmt_amount(field(a, "amount"))),
            ("merchant", str(field(a, "merchant_id", "-"))),
            ("time", str(field(a, "timestamp", "-"))[:19].replace("T", " ")),
            ("model", str(field(a, "model_version", "-"))),
        ]
        return _lines("alert", lines)

    def _reasons(self) -> Text:
        reasons = field(self.alert, "reasons") or []
        if isinstance(reasons, str):
            reasons = [reasons]
        text = Text("why · top feature contributions\n", style="bold")
        for reason in reasons:
            text.append(f"• {reason}\n")
        if not reasons:
            text.append("no reasons in the alert record", style="italic")
        return text

    def _risk(self, risk: Mapping[str, Any]) -> Text:
        if not risk:
            return Text("merchant risk\nnot in the lake yet", style="italic")
        lines = []
        for name in RISK_FEATURES:
            value = risk.get(name)
            shown = fmt_metric(value) if "rate" in name else f"{number(value) or 0:,.0f}"
            short = name.removeprefix("merchant_").removeprefix("fraud_").replace("_", " ")
            lines.append((f"fraud {short}" if "rate" in name else short, shown))
        return _lines(f"merchant risk · {risk.get('merchant_id', '-')}", lines)

    def _status(self, text: Text) -> None:
        self.query_one("#case-status", Label).update(text)


def _lines(title: str, rows: list[tuple[str, str]]) -> Text:
    """A title, then one aligned ``name value`` line per row."""
    text = Text(f"{title}\n", style="bold")
    width = max((len(name) for name, _ in rows), default=0) + 1
    for name, value in rows:
        text.append(f"{name:<{width}}", style="dim")
        text.append(f"{value}\n")
    return text


def _done_text(decision: AnalystDecision) -> str:
    if decision.withdrawn:
        return f"verdict {decision.verdict} withdrawn"
    return "confirmed fraud" if decision.verdict == "fraud" else "marked a false positive"
