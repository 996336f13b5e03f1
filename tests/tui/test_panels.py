"""The query, model and log panels, and the Parquet poll for scored rows (fake services)."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, Label, Log, OptionList, TextArea

from rtfd.config import Settings
from rtfd.tui.panels import LivePanel, ModelPanel, QueryPanel, read_new_lines
from tests.tui.conftest import SIZE, RecordingApp, wait_for
from tests.tui.fakes import (
    FakeQueryService,
    FakeRegistry,
    FakeResult,
    FakeSupervisor,
    fake_catalog_rows,
    fake_services,
    scored_rows,
)

pytestmark = pytest.mark.tui


def status_text(app: RecordingApp) -> str:
    return str(app.query_one("#query-status", Label).content)


async def open_query_tab(pilot: Any, app: RecordingApp) -> QueryPanel:
    await wait_for(pilot, lambda: not app.starting, "start-up")
    await pilot.press("2")
    panel = app.query_one(QueryPanel)
    await wait_for(pilot, lambda: panel._examples, "the saved queries")
    return panel


async def test_f5_runs_the_sql_and_shows_rows_count_and_time(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = RecordingApp(settings, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_query_tab(pilot, app)
        app.query_one("#sql", TextArea).text = "SELECT user_id FROM enriched_transactions"
        await pilot.press("f5")
        await wait_for(pilot, lambda: panel.last_sql, "the result")
        table = app.query_one("#results", DataTable)
        assert table.row_count == 25
        assert [str(c.label) for c in table.columns.values()] == ["user_id", "txns", "max_score"]
        assert status_text(app) == "✔ 25 rows · 12 ms"


async def test_the_row_cap_is_applied_and_said(settings: Settings) -> None:
    capped = settings.replace(query_row_cap=10)
    supervisor = FakeSupervisor(capped)
    app = RecordingApp(capped, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_query_tab(pilot, app)
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: panel.last_sql, "the result")
        assert app.query_one("#results", DataTable).row_count == 10
        assert status_text(app).startswith("✔ 25 rows (showing the first 10)")


async def test_bad_sql_says_why_in_the_panel_and_a_notification(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = RecordingApp(settings, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        await open_query_tab(pilot, app)
        app.query_one("#sql", TextArea).text = "SELEC bad"
        await pilot.press("f5")
        await wait_for(pilot, lambda: "✖" in status_text(app), "the error")
        assert status_text(app) == '✖ Query error: Parser Error: syntax error at or near "bad"'
        assert ("Query error", 'Parser Error: syntax error at or near "bad"', "error") in app.toasts
        await pilot.press("escape", "1")  # the app is still usable
        assert app.focused is not None and app.focused.id == "scored"


async def test_a_saved_query_loads_into_the_editor_and_runs(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = RecordingApp(settings, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_query_tab(pilot, app)
        options = app.query_one("#examples", OptionList)
        assert options.option_count == 2
        options.focus()
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: panel.last_sql, "the result")
        assert app.query_one("#sql", TextArea).text.startswith("SELECT floor(fraud_score")
        assert (panel.last_sql or "").startswith("SELECT floor(fraud_score")


async def test_ctrl_s_exports_the_last_result_to_csv(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    services = fake_services()
    made: list[FakeQueryService] = []

    def factory(s: Settings) -> FakeQueryService:
        made.append(FakeQueryService(s))
        return made[-1]

    services.query_service = factory
    app = RecordingApp(settings, supervisor, services=services)
    async with app.run_test(size=SIZE) as pilot:
        await open_query_tab(pilot, app)
        await pilot.press("ctrl+s")
        assert ("", "Run a query first, then export its result.", "warning") in app.toasts
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.query_one(QueryPanel).last_sql, "the result")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any(t[0] == "Exported" for t in app.toasts), "export")
    sql, path = next(e for m in made for e in m.exports)
    assert sql.startswith("SELECT * FROM enriched_transactions")
    assert path.parent == settings.data_dir / "exports" and path.suffix == ".csv"
    assert path.exists()


async def test_models_panel_lists_versions_and_marks_the_live_one(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = RecordingApp(settings, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting, "start-up")
        await pilot.press("3")
        panel = app.query_one(ModelPanel)
        await wait_for(pilot, lambda: panel.catalog is not None, "the catalog")
        table = app.query_one("#versions", DataTable)
        assert table.row_count == 2
        first = table.get_row_at(0)
        assert str(first[0]) == "●" and str(first[1]) == "v0002"
        assert first[5:9] == ["0.991", "0.874", "0.810", "0.770"]
        assert str(table.get_row_at(1)[0]) == ""
        detail = str(app.query_one("#model-detail").render())
        assert "v0002" in detail and "average_precision" in detail


async def test_b_rolls_back_and_the_panel_and_status_follow(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    registry = FakeRegistry()
    app = RecordingApp(settings, supervisor, services=fake_services(registry))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting, "start-up")
        await pilot.press("3")
        panel = app.query_one(ModelPanel)
        await wait_for(pilot, lambda: panel.catalog is not None, "the catalog")
        supervisor.model_version = "v0001"  # what the real registry reports after a rollback
        await pilot.press("b")
        await wait_for(pilot, lambda: registry.rollbacks == 1, "the rollback")
        await wait_for(
            pilot, lambda: panel.catalog and panel.catalog.current == "v0001", "the new catalog"
        )
        assert ("Rolled back", "v0001 is live again", "information") in app.toasts
        await wait_for(
            pilot, lambda: app.status_bar.badge("model").text.startswith("v0001"), "the badge"
        )


async def test_rollback_is_disabled_with_a_single_version(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    registry = FakeRegistry(rows=fake_catalog_rows()[:1])
    app = RecordingApp(settings, supervisor, services=fake_services(registry))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting, "start-up")
        await pilot.press("3")
        panel = app.query_one(ModelPanel)
        await wait_for(pilot, lambda: panel.catalog is not None, "the catalog")
        assert panel.check_action("rollback", ()) is None
        await pilot.press("b")
        await pilot.pause(0.1)
        assert registry.rollbacks == 0


async def test_log_panel_tails_the_log_file(settings: Settings, supervisor: FakeSupervisor) -> None:
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    settings.log_file.write_text("old line 1\nold line 2\n", encoding="utf-8")
    app = RecordingApp(settings, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        log = app.query_one("#log", Log)
        await wait_for(pilot, lambda: log.line_count >= 2, "the existing lines")
        with settings.log_file.open("a", encoding="utf-8") as f:
            f.write("2025-06-14 18:31:00 INFO  rtfd.stream: batch 17 committed\n")
        await wait_for(pilot, lambda: any("batch 17" in line for line in log.lines), "new line")


def test_read_new_lines_follows_appends_and_rotation(tmp_path: Any) -> None:
    path = tmp_path / "rtfd.log"
    assert read_new_lines(path, None, 100) == ([], 0, False)
    path.write_text("a" * 50 + "\nsecond\nthird\npart", encoding="utf-8")
    lines, offset, reset = read_new_lines(path, None, 20)
    assert lines == ["second", "third"] and not reset  # the first, cut line is dropped
    with path.open("a", encoding="utf-8") as f:
        f.write("ial\n")
    assert read_new_lines(path, offset, 20)[0] == ["partial"]
    path.write_text("new\n", encoding="utf-8")
    lines, offset, reset = read_new_lines(path, offset + 8, 20)
    assert (lines, offset, reset) == (["new"], 4, True)


async def test_scored_rows_come_from_the_parquet_when_progress_has_none(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    rows = scored_rows(8)
    seen: list[str] = []

    class PollingService(FakeQueryService):
        def run(self, sql: str, limit: int | None = None) -> FakeResult:
            seen.append(sql)
            cols = list(rows[0])
            fresh = rows if "WHERE" not in sql else []
            return FakeResult(cols, [tuple(r.values()) for r in fresh], len(fresh), False, 0.01)

    services = fake_services(query=PollingService)
    app = RecordingApp(settings, supervisor, services=services)
    async with app.run_test(size=SIZE) as pilot:
        live = app.query_one(LivePanel)
        await wait_for(pilot, lambda: live.scored_total == 8, "polled rows", timeout=10)
        await wait_for(pilot, lambda: any("WHERE timestamp >" in s for s in seen), "a 2nd poll")
        assert f"TIMESTAMPTZ '{rows[-1]['timestamp']}'" in next(
            s for s in seen if "WHERE timestamp >" in s
        )
        assert live.scored_total == 8


async def test_after_a_query_the_result_has_the_focus_and_shortcuts_work(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = RecordingApp(settings, supervisor, services=fake_services())
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_query_tab(pilot, app)
        assert app.focused is not None and app.focused.id == "sql"
        await pilot.press("f5")
        await wait_for(pilot, lambda: panel.last_sql, "the result")
        assert app.focused is not None and app.focused.id == "results"
        await pilot.press("1", "r")
        await wait_for(pilot, lambda: "retrain" in supervisor.calls, "the retrain")
        await pilot.press("2")
        assert app.focused is not None and app.focused.id == "sql"
