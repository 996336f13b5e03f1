"""The foreground ``rtfd stream`` loop: start, print progress and alerts, stop on Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

from rtfd.config import Settings
from rtfd.stream.progress import StreamProgress
from rtfd.stream.runner import RunnerState, StreamRunner, StreamTopics


def run_stream(
    settings: Settings,
    *,
    console: bool = False,
    topic_prefix: str = "",
    progress_every_s: float = 10.0,
) -> int:
    """Run the stream until Ctrl-C or SIGTERM (clean stop either way); exit code 1 on failure."""
    runner = StreamRunner(settings, console=console, topics=StreamTopics.with_prefix(topic_prefix))
    done = threading.Event()
    last_print = [0.0]

    def on_state(state: RunnerState) -> None:
        print(f"rtfd stream: {state.phase}: {state.reason}", file=sys.stderr, flush=True)
        if state.phase in ("failed", "stopped"):
            done.set()

    def on_progress(event: StreamProgress) -> None:
        now = time.monotonic()
        if (
            progress_every_s > 0
            and event.query == "transactions"
            and (now - last_print[0] >= progress_every_s)
        ):
            last_print[0] = now
            print(f"rtfd stream: {event.summary()}", file=sys.stderr, flush=True)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        done.set()

    runner.add_state_listener(on_state)
    runner.add_listener(on_progress)
    previous = signal.signal(signal.SIGTERM, on_signal)
    print(f"rtfd stream: Spark logs go to {settings.log_root / 'spark.log'}", file=sys.stderr)
    try:
        runner.start()
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("rtfd stream: stopping (Ctrl-C) ...", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        failed = runner.state.phase == "failed"
        reason = runner.state.reason
        runner.stop()
    if failed:
        print(f"rtfd stream: failed: {reason}", file=sys.stderr, flush=True)
        return 1
    return 0
