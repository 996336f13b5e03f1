"""What the console's workers do with the supervisor, and its life around the screen, without
Textual: start and stop the appliance, drive the generator, retrain, and run the app so that
nothing is left behind when it ends. The app calls these from ``@work(thread=True)`` workers and
turns what they return into messages; errors come back as text, never as exceptions, because a
failed control must show a notification, not crash the screen.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from rtfd.errors import RtfdError

if TYPE_CHECKING:
    from rtfd.ml.train import TrainResult
    from rtfd.tui.backends import AlertFeedLike, SupervisorLike

log = logging.getLogger(__name__)

#: Give the supervisor this long to stop.
STOP_TIMEOUT_S = 12.0
#: How long the stopping screen waits for a start-up step in flight (a bootstrap training, a
#: broker start) before leaving the rest to :func:`run_console`, which waits for it on the
#: console and then stops what it brought up, so nothing is left behind.
START_WAIT_S = 2.0


def start_appliance(supervisor: SupervisorLike, finished: threading.Event) -> str | None:
    """Start everything (blocking); returns what went wrong as one line, or None."""
    try:
        supervisor.start()
    except RtfdError as e:
        return f"{e.title}: {e.message}"
    except Exception as e:  # the UI must survive any start failure and say what happened
        log.exception("start failed")
        return f"{type(e).__name__}: {e}"
    finally:
        finished.set()
    return None


def stop_appliance(
    supervisor: SupervisorLike,
    *,
    start_finished: threading.Event,
    alert_feed: AlertFeedLike | None,
    closers: Iterable[Callable[[], object]],
    waiting: Callable[[str], object],
) -> None:
    """Stop the alert feed and the supervisor, then close the read-only services (blocking).

    A start-up step still running (e.g. the bootstrap model) is waited for up to
    :data:`START_WAIT_S`, and what it brought up is stopped again; past that, ``run_console``
    does it once the screen is gone.
    """
    began = time.monotonic()
    if alert_feed is not None:
        alert_feed.stop(timeout=3.0)
    _stop(supervisor)
    if not start_finished.is_set():
        waiting("waiting for the start-up step to end")
        if start_finished.wait(START_WAIT_S):
            _stop(supervisor)
    for close in closers:
        close()
    log.info("stopped in %.1f s", time.monotonic() - began)


def _stop(supervisor: SupervisorLike) -> None:
    try:
        supervisor.stop(timeout=STOP_TIMEOUT_S)
    except Exception:
        log.exception("stopping the supervisor failed")


def generator_control(supervisor: SupervisorLike, what: str, rate: float = 0.0) -> tuple[str, str]:
    """Toggle the generator (``what == "toggle"``) or set its rate; returns the notice to show
    as (level, text), empty text when there is nothing to say."""
    try:
        if what == "toggle":
            producing = supervisor.toggle_generator()
            return "information", "generator resumed" if producing else "generator paused"
        applied = supervisor.set_generator_rate(rate)
    except RtfdError as e:
        return "warning", e.message
    except Exception as e:
        log.exception("generator control failed")
        return "error", f"generator: {e}"
    if applied < rate:
        return "warning", (
            f"rate held at {applied:,.0f} tx/s: more would need more cards than generator_max_cards"
        )
    return "information", ""


def retrain(supervisor: SupervisorLike) -> tuple[TrainResult | None, str | None]:
    """Train a challenger (blocking); returns (result, None) or (None, what went wrong)."""
    try:
        return supervisor.retrain(), None
    except RtfdError as e:
        return None, e.message
    except Exception as e:
        log.exception("retrain failed")
        return None, f"{type(e).__name__}: {e}"


def listen_for_signals(handler: Callable[[int], object]) -> list[int]:
    """Route SIGTERM/SIGHUP to ``handler`` on the running loop (the graceful path: stop
    everything, restore the terminal); returns the signals taken over."""
    loop = asyncio.get_running_loop()
    taken: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or not POSIX: the default handler stays
        taken.append(sig)
    return taken


def forget_signals(signals: Iterable[int]) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for sig in signals:
        loop.remove_signal_handler(sig)


class Console(Protocol):
    """What :func:`run_console` needs of the app."""

    start_finished: threading.Event
    stopped_cleanly: bool

    def run(self, *, loop: asyncio.AbstractEventLoop) -> int | None: ...


def run_console(app: Console, supervisor: SupervisorLike) -> int:
    """Run the app; make sure everything is stopped afterwards.

    The app runs on a loop of our own so that, once the screen is gone, worker threads still
    busy (a start-up step or a retrain cannot be interrupted) are waited for here, with a line
    on the console saying so, and whatever a late start-up step brought up is stopped too.
    """
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
