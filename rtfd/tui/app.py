"""The rtfd console: one Textual app that supervises and shows the whole appliance.

On mount it starts every component through the supervisor in a thread worker, subscribes to the
supervisor's events through :class:`~rtfd.tui.messages.Bridge` (the only way backend threads reach
the UI), tails ``fraud_alerts`` once the broker runs, and polls the enriched Parquet for scored
rows when the stream's progress carries none. Quitting (``q``, ``ctrl+q``, ``ctrl+c``, SIGTERM,
SIGHUP) stops everything in a worker while a "stopping…" screen shows, then exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Header, TabbedContent, TabPane

from rtfd.components import ComponentStatus, State
from rtfd.config import Settings
from rtfd.tui import control
from rtfd.tui.backends import AlertFeedLike, Services, SupervisorLike
from rtfd.tui.format import describe_training, next_rate
from rtfd.tui.live_stats import LiveStats, ScoredPoller
from rtfd.tui.messages import (
    Bridge,
    ComponentUpdate,
    ModelUpdate,
    NoticePosted,
    ProgressReady,
    RetrainDone,
    StartDone,
    StopDone,
    TrainingUpdate,
    while_running,
)
from rtfd.tui.monitor import MonitorPanel
from rtfd.tui.panels import LivePanel, LogPanel, ModelPanel, QueryPanel
from rtfd.tui.screens import HelpScreen, StoppingScreen
from rtfd.tui.widgets import StatusBar, TrainingBar

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from rtfd.stream.progress import StreamProgress

log = logging.getLogger(__name__)

#: The stopping screen closes after this long whatever happens.
FORCE_EXIT_S = 15.0
#: Where each tab's key puts the focus.
TAB_FOCUS = dict(live="#scored", query="#sql", models="#versions", logs="#log", monitor="#psi")


class RtfdApp(App[int]):
    """The console. ``supervisor`` and ``services`` are injectable so tests can use fakes."""

    # Absolute, so that subclasses living elsewhere (tests) find it too.
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "rtfd"
    SUB_TITLE = "real-time fraud detection"
    ENABLE_COMMAND_PALETTE = False
    #: Period of the clock-driven refresh (alert rate, generator figures).
    TICK_S = 1.0

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "toggle_generator", "Generator"),
        Binding("plus,equals_sign", "rate(1)", "Rate+", key_display="+"),
        Binding("minus", "rate(-1)", "Rate-", key_display="-"),
        Binding("r", "retrain", "Retrain"),
        Binding("1", "tab('live')", "Live", show=False),
        Binding("2", "tab('query')", "Query", show=False),
        Binding("3", "tab('models')", "Models", show=False),
        Binding("4", "tab('logs')", "Log", show=False),
        Binding("5", "tab('monitor')", "Monitor", show=False),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        settings: Settings,
        supervisor: SupervisorLike,
        *,
        services: Services | None = None,
        autostart: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.supervisor = supervisor
        self.services = services or Services()
        self.autostart = autostart
        self.stats = LiveStats(supervisor.statuses())
        self.statuses = self.stats.statuses
        self.scored_poller = ScoredPoller(lambda: self.services.query_service(self.settings))
        self.starting = False
        self.stopping = False
        self.retraining = False
        self.stopped_cleanly = False
        #: Clear while Supervisor.start() runs in its worker.
        self.start_finished = threading.Event()
        self.start_finished.set()
        self._alert_feed: AlertFeedLike | None = None
        self._target_rate: float | None = None
        self._signals: list[int] = []
        # Widgets the handlers update are held here, not looked up: a message that arrives while
        # the app shuts down (screens already gone) must not fail a query.
        self.status_bar = StatusBar(id="status")
        self.training_bar = TrainingBar(id="training")
        self.live = LivePanel(self.stats, id="live-panel")
        self.bridge = Bridge(self, alerts_to=self.live)
        self.query_panel = QueryPanel(id="query-panel")
        self.model_panel = ModelPanel(id="model-panel")

    @property
    def latest_progress(self) -> StreamProgress | None:
        return self.stats.latest_progress

    # -- layout -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        yield self.status_bar
        yield self.training_bar
        with TabbedContent(initial="live", id="tabs"):
            with TabPane("1 Live", id="live"):
                yield self.live
            with TabPane("2 Query", id="query"):
                yield self.query_panel
            with TabPane("3 Models", id="models"):
                yield self.model_panel
            with TabPane("4 Log", id="logs"):
                yield LogPanel(self.settings.log_file, id="log-panel")
            with TabPane("5 Monitor", id="monitor"):
                yield MonitorPanel(id="monitor-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.training_bar.hide()
        self.supervisor.subscribe(self.bridge)
        for status in self.statuses.values():
            self._show_status(status)
        self.status_bar.show_dlq(self.stats.dead_letters)
        self._signals = control.listen_for_signals(self._on_signal)
        self.set_interval(self.TICK_S, self._tick)
        self.live.poll_scored(
            self.scored_poller,
            wanted=lambda: not self.stats.recent_fresh() and self.stats.is_up("stream"),
            ended=lambda: self.stopping,
        )
        if self.autostart:
            self.starting = True
            self.start_finished.clear()
            self._start()
        self.live.scored_table.focus()

    def on_unmount(self) -> None:
        control.forget_signals(self._signals)

    def _on_signal(self, sig: int) -> None:
        log.info("received %s: stopping", signal.Signals(sig).name)
        self.call_later(self.action_quit)

    # -- start / stop -----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="start")
    def _start(self) -> None:
        self.post_message(StartDone(control.start_appliance(self.supervisor, self.start_finished)))

    @on(StartDone)
    @while_running
    def _started(self, message: StartDone) -> None:
        self.starting = False
        if message.error:
            self.notify(message.error, title="Start failed", severity="error", timeout=15)
        self.model_panel.refresh_catalog()
        self._show_generator()
        self.refresh_bindings()

    async def action_quit(self) -> None:
        """Stop everything this app started (in a worker), then exit."""
        if self.stopping:
            return
        self.stopping = True
        log.info("quit requested: stopping the appliance")
        self.push_screen(StoppingScreen())
        self.set_timer(FORCE_EXIT_S, self._force_exit)
        self._stop_all()

    @work(thread=True, exclusive=True, exit_on_error=False, group="stop")
    def _stop_all(self) -> None:
        control.stop_appliance(
            self.supervisor,
            start_finished=self.start_finished,
            alert_feed=self._alert_feed,
            closers=(self.query_panel.close, self.scored_poller.close),
            waiting=lambda text: self.call_from_thread(self._stopping_detail, text),
        )
        self.post_message(StopDone())

    def _stopping_detail(self, text: str) -> None:
        if isinstance(self.screen, StoppingScreen):
            self.screen.show_detail(text)

    @on(StopDone)
    def _stopped(self) -> None:
        self.stopped_cleanly = self.start_finished.is_set()
        self.exit(0)

    def _force_exit(self) -> None:
        log.warning("stopping took longer than %.0f s: exiting anyway", FORCE_EXIT_S)
        self.exit(1)

    # -- supervisor events -------------------------------------------------------------------------
    @on(ComponentUpdate)
    @while_running
    def _component(self, message: ComponentUpdate) -> None:
        status = message.status
        changed, toast = self.stats.update_status(status)
        self._show_status(status)
        if toast:
            self.notify(status.detail or "failed", title=f"{status.name} failed", severity="error")
        if status.name == "broker" and status.state == State.RUNNING:
            self._start_alert_feed()
        if status.name == "model" and status.state in (State.RUNNING, State.DEGRADED):
            self.model_panel.refresh_catalog()
            if not self.retraining:
                self.training_bar.hide()
        if changed:  # the footer redraws on every bindings refresh: only when a state moved
            self.refresh_bindings()

    @on(TrainingUpdate)
    @while_running
    def _training(self, message: TrainingUpdate) -> None:
        self.training_bar.show_progress(message.fraction, message.message)

    @on(ModelUpdate)
    @while_running
    def _model(self, message: ModelUpdate) -> None:
        info = message.info
        if info.threshold is not None:
            self.stats.threshold = self.live.threshold = info.threshold
        status = self.statuses.get("model")
        if status is not None and status.state == State.RUNNING:
            self.statuses["model"] = replace(status, detail=info.summary())
            self._show_status(self.statuses["model"])

    @on(NoticePosted)
    @while_running
    def _notice(self, message: NoticePosted) -> None:
        if not self.stats.repeats_failure(message.level):
            self.notify(message.text, severity=cast("SeverityLevel", message.level))

    @on(ProgressReady)
    @while_running
    def _progress(self) -> None:
        events = self.bridge.progress.drain()
        if not events:
            return
        self.live.show_progress(self.stats.add_progress(events))
        self._show_status(self.statuses.get("stream"))
        self.status_bar.show_dlq(self.stats.dead_letters)

    # -- alerts ------------------------------------------------------------------------------------
    def _start_alert_feed(self) -> None:
        if self._alert_feed is not None or self.services.alert_feed is None or self.stopping:
            return
        self._alert_feed = self.services.alert_feed(
            self.supervisor.client_config(), self.bridge.on_alerts, self.bridge.on_alert_state
        )
        self._alert_feed.start()

    # -- periodic ----------------------------------------------------------------------------------
    def _tick(self) -> None:
        """Once a second: generator figures and the alert rate (cheap, in-memory reads)."""
        if not self.is_running:
            return
        self.live.chart("alerts").push(self.stats.alerts_per_min())
        self._show_generator()
        if self.stats.stream_idle_s() is not None:
            self.live.chart("throughput").push(0.0)
            self._show_status(self.statuses.get("stream"))

    # -- status bar --------------------------------------------------------------------------------
    def _show_status(self, status: ComponentStatus | None) -> None:
        if status is not None and status.name == "generator":
            self._show_generator()
        elif status is not None:
            self.status_bar.show(status, self.stats)

    def _show_generator(self) -> None:
        status = self.statuses.get("generator")
        self.status_bar.show_generator(status, self.supervisor.generator_info())

    def model_changed(self) -> None:
        """The live model changed outside the supervisor (a rollback): refresh what shows it."""
        self.model_panel.refresh_catalog()
        self._refresh_model_badge()

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-summary")
    def _refresh_model_badge(self) -> None:
        try:
            info = self.supervisor.model_info()
        except Exception as e:
            log.debug("model info: %s", e)
            return
        if info is not None:
            self.post_message(ModelUpdate(info))

    # -- actions -----------------------------------------------------------------------------------
    @property
    def training_now(self) -> bool:
        """A model is being trained (a retrain, or the bootstrap model at start)."""
        model = self.statuses.get("model")
        bootstrapping = model is not None and model.state == State.STARTING
        return self.retraining or bool(self.supervisor.training) or bootstrapping

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.stopping:
            return action == "quit"
        if action in ("toggle_generator", "rate"):
            return True if self.stats.is_up("generator") else None
        if action == "retrain":
            return None if self.training_now or self.starting else True
        return True

    def action_toggle_generator(self) -> None:
        self._generator_call("toggle")

    def action_rate(self, direction: int) -> None:
        info = self.supervisor.generator_info()
        current = self._target_rate or (info.rate if info else 0.0)
        self._target_rate = next_rate(current, up=direction > 0)
        self._generator_call("rate", self._target_rate)

    @work(thread=True, exclusive=False, exit_on_error=False, group="generator")
    def _generator_call(self, what: str, rate: float = 0.0) -> None:
        level, text = control.generator_control(self.supervisor, what, rate)
        if text:
            self.post_message(NoticePosted(level, text))

    def action_retrain(self) -> None:
        if self.training_now:
            return
        self.retraining = True
        self.training_bar.show_progress(0.0, "starting")
        self.refresh_bindings()
        self._retrain()

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def _retrain(self) -> None:
        result, error = control.retrain(self.supervisor)
        self.post_message(RetrainDone(result=result, error=error))

    @on(RetrainDone)
    @while_running
    def _retrained(self, message: RetrainDone) -> None:
        self.retraining = False
        self.training_bar.hide()
        if message.error:
            log.warning("retrain failed: %s", message.error)
            self.notify(message.error, title="Retrain failed", severity="error", timeout=15)
        elif message.result is not None:
            text = describe_training(message.result)
            log.info("retrain finished: %s", text)
            self.notify(text, title="Retrain finished", timeout=15)
        self.model_panel.refresh_catalog()
        self.refresh_bindings()

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        self.query_one(TAB_FOCUS[name]).focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()


def run_app(settings: Settings, *, with_stream: bool = True, with_generator: bool = True) -> int:
    """Run the console over a real supervisor (:func:`rtfd.tui.control.run_console` makes sure
    everything is stopped afterwards)."""
    from rtfd.supervisor import Supervisor

    supervisor = Supervisor(
        settings, with_stream=with_stream, with_generator=with_generator, console=False
    )
    return control.run_console(RtfdApp(settings, supervisor), supervisor)
