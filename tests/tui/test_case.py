"""Alert triage in the console: open a case, confirm, clear, undo, and the state in the list.

The case reads a real lake with the real DuckDB query service; only the supervisor (which
publishes the labels) and the alert consumer are fakes. ``tests/kafka/test_triage_kafka.py``
publishes through the real supervisor to a real broker.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from textual.widgets import DataTable, Label, Static

from rtfd.config import Settings
from rtfd.features.names import FEATURE_NAMES
from rtfd.schemas import LABEL
from rtfd.stream.sinks import labels_arrow_schema
from rtfd.tui.backends import Services
from rtfd.tui.case import CaseScreen
from tests.tui.conftest import SIZE, RecordingApp, wait_for
from tests.tui.fakes import FakeAlertFeed, FakeSupervisor, alerts

pytestmark = pytest.mark.tui

T0 = datetime(2025, 6, 14, 18, 0, tzinfo=UTC)
CARD = "u000042"
MERCHANT = "m0007"


def write_lake(settings: Settings, *, card_rows: int = 30) -> list[str]:
    """The card's transactions (one every minute) and some other traffic, as the stream writes
    them; returns the card's transaction ids, oldest first."""
    ids = [f"tx_card_{i:03d}" for i in range(card_rows)]
    rows = []
    for i, tid in enumerate(ids):
        rows.append(
            (tid, CARD, MERCHANT if i % 3 == 0 else f"mx{i:03d}", T0 + timedelta(minutes=i))
        )
    rows += [(f"tx_other_{i}", f"u{i:06d}", MERCHANT, T0 + timedelta(seconds=i)) for i in range(50)]
    frame = pd.DataFrame(rows, columns=["transaction_id", "user_id", "merchant_id", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["amount"] = [10.0 + i for i in range(len(frame))]
    frame["currency"] = "EUR"
    frame["location"] = "Lyon"
    for f in FEATURE_NAMES:
        frame[f] = 0.5
    frame["merchant_fraud_rate_7d"] = 0.0123
    frame["merchant_volume_7d"] = 812.0
    frame["fraud_score"] = [0.01 * (i % 90) for i in range(len(frame))]
    frame["is_fraud"] = frame["fraud_score"] >= 0.42
    frame["model_version"] = "v0002"
    part = settings.enriched_dir / "event_date=2025-06-14"
    part.mkdir(parents=True)
    frame.to_parquet(part / "part-0.parquet", index=False)
    return ids


def write_analyst_label(settings: Settings, tid: str, label: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = {
        "transaction_id": tid,
        "label": label,
        "fraud_type": None,
        "reported_at": T0 + timedelta(hours=1),
        "source": "analyst",
        "retracted": False,
        "kafka_partition": 0,
        "kafka_offset": 0,
    }
    part = settings.labels_dir / "report_date=2025-06-14"
    part.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], labels_arrow_schema()), part / "part-0.parquet")


def alert_for(tid: str) -> dict[str, Any]:
    alert = alerts(1)[0]
    alert.update(transaction_id=tid, alert_id=f"{tid}:v0002", user_id=CARD, merchant_id=MERCHANT)
    return alert


def make_app(settings: Settings, supervisor: FakeSupervisor) -> RecordingApp:
    services = Services()
    services.alert_feed = FakeAlertFeed
    return RecordingApp(settings, supervisor, services=services)


async def open_case(pilot: Any, app: RecordingApp, batch: list[dict[str, Any]], row: int) -> Any:
    await wait_for(pilot, lambda: not app.starting, "start-up")
    FakeAlertFeed.instances[0].push(batch)
    await wait_for(pilot, lambda: app.live.alerts_table.row_count == len(batch), "the alerts")
    table = app.live.alerts_table
    table.focus()
    table.move_cursor(row=row)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, CaseScreen), "the case screen")
    screen = app.screen
    await wait_for(pilot, lambda: screen.case is not None, "the case to load", timeout=15)
    return screen


def state_cell(app: RecordingApp, row: int) -> str:
    return str(app.live.alerts_table.get_row_at(row)[4])


async def test_enter_on_an_alert_opens_its_case_from_the_lake(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    ids = write_lake(settings)
    app = make_app(settings, supervisor)
    target = ids[20]
    batch = [alert_for(ids[25]), alert_for(target)]
    async with app.run_test(size=SIZE) as pilot:
        # Newest first: alerts of one instant show in reverse arrival order, the target on top.
        screen = await open_case(pilot, app, batch, row=0)
        assert screen.transaction_id == target
        case = screen.case
        # The card's 20 newest transactions, newest first, each with its score.
        got = [r["transaction_id"] for r in case.transactions]
        assert got == list(reversed(ids))[:20]
        card = screen.query_one("#case-card", DataTable)
        assert card.row_count == 20
        assert str(card.get_row_at(0)[-1]) == ids[-1]
        assert str(card.get_row_at(0)[2]) == f"{0.01 * (len(ids) - 1):.3f}"
        # Why: the alert's reasons and the transaction's feature values.
        reasons = str(screen.query_one("#case-reasons", Static).content)
        assert all(r in reasons for r in batch[1]["reasons"])
        assert case.features["amount_zscore"] == pytest.approx(0.5)
        # The merchant's risk figures from its newest row, and its totals.
        merchant = str(screen.query_one("#case-merchant", Static).content)
        assert "merchant_fraud_rate_7d" in merchant and "0.0123" in merchant
        assert case.merchant["transactions"] == 50 + len(range(0, 30, 3))
        assert "none yet" in str(screen.query_one("#case-labels", Static).content)
        title = str(screen.query_one("#case-title", Label).content)
        assert target in title and CARD in title and "open" in title
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CaseScreen), "the live tab")


async def test_confirm_clear_and_undo_publish_analyst_labels_and_show_in_the_list(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    ids = write_lake(settings)
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_case(pilot, app, [alert_for(ids[5])], row=0)
        tid = screen.transaction_id
        assert state_cell(app, 0) == "open"
        assert screen.check_action("undo", ()) is None  # nothing to undo yet

        await pilot.press("f")
        await wait_for(pilot, lambda: len(supervisor.labels) == 1, "the fraud label")
        await wait_for(pilot, lambda: state_cell(app, 0) == "confirmed", "confirmed")
        first = supervisor.labels[0]
        assert first["transaction_id"] == tid and first["label"] == 1
        assert first["source"] == "analyst" and first["retracted"] is False
        LABEL.validate(first)  # a decision time in the wire format
        assert screen.check_action("decide", ("fraud",)) is None  # the same decision twice
        assert "confirmed" in str(screen.query_one("#case-title", Label).content)

        await pilot.press("u")
        await wait_for(pilot, lambda: len(supervisor.labels) == 2, "the undo")
        await wait_for(pilot, lambda: state_cell(app, 0) == "open", "open again")
        assert supervisor.labels[1]["retracted"] is True and supervisor.labels[1]["label"] == 1

        await pilot.press("c")
        await wait_for(pilot, lambda: len(supervisor.labels) == 3, "the legit label")
        await wait_for(pilot, lambda: state_cell(app, 0) == "cleared", "cleared")
        assert supervisor.labels[2]["label"] == 0 and not supervisor.labels[2]["retracted"]

        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CaseScreen), "the live tab")
        assert state_cell(app, 0) == "cleared"
        toasts = app.toast_text()
        assert "confirmed fraud" in toasts and "cleared as a false positive" in toasts


async def test_a_decision_in_flight_shows_and_blocks_a_second_one(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    ids = write_lake(settings)
    supervisor.label_gate = threading.Event()
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_case(pilot, app, [alert_for(ids[3])], row=0)
        await pilot.press("f")
        await wait_for(pilot, lambda: state_cell(app, 0) == "open…", "the pending mark")
        assert screen.check_action("decide", ("legit",)) is None
        assert screen.check_action("undo", ()) is None
        await pilot.press("c")  # ignored while the first is in flight
        supervisor.label_gate.set()
        await wait_for(pilot, lambda: state_cell(app, 0) == "confirmed", "confirmed")
        assert [r["label"] for r in supervisor.labels] == [1]


async def test_a_broker_that_is_down_leaves_the_alert_open_and_says_so(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    ids = write_lake(settings)
    supervisor.labels_down = True
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_case(pilot, app, [alert_for(ids[3])], row=0)
        await pilot.press("f")
        await wait_for(pilot, lambda: "Label not published" in app.toast_text(), "the error")
        await wait_for(pilot, lambda: state_cell(app, 0) == "open", "open")
        assert "no Kafka broker answers" in app.toast_text()
        assert screen.check_action("decide", ("fraud",)) is True  # it can be tried again
        supervisor.labels_down = False
        await pilot.press("f")
        await wait_for(pilot, lambda: state_cell(app, 0) == "confirmed", "confirmed")


async def test_a_decision_already_in_the_labels_table_shows_when_the_case_opens(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    """A console restarted after deciding: the lake remembers what the analyst said."""
    ids = write_lake(settings)
    write_analyst_label(settings, ids[7], 0)
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_case(pilot, app, [alert_for(ids[7])], row=0)
        await wait_for(pilot, lambda: state_cell(app, 0) == "cleared", "the stored decision")
        labels = str(screen.query_one("#case-labels", Static).content)
        assert "analyst" in labels and "training label: legit" in labels
        assert screen.check_action("undo", ()) is True


async def test_a_case_without_a_lake_still_shows_the_alert(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_case(pilot, app, [alert_for("tx_not_there")], row=0)
        card = screen.query_one("#case-card", DataTable)
        assert "not in the lake yet" in " ".join(str(c) for c in card.get_row_at(0))
        assert "tx_not_there" in str(screen.query_one("#case-title", Label).content)
        await pilot.press("f")
        await wait_for(pilot, lambda: supervisor.labels, "the label")
