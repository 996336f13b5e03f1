"""The Monitor tab: a real report over a real lake, read only while the tab is shown."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from textual.widgets import DataTable, Label, Sparkline, Static, TabbedContent

from rtfd.config import Settings
from rtfd.tui.monitor import MonitorPanel
from tests.monitor_lake import install_model, scored, training_rows, write_enriched
from tests.tui.conftest import SIZE, RecordingApp, wait_for
from tests.tui.fakes import FakeRegistry, FakeSupervisor, fake_services

pytestmark = pytest.mark.tui


def make_app(settings: Settings) -> RecordingApp:
    return RecordingApp(settings, FakeSupervisor(settings), services=fake_services(FakeRegistry()))


def write_lake(settings: Settings, *, shift: float = 0.0) -> pd.DataFrame:
    install_model(settings)
    live = training_rows().copy()
    live["amount_log1p"] += shift
    rows = scored(live, settings)
    hours_ago = np.linspace(5.5, 0.1, len(rows))
    stamps = datetime.now(UTC) - pd.to_timedelta(hours_ago, unit="h")
    write_enriched(settings, rows, pd.Series(stamps))
    return rows


def advice_text(app: RecordingApp) -> str:
    return str(app.query_one("#monitor-advice", Static).render())


async def test_key_5_opens_the_monitor_with_drift_and_the_retrain_banner(
    settings: Settings,
) -> None:
    rows = write_lake(settings, shift=1.5)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(MonitorPanel)
        assert panel.reads == 0  # nothing read while the tab is hidden
        await pilot.press("5")
        assert app.query_one(TabbedContent).active == "monitor"
        await wait_for(pilot, lambda: panel.reads >= 1, "the first report", timeout=20)
        report = panel.report
        assert report is not None and report.window_rows == len(rows)
        text = advice_text(app)
        assert text.startswith("RETRAIN SUGGESTED · feature drift: PSI > 0.25 for amount_log1p")
        assert app.query_one("#monitor-advice").has_class("suggested")
        table = app.query_one("#psi", DataTable)
        assert table.row_count == 1 + 36  # the score, then every feature
        assert table.get_row_at(1)[:3] == ["amount_log1p", f"{report.features[0].psi:.3f}",
                                           "significant"]  # fmt: skip
        assert app.focused is table
        alerts = app.query_one("#alerts-spark", Sparkline)
        assert list(alerts.data or []) == [h.alerts for h in report.alerts_per_hour]
        assert sum(alerts.data or []) == int(rows["is_fraud"].sum())
        assert len(alerts.data or []) == 24
        assert list(app.query_one("#score-spark", Sparkline).data or []) == report.score_histogram
        label = str(app.query_one("#alerts-label", Label).render())
        assert label.startswith("alerts / hour: ")
        assert not app.toasts


async def test_a_stable_lake_shows_no_retrain(settings: Settings) -> None:
    write_lake(settings)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(MonitorPanel)
        await pilot.press("5")
        await wait_for(pilot, lambda: panel.reads >= 1, "the first report", timeout=20)
        assert advice_text(app).startswith("No retrain suggested")
        assert app.query_one("#monitor-advice").has_class("ok")
        bands = {str(r[2]) for r in (app.query_one("#psi", DataTable).get_row_at(i)
                                     for i in range(37))}  # fmt: skip
        assert bands == {"stable"}


async def test_nothing_to_monitor_is_a_state_not_a_crash(settings: Settings) -> None:
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(MonitorPanel)
        await pilot.press("5")
        await wait_for(pilot, lambda: panel.reads >= 1, "the first read", timeout=20)
        assert advice_text(app).startswith("Monitor: no live model in ")
        assert app.query_one("#monitor-advice").has_class("waiting")
        assert not app.toasts
        install_model(settings)
        await wait_for(pilot, lambda: not panel.loading, "any read in flight", timeout=20)
        reads = panel.reads
        panel.refresh_report()
        await wait_for(pilot, lambda: panel.reads > reads, "the next read", timeout=20)
        assert "no scored transactions" in advice_text(app)


async def test_the_monitor_rereads_while_shown_and_stops_when_hidden(settings: Settings) -> None:
    write_lake(settings)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(MonitorPanel)
        panel.REFRESH_S = 0.2
        await pilot.press("5")
        await wait_for(pilot, lambda: panel.reads >= 3, "three reads while shown", timeout=30)
        await pilot.press("1")
        await wait_for(pilot, lambda: not panel.shown, "the tab to hide")
        await wait_for(pilot, lambda: not panel.loading, "the read in flight to end", timeout=20)
        reads = panel.reads
        await pilot.pause(0.6)  # three refresh periods: no read may start while hidden
        assert panel.reads == reads and panel._timer is None
        await pilot.press("5")
        await wait_for(pilot, lambda: panel.reads > reads, "a read on showing again", timeout=20)
