"""The console against a fake supervisor: start-up, every key, failures and quitting."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from rtfd.config import Settings
from rtfd.supervisor import Notice, State
from rtfd.tui.panels import LivePanel
from rtfd.tui.screens import HelpScreen, StoppingScreen
from rtfd.tui.widgets import StatusBar, TrainingBar
from tests.tui.conftest import SIZE, RecordingApp, wait_for
from tests.tui.fakes import FakeAlertFeed, FakeRegistry, FakeSupervisor, alerts, fake_services

pytestmark = pytest.mark.tui


def make_app(
    settings: Settings, supervisor: FakeSupervisor, registry: FakeRegistry | None = None
) -> RecordingApp:
    return RecordingApp(settings, supervisor, services=fake_services(registry or FakeRegistry()))


def badge(app: RecordingApp, name: str) -> tuple[str, str]:
    b = app.query_one(StatusBar).badge(name)
    return b.state, b.text


async def started(pilot, app: RecordingApp) -> None:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: not app.starting, "start-up to finish")


async def test_start_brings_every_component_up_and_shows_it(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        assert supervisor.calls[0] == "start"
        assert badge(app, "broker") == ("running", "kafka 127.0.0.1:9092")
        assert badge(app, "model") == ("running", "v0002 xgboost supervised thr 0.420")
        assert badge(app, "generator")[1].startswith("on 200 tx/s")
        assert app.statuses["stream"].state == State.RUNNING
        feed = FakeAlertFeed.instances[0]
        assert feed.started and feed.config == {"bootstrap.servers": "127.0.0.1:9092"}
        assert app.stats.threshold == pytest.approx(0.42)


async def test_bootstrap_training_shows_progress_and_blocks_retrain(settings: Settings) -> None:
    gate = threading.Event()
    supervisor = FakeSupervisor(settings, start_gate=gate)
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        bar = app.query_one(TrainingBar)
        await wait_for(pilot, lambda: bar.display and "step 3" in str(bar.phase.content), "bar")
        assert bar.bar.progress == pytest.approx(75.0)
        assert badge(app, "model")[0] == "starting"
        assert app.check_action("retrain", ()) is None
        await pilot.press("r")
        assert "retrain" not in supervisor.calls
        gate.set()
        await started(pilot, app)
        await wait_for(pilot, lambda: not bar.display, "the training bar to hide")
        assert app.check_action("retrain", ()) is True


async def test_g_pauses_and_resumes_the_generator(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("g")
        await wait_for(pilot, lambda: badge(app, "generator")[1].startswith("paused"), "pause")
        assert supervisor.generator.paused
        assert badge(app, "generator")[0] == "degraded"
        await pilot.press("g")
        await wait_for(pilot, lambda: badge(app, "generator")[1].startswith("on"), "resume")
        assert supervisor.calls.count("toggle_generator") == 2
        assert "generator paused" in app.toast_text()


async def test_plus_and_minus_step_the_rate(settings: Settings, supervisor: FakeSupervisor) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("plus")
        await wait_for(pilot, lambda: supervisor.generator.rate == 500, "rate 500")
        await pilot.press("plus")
        await wait_for(pilot, lambda: supervisor.generator.rate == 1000, "rate 1000")
        await pilot.press("minus", "minus", "minus")
        await wait_for(pilot, lambda: supervisor.generator.rate == 100, "rate 100")
        await wait_for(pilot, lambda: "100 tx/s" in badge(app, "generator")[1], "badge")


async def test_generator_keys_are_disabled_until_it_runs(settings: Settings) -> None:
    gate = threading.Event()
    supervisor = FakeSupervisor(settings, start_gate=gate)
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        assert app.check_action("toggle_generator", ()) is None
        assert app.check_action("rate", (1,)) is None
        await pilot.press("g", "plus")
        assert "toggle_generator" not in supervisor.calls
        gate.set()
        await started(pilot, app)
        assert app.check_action("toggle_generator", ()) is True


async def test_r_retrains_in_the_background_once_and_reports_the_result(
    settings: Settings,
) -> None:
    gate = threading.Event()
    supervisor = FakeSupervisor(settings, retrain_gate=gate)
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("r")
        bar = app.query_one(TrainingBar)
        await wait_for(pilot, lambda: "building features" in str(bar.phase.content), "progress")
        assert app.check_action("retrain", ()) is None
        await pilot.press("r")  # ignored while training
        await pilot.press("2", "1")  # the UI keeps responding during training
        gate.set()
        await wait_for(pilot, lambda: not app.retraining, "the retrain to finish")
        assert supervisor.calls.count("retrain") == 1
        assert not bar.display
        assert badge(app, "model")[1].startswith("v0003")
        assert "v0003 · avg prec 0.912 · ROC AUC 0.991 · promoted" in app.toast_text()
        assert app.check_action("retrain", ()) is True


async def test_number_keys_switch_tabs_and_question_mark_opens_help(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    from textual.widgets import TabbedContent

    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        tabs = app.query_one(TabbedContent)
        for key, tab, focused in (
            ("2", "query", "sql"),
            ("escape", "query", "results"),
            ("3", "models", "versions"),
            ("4", "logs", "log"),
            ("1", "live", "scored"),
        ):
            await pilot.press(key)
            assert tabs.active == tab
            assert app.focused is not None and app.focused.id == focused
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")  # closes the help, does not quit
        assert not isinstance(app.screen, HelpScreen) and not app.stopping


async def test_letter_keys_type_into_the_sql_editor(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    from textual.widgets import TextArea

    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        editor = app.query_one("#sql", TextArea)
        editor.text = ""
        await pilot.press("g", "r", "q")
        assert editor.text == "grq"
        assert "toggle_generator" not in supervisor.calls and not app.retraining
        assert not app.stopping


async def test_progress_fills_the_status_bar_charts_and_scored_table(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    from tests.tui.fakes import scored_rows

    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        rows = scored_rows(6)
        supervisor.progress(dead_letters=2, recent=rows[:3])
        supervisor.progress(
            dead_letters=1, offsets_behind=42, latency_p99_ms=2_500, recent=rows[3:]
        )
        live = app.query_one(LivePanel)
        await wait_for(pilot, lambda: live.scored_total == 6, "scored rows")
        assert (
            badge(app, "stream")[1]
            == "201 rows/s · cap 1,985/s · batch 412 ms · lag 42 · p99 2.50 s"
        )
        assert badge(app, "dlq") == ("degraded", "3")
        assert list(live.chart("latency").values) == [1180.0, 2500.0]
        assert live.scored_table.row_count == 6
        newest = live.scored_table.get_row_at(0)
        assert newest[-1] == rows[-1]["transaction_id"]


async def test_alerts_from_the_topic_show_once_with_reasons(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        feed = FakeAlertFeed.instances[0]
        batch = alerts(5)
        feed.push(batch)
        feed.push(batch[:2])  # at-least-once replays carry the same alert_id
        live = app.query_one(LivePanel)
        await wait_for(pilot, lambda: live.alerts_total == 5, "alerts")
        await pilot.pause(0.1)
        assert live.alerts_total == 5 and live.alerts_table.row_count == 5
        top = live.alerts_table.get_row_at(0)
        assert top[1] == batch[-1]["user_id"]
        assert "3 cities in 1 h" in str(live.alerts_table.get_row_at(4)[-1])
        await wait_for(pilot, lambda: live.chart("alerts").values, "an alert-rate sample")
        assert max(live.chart("alerts").values) == pytest.approx(5.0)


async def test_a_failed_broker_shows_and_the_console_keeps_responding(settings: Settings) -> None:
    supervisor = FakeSupervisor(settings, fail_broker=True)
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        assert badge(app, "broker") == ("failed", "no broker answers at 127.0.0.1:9092")
        assert app.query_one(StatusBar).badge("broker").has_class("-failed")
        assert "Start failed" in app.toast_text()
        assert not FakeAlertFeed.instances  # nothing to consume from
        await pilot.press("2")
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "q")
        await wait_for(pilot, lambda: not app.is_running, "quit")
    assert "stop" in supervisor.calls


async def test_a_broker_that_dies_later_turns_red_with_one_notification(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        app.toasts.clear()
        supervisor.set("broker", State.FAILED, "not answering at 127.0.0.1:9092")
        supervisor.emit(Notice("error", "broker down at 127.0.0.1:9092"))
        await wait_for(pilot, lambda: badge(app, "broker")[0] == "failed", "the failed badge")
        await pilot.pause(0.1)
        assert [t for t in app.toasts if t[2] == "error"] == [
            ("broker failed", "not answering at 127.0.0.1:9092", "error")
        ]
        await pilot.press("3")  # still responsive
        assert app.focused is not None and app.focused.id == "versions"
        supervisor.set("broker", State.RUNNING, "kafka 127.0.0.1:9092")
        await wait_for(pilot, lambda: badge(app, "broker")[0] == "running", "recovery")


@pytest.mark.parametrize("key", ["q", "ctrl+q", "ctrl+c"])
async def test_quit_keys_stop_everything_in_a_worker_then_exit(
    settings: Settings, supervisor: FakeSupervisor, key: str
) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press(key)
        assert app.stopping
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert supervisor.calls.count("stop") == 1
    assert supervisor.stop_threads and supervisor.stop_threads[0] != "MainThread"
    assert FakeAlertFeed.instances[0].stopped
    assert app.return_code == 0 and app.stopped_cleanly


async def test_stopping_screen_shows_while_stopping(settings: Settings) -> None:
    release = threading.Event()

    class SlowStop(FakeSupervisor):
        def stop(self, timeout: float = 15.0) -> None:
            release.wait(5)
            super().stop(timeout)

    supervisor = SlowStop(settings)
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("q")
        await pilot.pause(0.1)
        assert isinstance(app.screen, StoppingScreen)
        assert app.check_action("toggle_generator", ()) is False
        await pilot.press("g", "r", "escape")  # ignored while stopping
        assert "toggle_generator" not in supervisor.calls
        release.set()
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert "retrain" not in supervisor.calls


async def test_quit_during_start_up_waits_briefly_then_stops_again(settings: Settings) -> None:
    gate = threading.Event()
    supervisor = FakeSupervisor(settings, start_gate=gate)
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge(app, "model")[0] == "starting", "the bootstrap step")
        await pilot.press("q")
        await wait_for(pilot, lambda: supervisor.calls.count("stop") == 1, "the first stop")
        assert app.is_running  # the stopping screen waits for the start-up step
        gate.set()
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert supervisor.calls == ["start", "stop", "stop"]
    assert app.stopped_cleanly


async def test_a_start_up_step_that_outlasts_the_wait_is_left_to_run_app(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtfd.tui import control

    monkeypatch.setattr(control, "START_WAIT_S", 0.1)
    gate = threading.Event()
    supervisor = FakeSupervisor(settings, start_gate=gate)
    app = make_app(settings, supervisor)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: badge(app, "model")[0] == "starting", "bootstrap")
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, "the app to exit")
        # run_app() sees this, waits for the step on the console, then stops again.
        assert not app.stopped_cleanly and not app.start_finished.is_set()
        assert supervisor.calls == ["start", "stop"]
    finally:
        gate.set()


async def test_sigterm_takes_the_graceful_path(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        if signal.SIGTERM not in app._signals:
            pytest.skip("signal handlers need the main thread's event loop")
        os.kill(os.getpid(), signal.SIGTERM)
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")
    assert "stop" in supervisor.calls and app.stopped_cleanly


async def test_a_stream_without_batches_shows_idle_and_zero_input(
    settings: Settings, supervisor: FakeSupervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtfd.tui import live_stats

    class FastTick(RecordingApp):
        TICK_S = 0.05

    # Long enough that a loaded CI machine still sees the batch before it turns idle.
    monkeypatch.setattr(live_stats, "STREAM_IDLE_S", 2.0)
    app = FastTick(settings, supervisor, services=fake_services(FakeRegistry()))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        supervisor.progress(batch_duration_ms=50)
        await wait_for(pilot, lambda: badge(app, "stream")[1].startswith("201 rows/s"), "the batch")
        await wait_for(pilot, lambda: "idle" in badge(app, "stream")[1], "idle", timeout=15)
        assert app.live.chart("throughput").values[-1] == 0.0
        supervisor.progress(batch_duration_ms=50)
        await wait_for(pilot, lambda: "idle" not in badge(app, "stream")[1], "a new batch")


async def test_quit_during_a_retrain_does_not_wait_for_the_training(settings: Settings) -> None:
    gate = threading.Event()
    supervisor = FakeSupervisor(settings, retrain_gate=gate)
    app = make_app(settings, supervisor)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app)
            await pilot.press("r")
            await wait_for(pilot, lambda: supervisor.training, "the training")
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, "the app to exit")
        assert "stop" in supervisor.calls and supervisor.training
    finally:
        gate.set()


async def test_the_alerts_heading_says_when_the_consumer_cannot_read(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    app = make_app(settings, supervisor)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        feed = FakeAlertFeed.instances[0]
        title = app.live.alerts_title
        feed.on_state(False, "0/1 brokers are down")
        await wait_for(pilot, lambda: title.has_class("-failed"), "the red heading")
        assert str(title.content).endswith("0/1 brokers are down")
        feed.on_state(True, "reading fraud_alerts")
        feed.push(alerts(2))
        await wait_for(pilot, lambda: str(title.content).endswith("2 received"), "recovery")
        assert not title.has_class("-failed")
