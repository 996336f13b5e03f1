"""The rtfd console: one Textual app that supervises and shows the whole appliance.

On mount it starts every component through the supervisor in a thread worker, subscribes to the
supervisor's events through :class:`~rtfd.tui.messages.Bridge` (the only way backend threads reach
the UI), tails ``fraud_alerts`` once the broker runs, and polls the enriched Parquet for scored
rows when the stream's progress carries none. Quitting (``q``, ``ctrl+q``, ``ctrl+c``, SIGTERM,
SIGHUP) stops everything in a worker while a "stopping…" screen shows, then exits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Header, TabbedContent, TabPane

from rtfd.config import Settings
from rtfd.errors import RtfdError
from rtfd.supervisor import ComponentStatus, State
from rtfd.tui.backends import AlertFeedLike, QueryBackend, Services, SupervisorLike
from rtfd.tui.format import field, fmt_int, fmt_metric, fmt_rate, next_rate, number, stream_summary
from rtfd.tui.messages import (
    AlertFeedState,
    AlertsReady,
    Bridge,
    ComponentUpdate,
    ModelSummary,
    NoticePosted,
    ProgressReady,
    RetrainDone,
    ScoredRows,
    StartDone,
    StopDone,
    TrainingUpdate,
)
from rtfd.tui.monitor import MonitorPanel
from rtfd.tui.panels import LivePanel, LogPanel, ModelPanel, QueryPanel
from rtfd.tui.screens import HelpScreen, StoppingScreen
from rtfd.tui.widgets import StatusBar, TrainingBar

log = logging.getLogger(__name__)

#: Give the supervisor this long to stop; the screen closes at FORCE_EXIT_S whatever happens.
STOP_TIMEOUT_S = 12.0
FORCE_EXIT_S = 15.0
#: How long the stopping screen waits for a start-up step in flight (a bootstrap training, a
#: broker start) before leaving the rest to :func:`run_app`, which waits for it on the console
#: and then stops what it brought up, so nothing is left behind.
START_WAIT_S = 2.0
SCORED_POLL_S = 2.0
SCORED_POLL_ROWS = 50
#: Progress records with ``recent`` rows make the Parquet poll unnecessary for this long.
RECENT_FRESH_S = 5.0
#: Spark reports nothing while no input arrives: after this long (or two batch durations,
#: whichever is longer) without a batch, the stream shows as idle with an input rate of 0.
STREAM_IDLE_S = 10.0
ALERT_RATE_WINDOW_S = 60.0
_THRESHOLD_RE = re.compile(r"\bthr\s+([0-9.]+)")
_SEVERITY = {"information": "information", "warning": "warning", "error": "error"}


Handler = TypeVar("Handler", bound=Callable[..., Any])


def while_running(handler: Handler) -> Handler:
    """Skip a message handler once the app is shutting down (its widgets may be gone)."""

    @functools.wraps(handler)
    def wrapper(self: App[Any], *args: Any) -> Any:
        if not self.is_running:
            return None
        return handler(self, *args)

    return cast("Handler", wrapper)


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
        self.bridge = Bridge(self)
        self.statuses: dict[str, ComponentStatus] = dict(supervisor.statuses())
        self.latest_progress: Any = None
        self.dead_letters = 0
        self.threshold: float | None = None
        self.starting = False
        self.stopping = False
        self.retraining = False
        self.stopped_cleanly = False
        #: Clear while Supervisor.start() runs in its worker.
        self.start_finished = threading.Event()
        self.start_finished.set()
        self._alert_feed: AlertFeedLike | None = None
        self._alert_times: deque[tuple[float, int]] = deque()
        self._last_recent = -1e9
        self._last_progress = time.monotonic()
        self._scored_mark: Any = None
        self._poll_service: QueryBackend | None = None
        self._poll_lock = threading.Lock()
        self._target_rate: float | None = None
        self._last_failure_toast = -1e9
        self._signals: list[int] = []
        # Widgets the handlers update are held here, not looked up: a message that arrives while
        # the app shuts down (screens already gone) must not fail a query.
        self.status_bar = StatusBar(id="status")
        self.training_bar = TrainingBar(id="training")
        self.live = LivePanel(id="live-panel")
        self.query_panel = QueryPanel(id="query-panel")
        self.model_panel = ModelPanel(id="model-panel")

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
        self._show_dlq()
        self._install_signal_handlers()
        self.set_interval(self.TICK_S, self._tick)
        self.set_timer(SCORED_POLL_S, self._maybe_poll_scored)
        if self.autostart:
            self.starting = True
            self.start_finished.clear()
            self._start()
        self.live.scored_table.focus()

    def on_unmount(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for sig in self._signals:
            loop.remove_signal_handler(sig)

    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGHUP take the graceful path: stop everything, restore the terminal."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or not POSIX: the default handler stays
            self._signals.append(sig)

    def _on_signal(self, sig: int) -> None:
        log.info("received %s: stopping", signal.Signals(sig).name)
        self.call_later(self.action_quit)

    # -- start / stop -----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="start")
    def _start(self) -> None:
        error = None
        try:
            self.supervisor.start()
        except RtfdError as e:
            error = f"{e.title}: {e.message}"
        except Exception as e:  # the UI must survive any start failure and say what happened
            log.exception("start failed")
            error = f"{type(e).__name__}: {e}"
        finally:
            self.start_finished.set()
        self.post_message(StartDone(error))

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
        began = time.monotonic()
        if self._alert_feed is not None:
            self._alert_feed.stop(timeout=3.0)
        self._stop_supervisor()
        if not self.start_finished.is_set():
            # A start-up step is still running (e.g. the bootstrap model): once it ends, stop
            # again what it brought up. If it takes longer, run_app() does that after the UI.
            self.call_from_thread(self._stopping_detail, "waiting for the start-up step to end")
            if self.start_finished.wait(START_WAIT_S):
                self._stop_supervisor()
        self.query_panel.close()
        if self._poll_lock.acquire(timeout=1.0):  # a poll in flight: the exit closes it
            try:
                if self._poll_service is not None:
                    self._poll_service.close()
                    self._poll_service = None
            finally:
                self._poll_lock.release()
        log.info("stopped in %.1f s", time.monotonic() - began)
        self.post_message(StopDone())

    def _stop_supervisor(self) -> None:
        try:
            self.supervisor.stop(timeout=STOP_TIMEOUT_S)
        except Exception:
            log.exception("stopping the supervisor failed")

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
        old = self.statuses.get(status.name)
        self.statuses[status.name] = status
        self._show_status(status)
        changed = old is None or old.state != status.state
        if status.state == State.FAILED and changed:
            self._last_failure_toast = time.monotonic()
            self.notify(status.detail or "failed", title=f"{status.name} failed", severity="error")
        if status.name == "broker" and status.state == State.RUNNING:
            self._start_alert_feed()
        if status.name == "model" and status.state == State.RUNNING:
            self.model_panel.refresh_catalog()
            if not self.retraining:
                self.training_bar.hide()
        if changed:  # the footer redraws on every bindings refresh: only when a state moved
            self.refresh_bindings()

    @on(TrainingUpdate)
    @while_running
    def _training(self, message: TrainingUpdate) -> None:
        self.training_bar.show_progress(message.fraction, message.phase)

    @on(NoticePosted)
    @while_running
    def _notice(self, message: NoticePosted) -> None:
        # The supervisor reports a failure both as a status change and as a notice: one toast.
        if message.level == "error" and time.monotonic() - self._last_failure_toast < 2.0:
            return
        self.notify(message.text, severity=_SEVERITY.get(message.level, "information"))  # type: ignore[arg-type]

    @on(ProgressReady)
    @while_running
    def _progress(self) -> None:
        records = self.bridge.progress.drain()
        if not records:
            return
        live = self.live
        recent: list[Any] = []
        throughput: list[Any] = []
        for p in records:
            total = number(field(p, "dead_letters_total"))
            if total is not None:
                self.dead_letters = int(total)
            else:
                self.dead_letters += int(number(field(p, "dead_letters")) or 0)
            throughput.append(field(p, "input_rows_per_s"))
            rows = field(p, "recent")
            if rows:
                recent.extend(rows)
        live.chart("throughput").push(*throughput)
        live.chart("latency").push(*(field(p, "latency_p99_ms") for p in records))
        self.latest_progress = records[-1]
        self._last_progress = time.monotonic()
        if recent:
            self._last_recent = time.monotonic()
            live.add_scored(recent)
        self._show_status(self.statuses.get("stream"))
        self._show_dlq()

    # -- alerts ------------------------------------------------------------------------------------
    def _start_alert_feed(self) -> None:
        if self._alert_feed is not None or self.services.alert_feed is None or self.stopping:
            return
        broker = self.supervisor.broker
        if broker is not None and hasattr(broker, "client_config"):
            config = broker.client_config()
        else:
            from rtfd.broker import client_config

            config = client_config(self.settings)
        self._alert_feed = self.services.alert_feed(
            config, self.bridge.on_alerts, self.bridge.on_alert_state
        )
        self._alert_feed.start()

    @on(AlertsReady)
    @while_running
    def _alerts(self) -> None:
        alerts = self.bridge.alerts.drain()
        if not alerts:
            return
        live_count = self.live.add_alerts(alerts)
        if live_count:
            self._alert_times.append((time.monotonic(), live_count))
        thr = number(field(alerts[-1], "threshold"))
        if thr is not None and self.threshold is None:
            self.threshold = thr

    @on(AlertFeedState)
    @while_running
    def _alert_feed_state(self, message: AlertFeedState) -> None:
        self.live.feed_state(message.ok, message.detail)
        if not message.ok:
            log.info("alert feed: %s", message.detail)

    # -- periodic ----------------------------------------------------------------------------------
    def _tick(self) -> None:
        """Once a second: generator figures and the alert rate (cheap, in-memory reads)."""
        if not self.is_running:
            return
        now = time.monotonic()
        while self._alert_times and now - self._alert_times[0][0] > ALERT_RATE_WINDOW_S:
            self._alert_times.popleft()
        per_min = sum(n for _, n in self._alert_times) * 60.0 / ALERT_RATE_WINDOW_S
        self.live.chart("alerts").push(per_min)
        self._show_generator()
        idle = self.stream_idle_s()
        if idle is not None:
            self.live.chart("throughput").push(0.0)
            self._show_status(self.statuses.get("stream"))

    def stream_idle_s(self) -> float | None:
        """Seconds since the last batch when the running stream has gone quiet, else None."""
        stream = self.statuses.get("stream")
        if stream is None or stream.state != State.RUNNING or self.latest_progress is None:
            return None
        batch_s = (number(field(self.latest_progress, "batch_duration_ms")) or 0.0) / 1000
        quiet = time.monotonic() - self._last_progress
        return quiet if quiet > max(STREAM_IDLE_S, 2 * batch_s) else None

    def _maybe_poll_scored(self) -> None:
        stream = self.statuses.get("stream")
        fresh = time.monotonic() - self._last_recent < RECENT_FRESH_S
        if self.stopping:
            return
        if fresh or stream is None or stream.state != State.RUNNING:
            self.set_timer(SCORED_POLL_S, self._maybe_poll_scored)
            return
        self._poll_scored(self._scored_mark)

    @work(thread=True, exclusive=True, exit_on_error=False, group="scored-poll")
    def _poll_scored(self, mark: Any) -> None:
        where = ""
        if mark is not None:
            text = mark.isoformat() if hasattr(mark, "isoformat") else str(mark)
            where = f"WHERE timestamp > TIMESTAMPTZ '{text}'"
        sql = (
            "SELECT transaction_id, user_id, amount, fraud_score, is_fraud, model_version, "
            f"timestamp FROM enriched_transactions {where} "
            f"ORDER BY timestamp DESC LIMIT {SCORED_POLL_ROWS}"
        )
        rows: list[dict[str, Any]] = []
        try:
            with self._poll_lock:
                if self.stopping:
                    return
                if self._poll_service is None:
                    self._poll_service = self.services.query_service(self.settings)
                result = self._poll_service.run(sql, limit=SCORED_POLL_ROWS)
            rows = [dict(zip(result.columns, r, strict=False)) for r in result.rows]
        except Exception as e:  # no Parquet yet, or a schema in flux: try again next time
            log.debug("scored-rows poll: %s", e)
        self.post_message(ScoredRows(rows))

    @on(ScoredRows)
    @while_running
    def _scored(self, message: ScoredRows) -> None:
        if message.rows:
            self._scored_mark = max(r["timestamp"] for r in message.rows)
            self.live.add_scored(message.rows)
        if not self.stopping:
            self.set_timer(SCORED_POLL_S, self._maybe_poll_scored)

    # -- status bar --------------------------------------------------------------------------------
    def _show_status(self, status: ComponentStatus | None) -> None:
        if status is None:
            return
        bar = self.status_bar
        state = status.state.value
        if status.name == "generator":
            self._show_generator()
        elif status.name == "stream":
            idle = self.stream_idle_s()
            if idle is not None:
                text = f"0 rows/s · idle: no batch for {idle:.0f} s"
            elif status.state == State.RUNNING and self.latest_progress is not None:
                text = stream_summary(self.latest_progress)
                if number(field(self.latest_progress, "skipped_offsets")):
                    state = "degraded"  # transactions the stream will never score
            else:
                text = status.detail or state
            bar.badge("stream").show(state, text)
        elif status.name == "model":
            bar.badge("model").show(state, status.detail or state)
            match = _THRESHOLD_RE.search(status.detail or "")
            if match:
                self.threshold = number(match.group(1))
                self.live.threshold = self.threshold
        elif status.name in ("broker",):
            bar.badge(status.name).show(state, status.detail or state)

    def _show_generator(self) -> None:
        status = self.statuses.get("generator")
        state = status.state.value if status else "stopped"
        gen = self.supervisor.generator
        if gen is None or status is None or status.state != State.RUNNING:
            text = (status.detail if status else "") or state
        else:
            text = self.supervisor.generator_summary()
            stats = gen.stats() if hasattr(gen, "stats") else None
            actual = field(stats, "actual_rate")
            if not getattr(gen, "paused", False) and number(actual) is not None:
                text += f" · sent {fmt_rate(actual)}"
            pending = number(field(stats, "cards_pending"))
            if pending:
                text += f" · drawing {fmt_int(pending)} cards"
            failed = number(field(stats, "failed"))
            if failed:
                text += f" · {fmt_int(failed)} failed"
            if getattr(gen, "paused", False):
                state = "degraded"
        self.status_bar.badge("generator").show(state, text)

    def _show_dlq(self) -> None:
        state = "degraded" if self.dead_letters else "running"
        self.status_bar.badge("dlq").show(state, fmt_int(self.dead_letters))

    def model_changed(self) -> None:
        """The live model changed outside the supervisor (a rollback): refresh what shows it."""
        self.model_panel.refresh_catalog()
        self._refresh_model_badge()

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-summary")
    def _refresh_model_badge(self) -> None:
        try:
            summary = self.supervisor.model_summary()
        except Exception as e:
            log.debug("model summary: %s", e)
            return
        self.post_message(ModelSummary(summary))

    @on(ModelSummary)
    @while_running
    def _model_summary(self, message: ModelSummary) -> None:
        status = self.statuses.get("model")
        if status is not None and status.state == State.RUNNING:
            self.statuses["model"] = replace(status, detail=message.text)
            self._show_status(self.statuses["model"])

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
            gen = self.statuses.get("generator")
            usable = (
                self.supervisor.generator is not None
                and gen is not None
                and (gen.state == State.RUNNING)
            )
            return True if usable else None
        if action == "retrain":
            return None if self.training_now or self.starting else True
        return True

    def action_toggle_generator(self) -> None:
        self._generator_call("toggle")

    def action_rate(self, direction: int) -> None:
        gen = self.supervisor.generator
        current = self._target_rate or float(getattr(gen, "rate", 0) or 0)
        self._target_rate = next_rate(current, up=direction > 0)
        self._generator_call("rate", self._target_rate)

    @work(thread=True, exclusive=False, exit_on_error=False, group="generator")
    def _generator_call(self, what: str, rate: float = 0.0) -> None:
        try:
            if what == "toggle":
                on = self.supervisor.toggle_generator()
                self.post_message(
                    NoticePosted("information", "generator resumed" if on else "generator paused")
                )
            else:
                applied = self.supervisor.set_generator_rate(rate)
                if applied < rate:
                    self.post_message(
                        NoticePosted(
                            "warning",
                            f"rate held at {applied:,.0f} tx/s: more would need more cards "
                            "than generator_max_cards",
                        )
                    )
        except RtfdError as e:
            self.post_message(NoticePosted("warning", e.message))
        except Exception as e:
            log.exception("generator control failed")
            self.post_message(NoticePosted("error", f"generator: {e}"))

    def action_retrain(self) -> None:
        if self.training_now:
            return
        self.retraining = True
        self.training_bar.show_progress(0.0, "starting")
        self.refresh_bindings()
        self._retrain()

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def _retrain(self) -> None:
        try:
            result = self.supervisor.retrain()
        except RtfdError as e:
            self.post_message(RetrainDone(error=e.message))
            return
        except Exception as e:
            log.exception("retrain failed")
            self.post_message(RetrainDone(error=f"{type(e).__name__}: {e}"))
            return
        self.post_message(RetrainDone(result=result))

    @on(RetrainDone)
    @while_running
    def _retrained(self, message: RetrainDone) -> None:
        self.retraining = False
        self.training_bar.hide()
        if message.error:
            log.warning("retrain failed: %s", message.error)
            self.notify(message.error, title="Retrain failed", severity="error", timeout=15)
        else:
            text = describe_training(message.result)
            log.info("retrain finished: %s", text)
            self.notify(text, title="Retrain finished", timeout=15)
        self.model_panel.refresh_catalog()
        self.refresh_bindings()

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        target = {
            "live": "#scored",
            "query": "#sql",
            "models": "#versions",
            "logs": "#log",
            "monitor": "#psi",
        }[name]
        self.query_one(target).focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()


def describe_training(result: Any) -> str:
    """'v0004 · avg prec 0.912 · ROC AUC 0.991 · promoted' from a training result."""
    version = field(result, "version", "new model")
    metrics = field(result, "metrics") or {}
    parts = [str(version)]
    for label, name in (
        ("avg prec", "average_precision"),
        ("ROC AUC", "auc_roc"),
        ("precision", "precision"),
        ("recall", "recall"),
    ):
        value = field(metrics, name)
        if number(value) is not None:
            parts.append(f"{label} {fmt_metric(value)}")
    promoted = field(result, "promoted")
    if promoted is not None:
        decision = field(result, "decision")
        if promoted:
            parts.append("promoted: the stream switches to it")
        else:
            parts.append(f"kept the champion ({decision})" if decision else "kept the champion")
    return " · ".join(parts)


def run_app(settings: Settings, *, with_stream: bool = True, with_generator: bool = True) -> int:
    """Run the console over a real supervisor; make sure everything is stopped afterwards.

    The app runs on a loop of our own so that, once the screen is gone, worker threads still
    busy (a start-up step or a retrain cannot be interrupted) are waited for here, with a line
    on the console saying so, and whatever a late start-up step brought up is stopped too.
    """
    import asyncio
    import sys

    from rtfd.supervisor import Supervisor

    supervisor = Supervisor(
        settings, with_stream=with_stream, with_generator=with_generator, console=False
    )
    app = RtfdApp(settings, supervisor)
    loop = asyncio.new_event_loop()
    try:
        code = app.run(loop=loop)
    finally:
        log.info("console closed")
        try:
            if not app.start_finished.is_set():
                print("rtfd: waiting for the start-up step in progress to end…", file=sys.stderr)
                app.start_finished.wait()
            if not app.stopped_cleanly:
                # The app ended some other way (a crash, a forced exit, a late start-up step).
                supervisor.stop(timeout=STOP_TIMEOUT_S)
            if supervisor.training:
                print("rtfd: waiting for the training to stop…", file=sys.stderr)
            loop.run_until_complete(loop.shutdown_default_executor())
            log.info("worker threads finished")
        finally:
            loop.close()
    return int(code or 0)
