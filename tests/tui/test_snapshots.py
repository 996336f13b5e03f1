"""Snapshots of the console at a fixed terminal size, with a fake supervisor and fixed data.

Refresh after a deliberate visual change with ``pytest tests/tui --snapshot-update`` and look at
the SVGs under ``__snapshots__`` before committing them. The live tab is checked through its
screenshot's content instead (its alert-rate chart samples wall-clock seconds).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from rtfd.config import Settings
from rtfd.tui.app import RtfdApp
from tests.tui.conftest import SIZE, wait_for
from tests.tui.fakes import FakeAlertFeed, FakeSupervisor, alerts, fake_services
from tests.tui.screenshots import capture, feed_live_data

pytestmark = pytest.mark.tui

Compare = Callable[..., bool]


class FrozenClockApp(RtfdApp):
    """No wall-clock sampling, so the charts do not depend on how long the test ran."""

    TICK_S = 3600.0


def console(settings: Settings) -> RtfdApp:
    app = FrozenClockApp(settings, FakeSupervisor(settings), services=fake_services())
    app.animation_level = "none"
    return app


async def ready(pilot: Pilot[Any], app: RtfdApp) -> None:
    await wait_for(pilot, lambda: not app.starting, "start-up")
    await wait_for(pilot, lambda: app.model_panel.catalog is not None, "the model catalog")


def test_models_tab(snap_compare: Compare, settings: Settings) -> None:
    app = console(settings)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, app)
        await pilot.press("3")
        app.clear_notifications()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_query_tab_with_a_result(snap_compare: Compare, settings: Settings) -> None:
    app = console(settings)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: app.query_panel._examples, "the saved queries")
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.query_panel.last_sql, "the result")
        await pilot.press("escape")
        app.clear_notifications()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare: Compare, settings: Settings) -> None:
    app = console(settings)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, app)
        app.clear_notifications()

    assert snap_compare(app, press=["question_mark"], terminal_size=SIZE, run_before=run_before)


LIVE_EXPECTED = (
    "kafka 127.0.0.1:9092",
    "on 200 tx/s",
    "v0002 xgboost supervised thr 0.420",
    "batch ",
    "Scored transactions",
    "120 seen",
    "Alerts",
    "6 received",
    "open       9 transaction",  # the triage state, then the reasons
    "input rate",
    "latency p99",
    "alert rate",
    "Retrain",
)


def screen_text(svg: str) -> str:
    """The characters of an SVG screenshot (the segments of a line are consecutive)."""
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def test_live_screenshot_shows_status_scores_alerts_and_charts(
    settings: Settings, tmp_path: Path
) -> None:
    supervisor = FakeSupervisor(settings)
    app = RtfdApp(settings, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting and FakeAlertFeed.instances, "start-up")
        feed_live_data(supervisor, samples=30)
        FakeAlertFeed.instances[-1].push(alerts(6))
        await wait_for(pilot, lambda: app.live.alerts_total == 6, "the alerts")
        app.clear_notifications()
        # DataTable sizes its columns when idle: wait until a rendering shows everything.
        await wait_for(
            pilot,
            lambda: all(e in screen_text(app.export_screenshot()) for e in LIVE_EXPECTED),
            "a complete rendering",
            timeout=15,
        )
        path = Path(app.save_screenshot("live.svg", str(tmp_path)))
    text = screen_text(path.read_text(encoding="utf-8"))
    for expected in LIVE_EXPECTED:
        assert expected in text, expected


async def test_docs_screenshots_are_written(settings: Settings, tmp_path: Path) -> None:
    files = await capture(tmp_path, settings)
    assert sorted(p.name for p in files) == [
        "tui_help.svg",
        "tui_live.svg",
        "tui_models.svg",
        "tui_query.svg",
    ]
    assert all(p.stat().st_size > 10_000 for p in files)


def test_case_screen(snap_compare: Compare, settings: Settings) -> None:
    from tests.tui.test_triage import CaseQueryService

    app = FrozenClockApp(
        settings, FakeSupervisor(settings), services=fake_services(query=CaseQueryService)
    )
    app.animation_level = "none"

    async def run_before(pilot: Pilot[Any]) -> None:
        from rtfd.tui.case import CaseScreen

        await ready(pilot, app)
        FakeAlertFeed.instances[-1].push(alerts(3))
        await wait_for(pilot, lambda: app.live.alerts_table.row_count == 3, "the alerts")
        app.live.alerts_table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CaseScreen), "the case")
        screen = app.screen
        assert isinstance(screen, CaseScreen)
        await wait_for(pilot, lambda: screen.case is not None, "the case's data")
        await pilot.press("f")
        await wait_for(pilot, lambda: screen.book.state(screen.transaction_id) != "open", "f")
        app.clear_notifications()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
