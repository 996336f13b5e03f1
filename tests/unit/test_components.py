"""The typed seam between the appliance and the console: snapshot types, the Component adapters
of broker, stream and generator (over fakes), and the supervisor's events and watchdog built on
them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from rtfd.components import Component, ComponentStatus, GeneratorInfo, ModelInfo, State
from rtfd.config import Settings
from rtfd.errors import RtfdError
from rtfd.stream.runner import RunnerState
from rtfd.supervisor import (
    BrokerComponent,
    ComponentChanged,
    Event,
    GeneratorComponent,
    Notice,
    StreamComponent,
    Supervisor,
    TrainingProgress,
)

pytestmark = pytest.mark.unit


# -- snapshots ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("info", "text"),
    [
        (ModelInfo("v0003", "xgboost", "supervised", 0.42), "v0003 xgboost supervised thr 0.420"),
        (
            ModelInfo("v0001", "iforest", "unsupervised", 0.9999),
            "v0001 iforest unsupervised thr 1.000",
        ),
        (
            ModelInfo("v0002", note="manifest.json was modified"),
            "v0002 (manifest.json was modified)",
        ),
        (ModelInfo("v0004", "logreg", "supervised"), "v0004 (no threshold)"),
    ],
)
def test_the_model_summary_is_made_from_the_snapshot(info: ModelInfo, text: str) -> None:
    assert info.summary() == text


@pytest.mark.parametrize(
    ("info", "text"),
    [
        (GeneratorInfo(200.0), "on 200 tx/s"),
        (GeneratorInfo(200.0, paused=True), "paused 200 tx/s"),
        (GeneratorInfo(1500.5, cards=12_000), "on 1500.5 tx/s, 12,000 cards"),
    ],
)
def test_the_generator_summary_is_made_from_the_snapshot(info: GeneratorInfo, text: str) -> None:
    assert info.summary() == text


@pytest.mark.parametrize(
    ("trained_for", "live", "fits"),
    [
        (600.0, 600.0, True),
        (600.0, 603.0, True),  # within 1 %: the same time-lapse written another way
        (600.0, 3000.0, False),
        (600.0, 60.0, False),
        (1.0, 600.0, False),
        (None, 600.0, True),  # trained on a file in its own time: nothing to compare
    ],
)
def test_a_model_says_when_the_generator_runs_at_another_time_lapse(
    trained_for: float | None, live: float, fits: bool
) -> None:
    mismatch = ModelInfo("v0001", time_scale=trained_for).time_lapse_mismatch(live)
    assert (mismatch == "") is fits
    if not fits:
        assert f"trained for time-lapse {trained_for:g}" in mismatch
        assert f"generator at {live:g}: retrain" in mismatch
        # The promise (precision, alerts a day) no longer holds: the summary says why instead.
        info = ModelInfo("v0001", "xgboost", "supervised", 0.5, expected_precision=0.8)
        info = replace(info, time_scale=trained_for)
        assert info.summary(live) == f"v0001 xgboost supervised thr 0.500 · {mismatch}"
        assert "precision ~80%" in info.summary()


def shown(status: ComponentStatus) -> tuple[str, State, str]:
    """What the status bar shows of a status (``since`` is the wall clock)."""
    return status.name, status.state, status.detail


# -- fakes behind the adapters --------------------------------------------------------------------
@dataclass
class FakeBroker:
    name: str = "kafka"
    bootstrap_servers: str = "127.0.0.1:9092"
    started_here: bool = True
    up: bool = False
    starts: int = 0
    stops: int = 0

    def start(self) -> None:
        self.starts += 1
        self.up = True

    def stop(self) -> None:
        self.stops += 1
        self.up = False

    def is_running(self) -> bool:
        return self.up

    def client_config(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers}


@dataclass
class Stats:
    actual_rate: float = 199.0
    cards_pending: int = 0
    failed: int = 0


@dataclass
class FakeGenerator:
    rate: float = 200.0
    paused: bool = False
    cards: int = 0
    running: bool = False
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.running = True

    def stop(self, timeout: float = 30.0) -> None:
        self.running = False

    def toggle(self) -> bool:
        self.paused = not self.paused
        return not self.paused

    def set_rate(self, rate: float) -> None:
        self.rate = rate

    def stats(self) -> Stats:
        return Stats(actual_rate=0.0 if self.paused else self.rate * 0.995)


@dataclass
class FakeRunner:
    state: RunnerState = field(default_factory=lambda: RunnerState("idle"))
    listeners: list[Any] = field(default_factory=list)
    state_listeners: list[Any] = field(default_factory=list)

    def add_listener(self, fn: Any) -> None:
        self.listeners.append(fn)

    def add_state_listener(self, fn: Any) -> None:
        self.state_listeners.append(fn)

    def start(self) -> None:
        self.set("starting", "starting")

    def stop(self, timeout: float = 60.0) -> None:
        self.set("stopped", "stopped")

    def set(self, phase: str, reason: str = "") -> None:
        self.state = RunnerState(phase, reason)
        for fn in self.state_listeners:
            fn(self.state)


def test_every_adapter_is_a_component(settings: Settings) -> None:
    stream = StreamComponent(settings, on_progress=lambda p: None, on_state=lambda s: None)
    for component in (BrokerComponent(settings), stream, GeneratorComponent(settings)):
        assert isinstance(component, Component)
        assert shown(component.health()) == (component.name, State.STOPPED, "")


def test_the_broker_adapter_reports_health_and_stops_only_what_it_started(
    settings: Settings,
) -> None:
    fake = FakeBroker()
    broker = BrokerComponent(settings, make=lambda s: fake)  # type: ignore[arg-type,return-value]
    broker.start()
    assert broker.health().state == State.RUNNING
    assert broker.health().detail == "kafka 127.0.0.1:9092"
    assert broker.client_config() == {"bootstrap.servers": "127.0.0.1:9092"}
    fake.up = False
    assert (broker.health().state, broker.health().detail) == (
        State.FAILED,
        "not answering at 127.0.0.1:9092",
    )
    fake.started_here = False  # adopted from outside: it keeps running
    broker.stop(timeout=1.0)
    assert fake.stops == 0
    fake.started_here = True
    broker.stop(timeout=1.0)
    assert fake.stops == 1


def test_a_broker_probe_that_raises_is_a_failed_broker(settings: Settings) -> None:
    class Exploding(FakeBroker):
        def is_running(self) -> bool:
            raise OSError("connection refused")

    broker = BrokerComponent(settings, make=lambda s: Exploding())  # type: ignore[arg-type,return-value]
    broker.start()
    assert broker.health().state == State.FAILED


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        ("starting", State.STARTING),
        ("running", State.RUNNING),
        ("failed", State.FAILED),
        ("stopped", State.STOPPED),
        ("idle", State.STOPPED),
        ("something new", State.DEGRADED),
    ],
)
def test_the_stream_adapter_maps_the_runner_phases(
    settings: Settings, phase: str, state: State
) -> None:
    runner = FakeRunner()
    seen: list[RunnerState] = []
    stream = StreamComponent(
        settings,
        on_progress=lambda p: None,
        on_state=seen.append,
        make=lambda s: runner,  # type: ignore[arg-type,return-value]
    )
    stream.start()
    assert runner.state_listeners == [seen.append] and seen[-1].phase == "starting"
    runner.set(phase, "why")
    assert shown(stream.health()) == ("stream", state, "why")


def test_the_generator_adapter_gives_a_snapshot_and_refuses_controls_before_start(
    settings: Settings,
) -> None:
    gen = GeneratorComponent(settings, make=lambda s: FakeGenerator(cards=10_000))  # type: ignore[arg-type,return-value]
    assert gen.info() is None
    with pytest.raises(RtfdError, match="not running"):
        gen.toggle()
    with pytest.raises(RtfdError, match="not running"):
        gen.set_rate(10.0)
    gen.start()
    assert gen.info() == GeneratorInfo(200.0, False, 10_000, actual_rate=199.0)
    assert gen.health().detail == "on 200 tx/s, 10,000 cards"
    assert gen.toggle() is False
    info = gen.info()
    assert info is not None and info.paused and info.actual_rate == 0.0
    gen.stop(timeout=1.0)
    assert shown(gen.health()) == ("generator", State.FAILED, "generator thread stopped")


# -- the supervisor on these adapters --------------------------------------------------------------
def supervisor_with_fakes(
    settings: Settings,
) -> tuple[Supervisor, FakeBroker, FakeGenerator, list[Event]]:
    sup = Supervisor(settings, with_stream=False)
    broker, gen = FakeBroker(), FakeGenerator()
    sup.broker = BrokerComponent(settings, make=lambda s: broker)  # type: ignore[arg-type,return-value]
    sup.generator = GeneratorComponent(settings, make=lambda s: gen)  # type: ignore[arg-type,return-value]
    events: list[Event] = []
    sup.subscribe(events.append)
    return sup, broker, gen, events


def test_the_watchdog_restarts_a_dead_generator_and_a_broker_it_started(settings: Settings) -> None:
    sup, broker, gen, events = supervisor_with_fakes(settings)
    sup.broker.start()
    sup._start_generator()
    assert sup.statuses()["generator"].detail == "on 200 tx/s"
    gen.running = False
    sup._check_generator()
    assert gen.starts == 2 and gen.running
    broker.up = False
    sup._set("broker", State.RUNNING, "kafka 127.0.0.1:9092")
    sup._check_broker()
    assert broker.starts == 2
    texts = [e.message for e in events if isinstance(e, Notice)]
    assert texts == ["broker down at 127.0.0.1:9092", "broker restarted"]
    assert sup.statuses()["broker"].state == State.RUNNING


def test_generator_controls_go_through_the_adapter_and_report_typed_status(
    settings: Settings,
) -> None:
    sup, _, _, events = supervisor_with_fakes(settings)
    with pytest.raises(RtfdError):
        sup.toggle_generator()
    sup._start_generator()
    assert sup.toggle_generator() is False
    assert sup.set_generator_rate(0.1) == 1.0  # clamped to 1 tx/s
    info = sup.generator_info()
    assert info is not None and info.paused and info.rate == 1.0
    changes = [e.status.detail for e in events if isinstance(e, ComponentChanged)]
    assert changes[-1] == "paused 1 tx/s"


def test_the_supervisor_reports_training_in_the_progress_signature(settings: Settings) -> None:
    sup, _, _, events = supervisor_with_fakes(settings)
    report = sup._progress("model")
    report("fitting", 0.5)
    report("reading history", None)
    assert [e for e in events if isinstance(e, TrainingProgress)] == [
        TrainingProgress("fitting", 0.5),
        TrainingProgress("reading history", None),
    ]
    assert sup.statuses()["model"].detail == "bootstrap model: reading history"


def test_subscribers_are_called_from_any_thread_and_a_broken_one_is_contained(
    settings: Settings,
) -> None:
    sup, _, _, events = supervisor_with_fakes(settings)

    def broken(event: Event) -> None:
        raise ValueError("subscriber bug")

    sup.subscribe(broken)
    worker = threading.Thread(target=sup._set, args=("stream", State.STARTING, "x"))
    worker.start()
    worker.join(5)
    assert isinstance(events[-1], ComponentChanged) and events[-1].status.detail == "x"
