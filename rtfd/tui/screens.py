"""Modal screens: the key help and the "stopping…" screen shown while the appliance shuts down."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, LoadingIndicator

HELP_ROWS: tuple[tuple[str, str, str], ...] = (
    ("g", "anywhere", "pause / resume the transaction generator"),
    ("+ / -", "anywhere", "raise / lower the generator's rate (1 … 100,000 tx/s)"),
    ("r", "anywhere", "retrain a challenger model; promoted only if it wins"),
    ("1 2 3 4 5", "anywhere", "switch tab: live, query (editor), models, log, monitor"),
    ("tab", "anywhere", "move the focus"),
    ("? / F1", "anywhere", "this help"),
    ("q, ctrl+q, ctrl+c", "anywhere", "stop everything rtfd started and quit"),
    ("F5, ctrl+j", "query", "run the SQL in the editor (the result then has the focus)"),
    ("ctrl+s", "query", "export the last result to CSV under <data>/exports"),
    ("esc", "query", "leave the editor (letter keys act as shortcuts again)"),
    ("enter", "query", "run the highlighted saved query"),
    ("b", "models", "roll back to the previous model version"),
    ("tab, enter", "live", "pick an alert in the alerts list and open its case"),
    ("f / l", "case", "confirm fraud / false positive: a label on fraud_labels"),
    ("u", "case", "undo: withdraw the verdict (the alert is open again)"),
    ("esc", "case", "back to the live view"),
)


class HelpScreen(ModalScreen[None]):
    """Every key, where it works and what it does."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,f1,q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label("rtfd · keys", id="help-title")
            yield DataTable(id="help-table", show_cursor=False)
            yield Label(
                "Letter keys are typed into the SQL editor while it has the focus: "
                "press esc to leave it. Keys that make no sense right now are greyed out "
                "in the footer.",
                id="help-note",
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "where", "what it does")
        table.add_rows(HELP_ROWS)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class StoppingScreen(ModalScreen[None]):
    """Shown from the quit key until every component is stopped; swallows further keys."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "noop", show=False)]

    def compose(self) -> ComposeResult:
        with Vertical(id="stopping-box"):
            yield Label("stopping…", id="stopping-title")
            yield Label("generator, stream and broker are shutting down", id="stopping-detail")
            yield LoadingIndicator()

    def show_detail(self, text: str) -> None:
        self.query_one("#stopping-detail", Label).update(text)

    def action_noop(self) -> None:
        """Quitting cannot be undone half way."""
