"""Starts, watches and stops the appliance's components: broker, model, stream, generator.

Used by the TUI and by headless ``rtfd up``; it never imports textual. The TUI reaches it only
through :meth:`Supervisor.subscribe` (events are posted from background threads: a subscriber must
be thread-safe, e.g. Textual's ``post_message``), the control methods and typed snapshots
(:class:`~rtfd.components.ModelInfo`, :class:`~rtfd.components.GeneratorInfo`); it never holds a
component.

The broker, stream and generator run behind :class:`~rtfd.components.Component` adapters
(:class:`BrokerComponent`, :class:`StreamComponent`, :class:`GeneratorComponent`), each reporting
its health as a :class:`~rtfd.components.ComponentStatus`; the watchdog thread polls them and
restarts what may be restarted (the broker rtfd started, a failed stream query, a dead generator
thread) with a back-off, so a transient failure heals without the user.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rtfd.components import ComponentStatus, GeneratorInfo, ModelInfo, State
from rtfd.config import Settings
from rtfd.errors import RtfdError

if TYPE_CHECKING:
    from rtfd.broker.base import Broker
    from rtfd.broker.labels import LabelPublisher
    from rtfd.generator.live import LiveGenerator
    from rtfd.ml.train import TrainResult
    from rtfd.query.labels import AnalystDecision
    from rtfd.stream.progress import StreamProgress
    from rtfd.stream.runner import RunnerState, StreamRunner

__all__ = [
    "COMPONENTS",
    "BrokerComponent",
    "ComponentChanged",
    "ComponentStatus",
    "Event",
    "GeneratorComponent",
    "ModelLive",
    "Notice",
    "State",
    "StreamComponent",
    "StreamProgressEvent",
    "Supervisor",
    "TrainingProgress",
]

log = logging.getLogger(__name__)

COMPONENTS = ("broker", "model", "stream", "generator")
WATCH_INTERVAL_S = 2.0
MAX_RESTARTS = 5


@dataclass(frozen=True)
class ComponentChanged:
    """Event: a component's status changed."""

    status: ComponentStatus


@dataclass(frozen=True)
class ModelLive:
    """Event: this model now scores the stream (at start, after a retrain)."""

    info: ModelInfo


@dataclass(frozen=True)
class StreamProgressEvent:
    """Event: the transactions query finished a micro-batch.

    ``recent`` holds scored rows when the source has them at hand (the real stream does not send
    them: the TUI then reads the newest rows from the lake).
    """

    progress: StreamProgress
    recent: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Notice:
    """Event: something the user should see once (training done, a failure)."""

    level: str  # "information", "warning" or "error"
    message: str


@dataclass(frozen=True)
class TrainingProgress:
    """Event: progress of a training, in :data:`rtfd.progress.Progress`'s own terms: what
    it is doing, and the fraction of the whole run done (None when unknown)."""

    message: str
    fraction: float | None


Event = ComponentChanged | ModelLive | StreamProgressEvent | Notice | TrainingProgress
Subscriber = Callable[[Event], None]

#: The stream runner's phases as component states.
STREAM_STATES = {
    "starting": State.STARTING,
    "running": State.RUNNING,
    "failed": State.FAILED,
    "stopped": State.STOPPED,
    "idle": State.STOPPED,
}


# -- the components ------------------------------------------------------------------------------
class BrokerComponent:
    """The Kafka-protocol broker (started here, or adopted when one already answers)."""

    name = "broker"

    def __init__(
        self, settings: Settings, make: Callable[[Settings], Broker] | None = None
    ) -> None:
        self.settings = settings
        self._make = make
        self.broker: Broker | None = None

    def start(self) -> None:
        if self.broker is None:
            if self._make is None:
                from rtfd.broker import make_broker

                self._make = make_broker
            self.broker = self._make(self.settings)
        self.broker.start()

    def stop(self, timeout: float) -> None:
        """Stop the broker if rtfd started it; one adopted from outside keeps running."""
        if self.started_here and self.broker is not None:
            self.broker.stop()

    @property
    def started_here(self) -> bool:
        return self.broker is not None and self.broker.started_here

    @property
    def address(self) -> str:
        return "" if self.broker is None else self.broker.bootstrap_servers

    def running_detail(self) -> str:
        broker = self.broker
        return "" if broker is None else f"{broker.name} {broker.bootstrap_servers}"

    def health(self) -> ComponentStatus:
        broker = self.broker
        if broker is None:
            return ComponentStatus(self.name, State.STOPPED)
        try:
            running = broker.is_running()
        except Exception as e:  # a probe that fails is a broker that does not answer
            log.debug("broker probe: %s", e)
            running = False
        if running:
            return ComponentStatus(self.name, State.RUNNING, self.running_detail())
        return ComponentStatus(self.name, State.FAILED, f"not answering at {self.address}")

    def client_config(self) -> dict[str, str]:
        """librdkafka settings for this broker, or from the settings before it runs."""
        if self.broker is not None:
            return dict(self.broker.client_config())
        from rtfd.broker import client_config

        return dict(client_config(self.settings))


class StreamComponent:
    """The Spark job; its runner reports progress and state changes through the callbacks."""

    name = "stream"

    def __init__(
        self,
        settings: Settings,
        *,
        on_progress: Callable[[StreamProgress], None],
        on_state: Callable[[RunnerState], None],
        console: bool = False,
        make: Callable[[Settings], StreamRunner] | None = None,
    ) -> None:
        self.settings = settings
        self._on_progress = on_progress
        self._on_state = on_state
        self._console = console
        self._make = make
        self.runner: StreamRunner | None = None

    def start(self) -> None:
        """Returns at once: the state callback reports the rest."""
        if self.runner is None:
            if self._make is None:
                from rtfd.stream.runner import StreamRunner

                self.runner = StreamRunner(self.settings, console=self._console)
            else:
                self.runner = self._make(self.settings)
            self.runner.add_listener(self._on_progress)
            self.runner.add_state_listener(self._on_state)
        self.runner.start()

    def stop(self, timeout: float) -> None:
        if self.runner is not None:
            self.runner.stop(timeout=timeout)

    def health(self) -> ComponentStatus:
        runner = self.runner
        if runner is None:
            return ComponentStatus(self.name, State.STOPPED)
        return status_of_stream(runner.state)


def status_of_stream(runner_state: RunnerState) -> ComponentStatus:
    """The stream runner's state as the stream component's status."""
    state = STREAM_STATES.get(runner_state.phase, State.DEGRADED)
    return ComponentStatus("stream", state, runner_state.reason)


class GeneratorComponent:
    """The live transaction generator, on its own thread."""

    name = "generator"

    def __init__(
        self, settings: Settings, make: Callable[[Settings], LiveGenerator] | None = None
    ) -> None:
        self.settings = settings
        self._make = make
        self.generator: LiveGenerator | None = None

    def start(self) -> None:
        if self.generator is None:
            if self._make is None:
                from rtfd.generator.live import LiveGenerator

                self._make = LiveGenerator
            self.generator = self._make(self.settings)
        self.generator.start()

    def stop(self, timeout: float) -> None:
        if self.generator is not None:
            self.generator.stop(timeout=timeout)

    def info(self) -> GeneratorInfo | None:
        """A snapshot of the generator (None before it was first started)."""
        gen = self.generator
        if gen is None:
            return None
        stats = gen.stats()
        return GeneratorInfo(
            rate=gen.rate,
            paused=gen.paused,
            cards=gen.cards,
            actual_rate=stats.actual_rate,
            cards_pending=stats.cards_pending,
            failed=stats.failed,
        )

    def health(self) -> ComponentStatus:
        gen = self.generator
        if gen is None:
            return ComponentStatus(self.name, State.STOPPED)
        if not gen.running:
            return ComponentStatus(self.name, State.FAILED, "generator thread stopped")
        return ComponentStatus(self.name, State.RUNNING, self.summary())

    def summary(self) -> str:
        gen = self.generator
        if gen is None:
            return "off"
        return GeneratorInfo(rate=gen.rate, paused=gen.paused, cards=gen.cards).summary()

    def toggle(self) -> bool:
        """Pause or resume; True when it now produces."""
        gen = self._running()
        gen.toggle()
        return not gen.paused

    def set_rate(self, rate: float) -> None:
        self._running().set_rate(rate)

    def _running(self) -> LiveGenerator:
        if self.generator is None:
            raise RtfdError("the generator is not running", title="Generator")
        return self.generator


@dataclass
class _Restarts:
    count: int = 0
    next_at: float = 0.0

    def allow(self) -> bool:
        return self.count < MAX_RESTARTS and time.monotonic() >= self.next_at

    def record(self) -> None:
        self.count += 1
        self.next_at = time.monotonic() + min(30.0, 2.0**self.count)


class Supervisor:
    """Owns the running appliance. Thread-safe control methods; events go to subscribers.

    The broker, stream and generator are :class:`~rtfd.components.Component` adapters; the
    model is no process, only the registry's live version, checked (and bootstrapped) at start.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        with_stream: bool = True,
        with_generator: bool = True,
        console: bool = False,
    ) -> None:
        self.settings = settings
        self.with_stream = with_stream
        self.with_generator = with_generator
        self.console = console
        self.broker = BrokerComponent(settings)
        self.stream = StreamComponent(
            settings,
            on_progress=self._on_stream_progress,
            on_state=self._on_stream_state,
            console=console,
        )
        self.generator = GeneratorComponent(settings)
        self._statuses = {n: ComponentStatus(n, State.STOPPED) for n in COMPONENTS}
        self._subscribers: list[Subscriber] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._restarts = {n: _Restarts() for n in COMPONENTS}
        self._training = threading.Lock()
        self._labels: LabelPublisher | None = None

    # -- events ---------------------------------------------------------------------------------
    def subscribe(self, fn: Subscriber) -> None:
        """Receive every event from now on (called from background threads)."""
        with self._lock:
            self._subscribers.append(fn)

    def _emit(self, event: Event) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:  # a broken subscriber must not break the appliance
                log.exception("event subscriber failed")

    def _set(self, name: str, state: State, detail: str = "") -> None:
        with self._lock:
            old = self._statuses[name]
            if old.state == state and old.detail == detail:
                return
            status = ComponentStatus(name, state, detail)
            self._statuses[name] = status
        log.info("%s: %s %s", name, state.value, detail)
        self._emit(ComponentChanged(status))

    def _progress(self, component: str) -> Callable[[str, float | None], None]:
        """A :data:`rtfd.progress.Progress` that reports a training as events."""

        def progress(message: str, fraction: float | None) -> None:
            if component:
                done = "" if fraction is None else f" ({fraction:.0%})"
                self._set(component, State.STARTING, f"bootstrap model: {message}{done}")
            self._emit(TrainingProgress(message, fraction))

        return progress

    def statuses(self) -> dict[str, ComponentStatus]:
        with self._lock:
            return dict(self._statuses)

    @property
    def training(self) -> bool:
        return self._training.locked()

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> None:
        """Bring every component up in order (blocking); failures are reported, not raised,
        except for the broker, without which nothing else can run."""
        self._stop.clear()
        steps = [self._start_broker, self._start_model]
        steps += [self._start_stream] if self.with_stream else []
        steps += [self._start_generator] if self.with_generator else []
        for step in steps:
            if self._stop.is_set():  # quit while starting: start nothing more
                return
            step()
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch, name="rtfd-watchdog", daemon=True)
            self._watcher.start()

    def _start_broker(self) -> None:
        from rtfd.broker.admin import ensure_topics, topic_specs

        self._set("broker", State.STARTING, "starting")
        try:
            self.broker.start()
            ensure_topics(self.broker.client_config(), topic_specs(self.settings))
        except RtfdError as e:
            self._set("broker", State.FAILED, e.message)
            raise
        self._set("broker", State.RUNNING, self.broker.running_detail())

    def _start_model(self) -> None:
        from rtfd.ml.train import ensure_bootstrap_model

        self._set("model", State.STARTING, "checking the registry")
        try:
            ensure_bootstrap_model(self.settings, progress=self._progress("model"))
        except RtfdError as e:
            self._set("model", State.FAILED, e.message)
            return
        self._model_live()

    def _model_live(self) -> None:
        info = self.model_info()
        mismatch = (
            "" if info is None else info.time_lapse_mismatch(self.settings.generator_time_scale)
        )
        if info is None:
            self._set("model", State.RUNNING, "no model")
        elif mismatch:
            log.warning("model %s: %s", info.version, mismatch)
            self._set("model", State.DEGRADED, info.summary(self.settings.generator_time_scale))
        else:
            self._set("model", State.RUNNING, info.summary())
        if info is not None:
            self._emit(ModelLive(info))

    def model_info(self) -> ModelInfo | None:
        """The live model, every digest verified (blocking: a few file reads); None when no
        version is live."""
        from rtfd.ml.registry import Registry

        live = Registry(self.settings.models_dir).live()
        if live is None:
            return None
        return ModelInfo(
            version=live.version,
            algo=live.algo or "?",
            mode=live.mode or "?",
            threshold=live.threshold,
            note=live.note,
            expected_precision=live.metric("expected_precision"),
            expected_alerts_per_day=live.metric("expected_alerts_per_day"),
            time_scale=live.time_scale,
        )

    def _start_stream(self) -> None:
        self._set("stream", State.STARTING, "starting Spark")
        try:
            self.stream.start()
        except RtfdError as e:
            self._set("stream", State.FAILED, e.message)

    def _on_stream_progress(self, progress: StreamProgress) -> None:
        # The label-ingest query reports too; the status bar is about transactions.
        if progress.query == "transactions":
            self._emit(StreamProgressEvent(progress))

    def _on_stream_state(self, runner_state: RunnerState) -> None:
        status = status_of_stream(runner_state)
        self._set("stream", status.state, status.detail)

    def _start_generator(self) -> None:
        try:
            self.generator.start()
        except RtfdError as e:
            self._set("generator", State.FAILED, e.message)
            return
        self._set("generator", State.RUNNING, self.generator.summary())

    def generator_info(self) -> GeneratorInfo | None:
        """A snapshot of the generator; None when it was never started."""
        return self.generator.info()

    def client_config(self) -> dict[str, str]:
        """librdkafka settings for the broker the appliance uses (the alert feed reads it)."""
        return self.broker.client_config()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop everything this supervisor started, in reverse order, within ``timeout``."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        if self.generator.generator is not None:
            self._guarded("generator", lambda: self.generator.stop(timeout=3.0))
            self._set("generator", State.STOPPED)
        if self.stream.runner is not None:
            left = max(1.0, deadline - time.monotonic() - 4.0)
            self._guarded("stream", lambda: self.stream.stop(timeout=left))
            self._set("stream", State.STOPPED)
        if self.broker.started_here:
            self._guarded("broker", lambda: self.broker.stop(timeout=left_of(deadline)))
            self._set("broker", State.STOPPED)
        if self._watcher is not None:
            self._watcher.join(timeout=WATCH_INTERVAL_S + 1)

    def _guarded(self, name: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as e:
            log.exception("stopping %s failed", name)
            self._set(name, State.FAILED, f"stop failed: {e}")

    # -- controls -------------------------------------------------------------------------------
    def publish_label(self, decision: AnalystDecision) -> dict[str, Any]:
        """Publish an analyst's decision to ``fraud_labels`` (blocking until acknowledged:
        call from a worker); returns the LABEL record. Raises :class:`BrokerUnavailable`."""
        from rtfd.broker.labels import label_publisher

        with self._lock:
            if self._labels is None:
                self._labels = label_publisher(self.broker.client_config())
            publisher = self._labels
        return publisher.publish(decision)

    def toggle_generator(self) -> bool:
        """Pause or resume the generator; returns True when it now produces."""
        producing = self.generator.toggle()
        self._set("generator", State.RUNNING, self.generator.summary())
        return producing

    def set_generator_rate(self, rate: float) -> float:
        """Change the generator's rate, clamped to 1 tx/s .. what ``generator_max_cards`` cards
        make at the time-lapse (the rate sets how many cards are active); returns the new rate.
        A higher rate starts once its new cards are drawn (seconds)."""
        from rtfd.generator.live import max_rate

        if self.generator.generator is None:
            raise RtfdError("the generator is not running", title="Generator")
        rate = max(1.0, min(max_rate(self.settings), rate))
        self.generator.set_rate(rate)
        self._set("generator", State.RUNNING, self.generator.summary())
        return rate

    def retrain(self, *, mode: str | None = None, algo: str | None = None) -> TrainResult:
        """Train a challenger on the enriched history and promote it if it wins (blocking).

        Only one training at a time: a second call while training raises RtfdError. A
        :meth:`stop` (the app quitting) cancels it at its next progress step, before anything
        is saved (:class:`~rtfd.ml.train.TrainingCancelled`): quitting is prompt and leaves the
        registry and the live model as they were.
        """
        from rtfd.ml.train import TrainingCancelled, train_model

        if not self._training.acquire(blocking=False):
            raise RtfdError("a training run is already in progress", title="Retrain")
        try:
            self._emit(Notice("information", "retraining started"))
            result = train_model(
                self.settings,
                mode=mode or self.settings.model_mode,
                algo=algo or self.settings.model_algo,
                progress=self._progress(""),
                should_stop=self._stop.is_set,
            )
            self._model_live()
            verdict = "promoted" if result.promoted else "kept the champion"
            self._emit(Notice("information", f"trained {result.version}: {verdict}"))
            return result
        except TrainingCancelled as e:
            self._emit(Notice("warning", f"retraining cancelled: {e.message}"))
            raise
        except RtfdError as e:
            self._emit(Notice("error", f"retraining failed: {e.message}"))
            raise
        finally:
            self._training.release()

    # -- watchdog -------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            try:
                self._check_broker()
                self._check_stream()
                self._check_generator()
            except Exception:
                log.exception("watchdog check failed")

    def _check_broker(self) -> None:
        health = self.broker.health()
        if health.state == State.STOPPED:  # never started
            return
        if health.state == State.RUNNING:
            if self._statuses["broker"].state != State.RUNNING:
                self._set("broker", State.RUNNING, health.detail)
            return
        self._set("broker", State.FAILED, health.detail)
        self._emit(Notice("error", f"broker down at {self.broker.address}"))
        restarts = self._restarts["broker"]
        if self.broker.started_here and restarts.allow() and not self._stop.is_set():
            restarts.record()
            try:
                self.broker.start()
                self._set("broker", State.RUNNING, self.broker.running_detail())
                self._emit(Notice("information", "broker restarted"))
            except RtfdError as e:
                self._set("broker", State.FAILED, e.message)

    def _check_stream(self) -> None:
        health = self.stream.health()
        if self.stream.runner is None:
            return
        if health.state == State.FAILED:
            self._set("stream", State.FAILED, health.detail)
            restarts = self._restarts["stream"]
            if restarts.allow() and not self._stop.is_set():
                restarts.record()
                self._emit(Notice("warning", f"stream failed ({health.detail}); restarting"))
                self._start_stream()
        elif health.state == State.RUNNING and self._statuses["stream"].state != State.RUNNING:
            self._set("stream", State.RUNNING, health.detail or "query running")

    def _check_generator(self) -> None:
        if self._stop.is_set():
            return
        health = self.generator.health()
        if health.state == State.FAILED:
            self._set("generator", State.FAILED, health.detail)
            restarts = self._restarts["generator"]
            if restarts.allow():
                restarts.record()
                self._start_generator()


def left_of(deadline: float) -> float:
    """Seconds left until a ``time.monotonic()`` deadline (at least one)."""
    return max(1.0, deadline - time.monotonic())
