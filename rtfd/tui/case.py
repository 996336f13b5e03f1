"""Alert triage in the console: the case screen and the desk that publishes decisions.

Enter on an alert (Live tab) opens its :class:`CaseScreen`: the alert's score and reasons, the
card's recent transactions from the lake (newest first, with their scores), the transaction's
feature values, the merchant's risk figures and the labels already on it. ``f`` confirms fraud,
``c`` clears it as a false positive, ``u`` undoes; each decision goes to ``fraud_labels`` as an
analyst LABEL through the supervisor (:meth:`rtfd.supervisor.Supervisor.publish_label`), in a
worker of the :class:`TriageDesk`, which outlives the screen. The alerts list shows each alert's
state (open, confirmed, cleared; ``…`` while a decision is on its way to the broker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Label, Static

from rtfd.errors import RtfdError
from rtfd.triage.case import Case, load_case, risk_lines
from rtfd.triage.decisions import AlertState, Decisions, Verdict
from rtfd.tui.format import (
    field,
    fmt_amount,
    fmt_metric,
    fmt_time,
    number,
    score_text,
)
from rtfd.tui.messages import CaseFailed, CaseLoaded, LabelSettled

if TYPE_CHECKING:
    from rtfd.tui.app import RtfdApp

log = logging.getLogger(__name__)

STATE_STYLES = {
    AlertState.OPEN: "dim",
    AlertState.CONFIRMED: "bold red",
    AlertState.CLEARED: "green",
}


def state_text(state: AlertState, pending: bool) -> Text:
    """An alert's state as a cell: coloured, with ``…`` while a decision is in flight."""
    return Text(f"{state.value}{'…' if pending else ''}", style=STATE_STYLES[state])


class TriageDesk(Widget):
    """Holds the analyst's decisions and publishes them; invisible, lives as long as the app.

    Listeners (the alerts list, an open case) are called on the UI thread with the transaction
    id whose state changed.
    """

    DEFAULT_CSS = "TriageDesk { display: none; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decisions = Decisions()
        self._listeners: list[Callable[[str], None]] = []

    @property
    def rtfd(self) -> RtfdApp:
        return cast("RtfdApp", self.app)

    def listen(self, fn: Callable[[str], None]) -> None:
        self._listeners.append(fn)

    def forget(self, fn: Callable[[str], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def state(self, transaction_id: str) -> AlertState:
        return self.decisions.state(transaction_id)

    def cell(self, transaction_id: str) -> Text:
        return state_text(self.state(transaction_id), self.decisions.pending(transaction_id))

    def decide(self, transaction_id: str, verdict: Verdict | None) -> bool:
        """Publish a decision (``verdict``) or an undo (None); False when it makes no sense now
        (the same decision again, nothing to undo, one still in flight)."""
        ok = (
            self.decisions.can_undo(transaction_id)
            if verdict is None
            else self.decisions.can_decide(transaction_id, verdict)
        )
        if not ok:
            return False
        record = self.decisions.propose(transaction_id, verdict)
        self._changed(transaction_id)
        self._publish(transaction_id, record)
        return True

    def seed(self, transaction_id: str, labels: list[dict[str, Any]]) -> None:
        """The analyst's standing decision read from the labels table."""
        before = self.state(transaction_id)
        if self.decisions.seed(transaction_id, labels) != before:
            self._changed(transaction_id)

    @work(thread=True, exit_on_error=False, group="labels")
    def _publish(self, transaction_id: str, record: dict[str, Any]) -> None:
        try:
            self.rtfd.supervisor.publish_label(record)
        except RtfdError as e:
            self.post_message(LabelSettled(transaction_id, e.message))
            return
        except Exception as e:  # a bug or a library surprise: say so, keep the console up
            log.exception("publishing a label failed")
            self.post_message(LabelSettled(transaction_id, f"{type(e).__name__}: {e}"))
            return
        self.post_message(LabelSettled(transaction_id))

    @on(LabelSettled)
    def _settled(self, message: LabelSettled) -> None:
        tid = message.transaction_id
        if message.error is not None:
            self.decisions.dropped(tid)
            self.app.notify(message.error, title="Label not published", severity="error")
        else:
            state = self.decisions.applied(tid)
            what = {
                AlertState.CONFIRMED: "confirmed fraud",
                AlertState.CLEARED: "cleared as a false positive",
                AlertState.OPEN: "reopened (decision withdrawn)",
            }[state]
            self.app.notify(f"{tid} {what}: label published to fraud_labels", title="Triage")
        self._changed(tid)

    def _changed(self, transaction_id: str) -> None:
        for fn in list(self._listeners):
            fn(transaction_id)


class CaseScreen(Screen[None]):
    """One alert's case; f / c / u decide, esc goes back to the alerts."""

    CSS_PATH = Path(__file__).with_name("case.tcss")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "decide('fraud')", "Confirm fraud"),
        Binding("c", "decide('legit')", "Clear (false positive)"),
        Binding("u", "undo", "Undo"),
        Binding("escape", "close", "Back"),
    ]

    def __init__(self, alert: Mapping[str, Any], desk: TriageDesk) -> None:
        super().__init__()
        self.alert = dict(alert)
        self.desk = desk
        self.case: Case | None = None
        self.transaction_id = str(field(alert, "transaction_id", ""))

    @property
    def rtfd(self) -> RtfdApp:
        return cast("RtfdApp", self.app)

    def compose(self) -> ComposeResult:
        yield Label("", id="case-title")
        with Horizontal(id="case-top"):
            with Vertical(id="case-why", classes="box"):
                yield Label("Why it was flagged", classes="box-title")
                yield Static("", id="case-reasons")
                yield DataTable(id="case-features", cursor_type="none", zebra_stripes=True)
            with Vertical(id="case-side"):
                with Vertical(id="case-merchant-box", classes="box"):
                    yield Label("Merchant", classes="box-title")
                    yield Static("loading…", id="case-merchant")
                with Vertical(id="case-labels-box", classes="box"):
                    yield Label("Labels on this transaction", classes="box-title")
                    yield Static("loading…", id="case-labels")
        with Vertical(id="case-card-box", classes="box"):
            yield Label("The card's recent transactions · newest first", classes="box-title")
            yield DataTable(id="case-card", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.desk.listen(self._state_changed)
        card = self.query_one("#case-card", DataTable)
        for name, width in (("time", 8), ("amount", 10), ("score", 5), ("", 1),
                            ("merchant", 10), ("location", 14), ("transaction", 28)):  # fmt: skip
            card.add_column(name, key=name or "flag", width=width)
        self.query_one("#case-features", DataTable).add_columns("feature", "value")
        self.query_one("#case-reasons", Static).update(self._reasons())
        self._title()
        card.focus()
        self._load()

    def on_unmount(self) -> None:
        self.desk.forget(self._state_changed)

    # -- loading ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="case")
    def _load(self) -> None:
        service = None
        try:
            service = self.rtfd.services.query_service(self.rtfd.settings)
            case = load_case(service, self.alert)
        except Exception as e:  # no Parquet yet, a locked lake: the alert itself still shows
            message = str(getattr(e, "message", "") or e).splitlines()[0:1]
            self.post_message(CaseFailed(message[0] if message else type(e).__name__))
            return
        finally:
            if service is not None:
                service.close()
        self.post_message(CaseLoaded(case))

    @on(CaseLoaded)
    def _loaded(self, message: CaseLoaded) -> None:
        case: Case = message.case
        self.case = case
        self.desk.seed(self.transaction_id, case.labels)
        self._show_card(case)
        self._show_features(case)
        self._show_merchant(case)
        self._show_labels(case)
        self._title()

    @on(CaseFailed)
    def _failed(self, message: CaseFailed) -> None:
        text = Text(f"cannot read the lake: {message.message}", style="red")
        self.query_one("#case-merchant", Static).update(text)
        self.query_one("#case-labels", Static).update(text)

    # -- drawing ------------------------------------------------------------------------------
    def _title(self) -> None:
        a = self.alert
        state = self.desk.state(self.transaction_id)
        pending = self.desk.decisions.pending(self.transaction_id)
        self.query_one("#case-title", Label).update(
            Text.assemble(
                ("Case ", "bold"),
                (self.transaction_id, "bold"),
                f" · card {field(a, 'user_id', '-')} · {fmt_amount(field(a, 'amount'))}"
                f" at {fmt_time(field(a, 'timestamp'))} · score ",
                score_text(field(a, "fraud_score"), number(field(a, "threshold"))),
                f" (threshold {fmt_metric(field(a, 'threshold'))}, "
                f"model {field(a, 'model_version', '-')}) · ",
                state_text(state, pending),
            )
        )

    def _reasons(self) -> Text:
        reasons = field(self.alert, "reasons") or []
        if isinstance(reasons, str):
            reasons = [reasons]
        if not reasons:
            return Text("no reasons in the alert", style="dim")
        lines = Text()
        for i, reason in enumerate(reasons):
            lines.append(f"{i + 1}. {reason}\n" if i < len(reasons) - 1 else f"{i + 1}. {reason}")
        return lines

    def _show_card(self, case: Case) -> None:
        card = self.query_one("#case-card", DataTable)
        card.clear()
        threshold = number(field(self.alert, "threshold"))
        for row in case.transactions:
            tid = str(row.get("transaction_id", "-"))
            mine = tid == self.transaction_id
            card.add_row(
                fmt_time(row.get("timestamp")),
                Text(fmt_amount(row.get("amount")), justify="right"),
                score_text(row.get("fraud_score"), threshold),
                Text("●", style="bold red") if row.get("is_fraud") else "",
                str(row.get("merchant_id", "-")),
                str(row.get("location", "-")),
                Text(tid, style="bold reverse") if mine else tid,
            )
        if not case.transactions:
            card.add_row("", "", "", "", "", "not in the lake yet", "")

    def _show_features(self, case: Case) -> None:
        table = self.query_one("#case-features", DataTable)
        table.clear()
        for name, value in case.features.items():
            f = number(value)
            table.add_row(name, Text("-" if f is None else f"{f:,.4g}", justify="right"))

    def _show_merchant(self, case: Case) -> None:
        lines = risk_lines(case)
        if not lines:
            self.query_one("#case-merchant", Static).update(Text("no merchant data", "dim"))
            return
        text = Text()
        for name, value in lines:
            shown = fmt_time(value) if name == "last_seen" else _value(value)
            text.append(f"{name:<24}", style="dim")
            text.append(f"{shown}\n")
        text.rstrip()
        self.query_one("#case-merchant", Static).update(text)

    def _show_labels(self, case: Case) -> None:
        if not case.labels:
            body = Text("none yet (chargebacks arrive days later)", style="dim")
        else:
            body = Text()
            for r in case.labels:
                source = r.get("source") or "chargeback"
                verdict = "undo" if r.get("retracted") else ("fraud" if r.get("label") else "legit")
                body.append(f"{fmt_time(r.get('reported_at'))}  {source:<10} {verdict}\n")
            label = case.label
            body.append(
                "→ training label: " + ("none" if label is None else "fraud" if label else "legit"),
                style="bold",
            )
        self.query_one("#case-labels", Static).update(body)

    def _state_changed(self, transaction_id: str) -> None:
        if transaction_id == self.transaction_id and self.is_attached:
            self._title()
            self.refresh_bindings()

    # -- keys ---------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        decisions = self.desk.decisions
        if action == "decide":
            verdict = Verdict(str(parameters[0]))
            return True if decisions.can_decide(self.transaction_id, verdict) else None
        if action == "undo":
            return True if decisions.can_undo(self.transaction_id) else None
        return True

    def action_decide(self, verdict: str) -> None:
        self.desk.decide(self.transaction_id, Verdict(verdict))

    def action_undo(self) -> None:
        self.desk.decide(self.transaction_id, None)

    def action_close(self) -> None:
        self.dismiss()


def _value(value: Any) -> str:
    f = number(value)
    if f is None:
        return "-" if value is None else str(value)
    if float(f).is_integer() and abs(f) >= 1:
        return f"{int(f):,}"
    return f"{f:.4f}"
