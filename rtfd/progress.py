"""Progress reporting for long work: a callback, and a stderr printer for the CLI."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[str, float | None], None]
"""``progress(message, fraction)``: fraction of the whole job done in [0, 1], or None."""


def no_progress(message: str, fraction: float | None) -> None:
    """A progress callback that ignores everything."""


class StderrProgress:
    """Prints ``[ 42%] message`` lines, at most one per ``min_interval_s`` unless the message
    changes, so a fast loop does not flood the terminal."""

    def __init__(self, prefix: str, stream: TextIO | None = None, min_interval_s: float = 1.0):
        self.prefix = prefix
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self._last_message = ""
        self._last_time = 0.0

    def __call__(self, message: str, fraction: float | None) -> None:
        now = time.monotonic()
        if message == self._last_message and now - self._last_time < self.min_interval_s:
            return
        self._last_message, self._last_time = message, now
        pct = "    " if fraction is None else f"{100 * max(0.0, min(1.0, fraction)):3.0f}%"
        print(f"{self.prefix}: [{pct}] {message}", file=self.stream, flush=True)


def scaled(progress: Progress, lo: float, hi: float) -> Progress:
    """A callback that maps a sub-task's [0, 1] onto [lo, hi] of the parent's."""

    def inner(message: str, fraction: float | None) -> None:
        progress(message, None if fraction is None else lo + (hi - lo) * fraction)

    return inner
