"""Alert triage in the console: open a case, confirm / clear / undo, the state in the alerts list;
and the Models tab's promotion comparisons."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from textual.widgets import DataTable, Label, Static, TabbedContent

from rtfd.config import Settings
from rtfd.tui.backends import Services, real_query_service
from rtfd.tui.case import CaseScreen
from rtfd.tui.panels import LivePanel, ModelPanel
from rtfd.tui.screens import HelpScreen
from tests.tui.conftest import SIZE, RecordingApp, wait_for
from tests.tui.fakes import (
    T0,
    FakeAlertFeed,
    FakeQueryService,
    FakeRegistry,
    FakeResult,
    FakeSupervisor,
    alerts,
    fake_services,
    write_enriched,
)

pytestmark = pytest.mark.tui

RECENT = ["transaction_id", "timestamp", "merchant_id", "amount", "location", "fraud_score",
          "is_fraud"]  # fmt: skip


class CaseQueryService(FakeQueryService):
    """Answers the case's two queries with the alert's card history and merchant risk."""

    def run(self, sql: str, limit: int | None = None) -> FakeResult:
        if "WHERE user_id" in sql:
            self.queries.append(sql)
            rows = [
                (f"tx_hist_{i}", f"2025-06-14T18:{29 - i:02d}:00Z", "m0042", 10.0 + i, "Lyon",
                 0.05 * i, False)
                for i in range(6)
            ]  # fmt: skip
            return FakeResult(RECENT, rows, len(rows), False, 0.001)
        if "merchant_fraud_rate_7d" in sql:
            self.queries.append(sql)
            cols = ["merchant_id", "merchant_fraud_rate_7d", "merchant_volume_7d",
                    "merchant_fraud_rate_28d", "merchant_volume_28d"]  # fmt: skip
            return FakeResult(cols, [("m0042", 0.081, 1234.0, 0.034, 5120.0)], 1, False, 0.001)
        return super().run(sql, limit)


def triage_app(settings: Settings, supervisor: FakeSupervisor) -> RecordingApp:
    return RecordingApp(settings, supervisor, services=fake_services(query=CaseQueryService))


async def alerts_shown(pilot: Any, app: RecordingApp, n: int = 4) -> list[dict[str, Any]]:
    await wait_for(pilot, lambda: not app.starting and FakeAlertFeed.instances, "start-up")
    batch = alerts(n)
    FakeAlertFeed.instances[0].push(batch)
    live = app.query_one(LivePanel)
    await wait_for(pilot, lambda: live.alerts_table.row_count == n, "the alerts")
    return batch


async def open_case(pilot: Any, app: RecordingApp, row: int = 0) -> CaseScreen:
    live = app.query_one(LivePanel)
    live.alerts_table.focus()
    live.alerts_table.move_cursor(row=row)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, CaseScreen), "the case screen")
    screen = app.screen
    assert isinstance(screen, CaseScreen)
    await wait_for(pilot, lambda: screen.case is not None, "the case's data")
    return screen


def state_column(app: RecordingApp) -> list[str]:
    table = app.query_one(LivePanel).alerts_table
    return [str(table.get_row_at(i)[4]) for i in range(table.row_count)]


def case_text(screen: CaseScreen, selector: str) -> str:
    widget = screen.query_one(selector)
    return str(widget.render()) if isinstance(widget, Static) else str(widget)


async def test_enter_on_an_alert_opens_its_case_with_reasons_history_and_merchant_risk(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = triage_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        batch = await alerts_shown(pilot, app)
        newest = batch[-1]  # the list is newest first
        screen = await open_case(pilot, app)
        assert screen.transaction_id == newest["transaction_id"]
        title = str(screen.query_one("#case-title", Label).content)
        assert newest["transaction_id"] in title and "open" in title
        for reason in newest["reasons"]:
            assert reason in case_text(screen, "#case-reasons")
        risk = case_text(screen, "#case-risk")
        assert "m0042" in risk and "0.081" in risk and "5,120" in risk
        table = screen.query_one("#case-recent", DataTable)
        assert table.row_count == 6
        assert str(table.get_row_at(0)[1]) == "tx_hist_0"  # newest first, as the lake gave it
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CaseScreen), "the live view")
        assert supervisor.labels == []


async def test_confirm_clear_and_undo_publish_analyst_labels_and_show_in_the_list(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = triage_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        batch = await alerts_shown(pilot, app)
        tx = batch[-2]["transaction_id"]
        screen = await open_case(pilot, app, row=1)
        assert screen.check_action("undo", ()) is None  # nothing to undo on an open alert
        await pilot.press("f")
        await wait_for(pilot, lambda: len(supervisor.labels) == 1, "the fraud label")
        await wait_for(pilot, lambda: "confirmed" in str(screen.query_one("#case-title",
                       Label).content), "the confirmed state")  # fmt: skip
        await pilot.press("escape")
        await wait_for(pilot, lambda: state_column(app)[1] == "confirmed", "confirmed in the list")
        assert state_column(app) == ["open", "confirmed", "open", "open"]

        screen = await open_case(pilot, app, row=1)
        await pilot.press("l")
        await wait_for(pilot, lambda: len(supervisor.labels) == 2, "the legit label")
        await wait_for(pilot, lambda: screen.check_action("undo", ()), "the undo key")
        await pilot.press("escape")
        await wait_for(pilot, lambda: state_column(app)[1] == "cleared", "cleared in the list")

        screen = await open_case(pilot, app, row=1)
        await pilot.press("u")
        await wait_for(pilot, lambda: len(supervisor.labels) == 3, "the withdrawal")
        await pilot.press("escape")
        await wait_for(pilot, lambda: state_column(app)[1] == "open", "open again in the list")

    first, second, third = supervisor.labels
    assert all(r["transaction_id"] == tx and r["source"] == "analyst" for r in supervisor.labels)
    assert (first["label"], second["label"], third["label"]) == (1, 0, 0)
    assert "withdrawn" not in first and "withdrawn" not in second and third["withdrawn"] is True
    assert first["reported_at"] < second["reported_at"] < third["reported_at"]


async def test_new_alerts_keep_the_cursor_and_the_states(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = triage_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await alerts_shown(pilot, app)
        await open_case(pilot, app, row=2)
        await pilot.press("f")
        await wait_for(pilot, lambda: supervisor.labels, "the label")
        await pilot.press("escape")
        live = app.query_one(LivePanel)
        await wait_for(pilot, lambda: state_column(app)[2] == "confirmed", "the state")
        FakeAlertFeed.instances[0].push(alerts(2, seed=99, start=T0 + timedelta(hours=1)))
        await wait_for(pilot, lambda: live.alerts_table.row_count == 6, "the new alerts")
        assert state_column(app)[4] == "confirmed"  # moved down two rows, still confirmed
        assert live.alerts_table.cursor_row == 4  # the cursor followed the alert


async def test_a_dead_broker_keeps_the_alert_open_and_says_why(
    settings: Settings,
) -> None:
    supervisor = FakeSupervisor(settings, fail_labels=True)
    app = triage_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await alerts_shown(pilot, app)
        screen = await open_case(pilot, app)
        await pilot.press("f")
        status = screen.query_one("#case-status", Label)
        await wait_for(pilot, lambda: "not recorded" in str(status.content), "the error line")
        assert "no broker acknowledged" in str(status.content)
        assert any(t[0] == "Label not published" and t[2] == "error" for t in app.toasts)
        assert screen.book.state(screen.transaction_id) == "open"
        assert screen.check_action("decide", ("fraud",))  # the analyst can try again
        await pilot.press("escape")
        await wait_for(pilot, lambda: state_column(app)[0] == "open", "still open")


async def test_keys_wait_while_a_decision_is_being_published(settings: Settings) -> None:
    gate = threading.Event()
    supervisor = FakeSupervisor(settings, labels_gate=gate)
    app = triage_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await alerts_shown(pilot, app)
        screen = await open_case(pilot, app)
        await pilot.press("f")
        await wait_for(pilot, lambda: screen.pending is not None, "the publish in flight")
        assert screen.check_action("decide", ("legit",)) is None
        await pilot.press("l")  # ignored: one decision at a time
        await pilot.press("escape")  # ignored: the case stays until the broker answered
        await pilot.pause(0.1)
        assert app.screen is screen
        gate.set()
        await wait_for(pilot, lambda: screen.pending is None, "the acknowledgement")
        await pilot.pause(0.1)
        assert [r["label"] for r in supervisor.labels] == [1]


async def test_a_case_reads_the_real_parquet_through_the_query_service(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    write_enriched(settings, 40)
    registry = FakeRegistry()
    services = Services(
        query_service=real_query_service,
        alert_feed=FakeAlertFeed,
        model_catalog=registry.catalog,
        rollback=registry.rollback,
    )
    app = RecordingApp(settings, supervisor, services=services)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting and FakeAlertFeed.instances, "start-up")
        # An alert on a transaction of the lake: tx number 7 of the written day.
        alert = {**alerts(1)[0], "transaction_id": f"tx_{7:024x}", "alert_id": "a7"}
        import pyarrow.parquet as pq

        table = pq.read_table(settings.enriched_dir).to_pandas()
        user = table.loc[table["transaction_id"] == alert["transaction_id"], "user_id"].iloc[0]
        alert["user_id"] = user
        FakeAlertFeed.instances[0].push([alert])
        live = app.query_one(LivePanel)
        await wait_for(pilot, lambda: live.alerts_table.row_count == 1, "the alert")
        screen = await open_case(pilot, app)
        assert screen.case is not None
        expected = table[table["user_id"] == user].sort_values("timestamp", ascending=False)
        shown = [r["transaction_id"] for r in screen.case.recent]
        assert shown == expected["transaction_id"].tolist()[: len(shown)] and shown
        recent = screen.query_one("#case-recent", DataTable)
        marks = [str(recent.get_row_at(i)[-1]) for i in range(recent.row_count)]
        assert marks.count("◀ alert") == 1
        # This lake predates merchant risk columns: the case says so instead of failing.
        assert screen.case.problem and "merchant risk" in screen.case.problem


async def test_the_models_tab_shows_the_comparison_behind_each_promotion(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = RecordingApp(settings, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting, "start-up")
        await pilot.press("3")
        panel = app.query_one(ModelPanel)
        await wait_for(pilot, lambda: panel.catalog is not None, "the catalog")
        table = app.query_one("#versions", DataTable)
        assert str(table.get_row_at(0)[9]) == "0.862 vs 0.845"
        assert str(table.get_row_at(1)[9]) == "-"  # never promoted through a comparison
        detail = str(app.query_one("#model-detail").render())
        assert "AP 0.8620 vs 0.8450 for v0001 on v0002's holdout" in detail
        assert "newer: decides" in detail


def test_promotion_texts_read_the_registry_records() -> None:
    from rtfd.ml.registry import Comparison, HoldoutScore, Promotion
    from rtfd.tui.backends import promotion_texts

    own = HoldoutScore("v0003", "challenger", None, None, 900, 9, 0.71, 0.74, False)
    newer = HoldoutScore("v0002", "champion", None, None, 1200, 14, 0.66, 0.61, True)
    comparison = Comparison("v0003", "v0002", (own, newer))
    promotion = Promotion("v0003", "2026-12-05T01:02:03+00:00", "retrain", False, comparison)
    short, whole = promotion_texts(promotion)
    assert short == "0.660 vs 0.610"  # the deciding holdout, not the challenger's own
    assert "2026-12-05 01:02:03" in whole and "AP 0.7100 vs 0.7400" in whole
    assert promotion_texts(replace(promotion, forced=True))[0] == "forced"
    assert promotion_texts(replace(promotion, comparison=None))[0] == "first"
    assert promotion_texts(None) == ("", "")


async def test_app_keys_on_the_case_screen_do_not_break_it(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = triage_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await alerts_shown(pilot, app)
        await open_case(pilot, app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CaseScreen), "back to the case")
        await pilot.press("2")  # a tab key leaves the case for that tab
        tabs = app.query_one(TabbedContent)
        await wait_for(
            pilot,
            lambda: not isinstance(app.screen, CaseScreen) and tabs.active == "query",
            "the query tab",
        )
        await open_case_from_live(pilot, app)
        await pilot.press("1")
        await wait_for(pilot, lambda: not isinstance(app.screen, CaseScreen), "the live view")
        assert tabs.active == "live" and app.is_running


async def open_case_from_live(pilot: Any, app: RecordingApp) -> None:
    await pilot.press("escape", "1")  # leave the SQL editor, then the live tab
    await wait_for(pilot, lambda: app.query_one(TabbedContent).active == "live", "the live tab")
    await open_case(pilot, app)


async def test_a_restarted_console_shows_earlier_verdicts(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    from tests.unit.test_analyst_labels import YOUNG, analyst, write_labels

    batch = alerts(3)
    write_labels(
        settings,
        "earlier",
        [analyst(batch[0]["transaction_id"], 1, YOUNG), analyst(batch[1]["transaction_id"], 0,
         YOUNG)],
    )  # fmt: skip
    registry = FakeRegistry()
    services = Services(
        query_service=real_query_service,
        alert_feed=FakeAlertFeed,
        model_catalog=registry.catalog,
        rollback=registry.rollback,
    )
    app = RecordingApp(settings, supervisor, services=services)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting and FakeAlertFeed.instances, "start-up")
        FakeAlertFeed.instances[0].push(batch)
        await wait_for(
            pilot,
            lambda: state_column(app) == ["open", "cleared", "confirmed"],
            "the states of the earlier session",
        )
