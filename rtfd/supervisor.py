"""Starts, watches and stops the appliance's components: broker, model, stream, generator.

Used by the TUI and by headless ``rtfd up``; it never imports textual. The TUI reaches it only
through :meth:`Supervisor.subscribe` (events are posted from background threads: a subscriber must
be thread-safe, e.g. Textual's ``post_message``) and the control methods.

Each component reports a :class:`ComponentStatus`; the watchdog thread polls every component and
restarts what may be restarted (the broker rtfd started, a failed stream query, a dead generator
thread) with a back-off, so a transient failure heals without the user.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rtfd.config import Settings
from rtfd.errors import RtfdError

if TYPE_CHECKING:
    from rtfd.broker.base import Broker
    from rtfd.broker.labels import LabelPublisher
    from rtfd.query.labels import AnalystDecision

log = logging.getLogger(__name__)

COMPONENTS = ("broker", "model", "stream", "generator")
WATCH_INTERVAL_S = 2.0
MAX_RESTARTS = 5


class State(StrEnum):
    """Life cycle of one component."""

    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class ComponentStatus:
    """What the status bar shows about one component."""

    name: str
    state: State
    detail: str = ""
    since: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ComponentChanged:
    """Event: a component's status changed."""

    status: ComponentStatus


@dataclass(frozen=True)
class StreamProgressEvent:
    """Event: the stream finished a micro-batch (``progress`` is the stream's own record)."""

    progress: Any


@dataclass(frozen=True)
class Notice:
    """Event: something the user should see once (training done, a failure)."""

    level: str  # "information", "warning" or "error"
    message: str


@dataclass(frozen=True)
class TrainingProgress:
    """Event: progress of a retrain (0..1) with a short phase description."""

    fraction: float
    phase: str


Event = ComponentChanged | StreamProgressEvent | Notice | TrainingProgress
Subscriber = Callable[[Event], None]


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
    """Owns the running appliance. Thread-safe control methods; events go to subscribers."""

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
        self.broker: Broker | None = None
        self.generator: Any = None
        self.stream: Any = None
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
        from rtfd.broker import make_broker
        from rtfd.broker.admin import ensure_topics, topic_specs

        self._set("broker", State.STARTING, "starting")
        try:
            if self.broker is None:
                self.broker = make_broker(self.settings)
            self.broker.start()
            ensure_topics(self.broker.client_config(), topic_specs(self.settings))
        except RtfdError as e:
            self._set("broker", State.FAILED, e.message)
            raise
        self._set("broker", State.RUNNING, f"{self.broker.name} {self.broker.bootstrap_servers}")

    def _start_model(self) -> None:
        from rtfd.ml.train import ensure_bootstrap_model

        self._set("model", State.STARTING, "checking the registry")

        def progress(phase: str, fraction: float | None) -> None:
            done = "" if fraction is None else f" ({fraction:.0%})"
            self._set("model", State.STARTING, f"bootstrap model: {phase}{done}")
            self._emit(TrainingProgress(fraction or 0.0, phase))

        try:
            version = ensure_bootstrap_model(self.settings, progress=progress)
        except RtfdError as e:
            self._set("model", State.FAILED, e.message)
            return
        self._set("model", State.RUNNING, self.model_summary(version))

    def model_summary(self, version: str | None = None) -> str:
        """'v0003 xgboost supervised thr 0.42' for the status bar."""
        from rtfd.ml.registry import Registry

        registry = Registry(self.settings.models_dir)
        version = version or registry.current()
        if version is None:
            return "no model"
        try:
            manifest = registry.verify(version)  # every SHA-256 checked before reading
            path = self.settings.models_dir / version / "threshold.json"
            threshold = float(json.loads(path.read_text(encoding="utf-8"))["threshold"])
        except RtfdError as e:
            return f"{version} ({e.message})"
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"{version} (unreadable threshold: {e})"
        algo, mode = manifest.get("algo", "?"), manifest.get("mode", "?")
        return f"{version} {algo} {mode} thr {threshold:.3f}"

    def _start_stream(self) -> None:
        from rtfd.stream.runner import StreamRunner

        self._set("stream", State.STARTING, "starting Spark")
        try:
            if self.stream is None:
                self.stream = StreamRunner(self.settings, console=self.console)
                self.stream.add_listener(self._on_stream_progress)
                self.stream.add_state_listener(self._on_stream_state)
            self.stream.start()  # returns at once; the state listener reports the rest
        except RtfdError as e:
            self._set("stream", State.FAILED, e.message)

    def _on_stream_progress(self, progress: Any) -> None:
        # The label-ingest query reports too; the status bar is about transactions.
        if getattr(progress, "query", "transactions") == "transactions":
            self._emit(StreamProgressEvent(progress))

    def _on_stream_state(self, runner_state: Any) -> None:
        mapping = {
            "starting": State.STARTING,
            "running": State.RUNNING,
            "failed": State.FAILED,
            "stopped": State.STOPPED,
            "idle": State.STOPPED,
        }
        self._set("stream", mapping.get(runner_state.phase, State.DEGRADED), runner_state.reason)

    def _start_generator(self) -> None:
        from rtfd.generator.live import LiveGenerator

        try:
            if self.generator is None:
                self.generator = LiveGenerator(self.settings)
            self.generator.start()
        except RtfdError as e:
            self._set("generator", State.FAILED, e.message)
            return
        self._set("generator", State.RUNNING, self.generator_summary())

    def generator_summary(self) -> str:
        gen = self.generator
        if gen is None:
            return "off"
        cards = gen.cards
        return f"{'paused' if gen.paused else 'on'} {gen.rate:g} tx/s" + (
            f", {cards:,} cards" if cards else ""
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop everything this supervisor started, in reverse order, within ``timeout``."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        if self.generator is not None:
            self._guarded("generator", lambda: self.generator.stop(timeout=3.0))
            self._set("generator", State.STOPPED)
        if self.stream is not None:
            left = max(1.0, deadline - time.monotonic() - 4.0)
            self._guarded("stream", lambda: self.stream.stop(timeout=left))
            self._set("stream", State.STOPPED)
        if self.broker is not None and self.broker.started_here:
            self._guarded("broker", self.broker.stop)
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
                if self.broker is not None:
                    config = self.broker.client_config()
                else:
                    from rtfd.broker import client_config

                    config = client_config(self.settings)
                self._labels = label_publisher(config)
            publisher = self._labels
        return publisher.publish(decision)

    def toggle_generator(self) -> bool:
        """Pause or resume the generator; returns True when it now produces."""
        gen = self.generator
        if gen is None:
            raise RtfdError("the generator is not running", title="Generator")
        gen.toggle()
        self._set("generator", State.RUNNING, self.generator_summary())
        return not gen.paused

    def set_generator_rate(self, rate: float) -> float:
        """Change the generator's rate, clamped to 1 tx/s .. what ``generator_max_cards`` cards
        make at the time-lapse (the rate sets how many cards are active); returns the new rate.
        A higher rate starts once its new cards are drawn (seconds)."""
        from rtfd.generator.live import max_rate

        gen = self.generator
        if gen is None:
            raise RtfdError("the generator is not running", title="Generator")
        rate = max(1.0, min(max_rate(self.settings), rate))
        gen.set_rate(rate)
        self._set("generator", State.RUNNING, self.generator_summary())
        return rate

    def retrain(self, *, mode: str | None = None, algo: str | None = None) -> Any:
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

            def progress(phase: str, fraction: float | None) -> None:
                self._emit(TrainingProgress(fraction or 0.0, phase))

            result = train_model(
                self.settings,
                mode=mode or self.settings.model_mode,
                algo=algo or self.settings.model_algo,
                progress=progress,
                should_stop=self._stop.is_set,
            )
            self._set("model", State.RUNNING, self.model_summary())
            verdict = "promoted" if getattr(result, "promoted", False) else "kept the champion"
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
        broker = self.broker
        if broker is None:
            return
        if broker.is_running():
            if self._statuses["broker"].state != State.RUNNING:
                self._set("broker", State.RUNNING, f"{broker.name} {broker.bootstrap_servers}")
            return
        self._set("broker", State.FAILED, f"not answering at {broker.bootstrap_servers}")
        self._emit(Notice("error", f"broker down at {broker.bootstrap_servers}"))
        restarts = self._restarts["broker"]
        if broker.started_here and restarts.allow() and not self._stop.is_set():
            restarts.record()
            try:
                broker.start()
                self._set("broker", State.RUNNING, f"{broker.name} {broker.bootstrap_servers}")
                self._emit(Notice("information", "broker restarted"))
            except RtfdError as e:
                self._set("broker", State.FAILED, e.message)

    def _check_stream(self) -> None:
        stream = self.stream
        if stream is None:
            return
        current = stream.state
        state, reason = current.phase, current.reason
        if state == "failed":
            self._set("stream", State.FAILED, reason)
            restarts = self._restarts["stream"]
            if restarts.allow() and not self._stop.is_set():
                restarts.record()
                self._emit(Notice("warning", f"stream failed ({reason}); restarting"))
                self._start_stream()
        elif state == "running" and self._statuses["stream"].state != State.RUNNING:
            self._set("stream", State.RUNNING, reason or "query running")

    def _check_generator(self) -> None:
        gen = self.generator
        if gen is None or self._stop.is_set():
            return
        if not gen.running:
            self._set("generator", State.FAILED, "generator thread stopped")
            restarts = self._restarts["generator"]
            if restarts.allow():
                restarts.record()
                self._start_generator()
