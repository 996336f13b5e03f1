"""Quitting in the middle of a retrain: the exit is prompt and the registry is as it was.

The app runs over the real :class:`~rtfd.supervisor.Supervisor` (no broker, stream or
generator: ``r`` needs none of them) and a real registry; ``r`` starts a real
:func:`~rtfd.ml.train.train_model` on a small simulated history. What quitting does to the
training: the supervisor's stop cancels it at its next progress step, before anything is saved
(:class:`~rtfd.ml.train.TrainingCancelled`); once saving has begun the run completes instead
(the save is atomic). Either way no half version is ever visible and the champion stays live
unless a complete challenger won.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from rtfd.config import Settings, load_settings
from rtfd.errors import RtfdError
from rtfd.ml.registry import Registry
from rtfd.supervisor import Event, Notice, Supervisor, TrainingProgress
from tests.tui.conftest import SIZE, RecordingApp, wait_for
from tests.tui.fakes import FakeAlertFeed

pytestmark = pytest.mark.tui

#: The app closes within this after ``q`` (its own stop budget is 12 s; nothing runs here).
QUIT_S = 5.0
#: The cancelled training thread ends within this after the stop (the next progress step).
CANCEL_S = 10.0


@pytest.fixture
def settings() -> Settings:
    # A small population: the retrain's simulated history takes a second, not ten.
    s = load_settings({"generator_users": 300, "generator_merchants": 80})
    s.ensure_dirs()
    return s


@pytest.fixture
def champion(settings: Settings) -> str:
    from rtfd.ml.data import simulated_history
    from rtfd.ml.train import train_model

    history = simulated_history(
        6, seed=5, users=300, merchants=80, fraud_rate=0.03, start=datetime(2024, 1, 1, tzinfo=UTC)
    )
    result = train_model(settings, algo="logreg", data=history)
    assert result.promoted
    return result.version


class HeldSupervisor(Supervisor):
    """The real supervisor; its training is held at the first boosting round until the app has
    stopped it, so that the quit always lands in the middle of the model fit."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, with_stream=False, with_generator=False)
        self.fitting = threading.Event()
        self.stopped = threading.Event()
        self.stop_calls = 0
        self.retrain_error: BaseException | None = None
        self.retrain_ended_at: float | None = None
        self.subscribe(self._hold)

    def _hold(self, event: Event) -> None:
        fit = isinstance(event, TrainingProgress) and event.message.startswith("boosting round")
        if fit and not self.fitting.is_set():
            self.fitting.set()
            self.stopped.wait(30)

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_calls += 1
        super().stop(timeout)
        self.stopped.set()

    def retrain(self, *, mode: str | None = None, algo: str | None = None) -> Any:
        try:
            return super().retrain(mode=mode, algo=algo)
        except BaseException as e:
            self.retrain_error = e
            raise
        finally:
            self.retrain_ended_at = time.monotonic()


def services() -> Any:
    from rtfd.tui.backends import Services

    s = Services()
    s.alert_feed = FakeAlertFeed
    return s


def assert_registry_as_it_was(settings: Settings, champion: str, history: list[Any]) -> None:
    registry = Registry(settings.models_dir)
    assert registry.versions() == [champion]
    assert registry.current() == champion
    assert registry.history() == history
    registry.verify(champion)
    hidden = sorted(p.name for p in settings.models_dir.iterdir() if p.name.startswith("."))
    assert hidden == []  # no temporary version directory, no CURRENT temp


async def test_quitting_during_a_retrain_exits_promptly_and_keeps_the_champion(
    settings: Settings, champion: str
) -> None:
    from rtfd.ml.train import TrainingCancelled

    history = Registry(settings.models_dir).history()
    supervisor = HeldSupervisor(settings)
    app = RecordingApp(settings, supervisor, services=services(), autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, supervisor.fitting.is_set, "the model fit", timeout=90)
        assert supervisor.training and app.training_now
        pressed = time.monotonic()
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=QUIT_S)
    closed_s = time.monotonic() - pressed
    assert app.return_code == 0 and app.stopped_cleanly
    assert supervisor.stop_calls == 1

    # The training thread (what run_app() waits for before the process exits) ends soon after.
    deadline = time.monotonic() + CANCEL_S
    while supervisor.training and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not supervisor.training, "the training did not stop"
    assert isinstance(supervisor.retrain_error, TrainingCancelled)
    assert supervisor.retrain_ended_at is not None
    print(f"app closed {closed_s:.2f} s after q; training ended "
          f"{supervisor.retrain_ended_at - pressed:.2f} s after q")  # fmt: skip
    assert_registry_as_it_was(settings, champion, history)


def test_stopping_the_supervisor_cancels_a_training_before_anything_is_saved(
    settings: Settings, champion: str
) -> None:
    """Without the TUI: ``Supervisor.stop`` from another thread, as ``rtfd up`` on Ctrl-C."""
    from rtfd.ml.train import TrainingCancelled

    history = Registry(settings.models_dir).history()
    supervisor = HeldSupervisor(settings)
    notices: list[Any] = []
    supervisor.subscribe(notices.append)
    worker = threading.Thread(target=lambda: _swallow(supervisor.retrain), daemon=True)
    worker.start()
    assert supervisor.fitting.wait(90), "the training never reached the model fit"
    supervisor.stop()
    worker.join(CANCEL_S)
    assert not worker.is_alive() and not supervisor.training
    assert isinstance(supervisor.retrain_error, TrainingCancelled)
    texts = [n.message for n in notices if isinstance(n, Notice)]
    assert any(t.startswith("retraining cancelled") for t in texts), texts
    assert_registry_as_it_was(settings, champion, history)

    with pytest.raises(TrainingCancelled):  # a stopped supervisor does not train
        supervisor.retrain()


def _swallow(fn: Any) -> None:
    try:
        fn()
    except RtfdError:
        pass
