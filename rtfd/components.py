"""The typed seam between the appliance and whoever shows it (the TUI, ``rtfd up``).

The supervisor runs each moving part (broker, stream, generator) behind one small
:class:`Component` protocol and reports it as a :class:`ComponentStatus`. What the screen shows
of the model and the generator travels as frozen snapshots (:class:`ModelInfo`,
:class:`GeneratorInfo`; the stream's own :class:`~rtfd.stream.progress.StreamProgress`), never as
a string one side formats and the other parses back, nor as a live object probed with
``getattr``. This module imports nothing heavy, so both sides can use it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


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


@runtime_checkable
class Component(Protocol):
    """A part of the appliance the supervisor starts, watches and stops.

    ``start`` blocks until the part is up or raises :class:`~rtfd.errors.RtfdError`; ``stop``
    returns within ``timeout``; ``health`` is cheap (the watchdog asks every few seconds) and
    never raises: a part that cannot answer is FAILED with a reason.
    """

    name: str

    def start(self) -> None: ...
    def stop(self, timeout: float) -> None: ...
    def health(self) -> ComponentStatus: ...


@dataclass(frozen=True)
class ModelInfo:
    """The live model as the status bar and the live panel need it: the threshold is a number
    here, so nobody parses it back out of :meth:`summary`."""

    version: str
    algo: str = "?"
    mode: str = "?"
    threshold: float | None = None
    #: Why the version could not be read (tampered, missing file); empty when it could.
    note: str = ""
    #: What the threshold promises, read off the validation window when the model was trained
    #: (:class:`rtfd.ml.thresholds.Expected`): the share of alerts expected to be fraud (None
    #: when the scores are not calibrated) and alerts a day at the rate it was trained for.
    expected_precision: float | None = None
    expected_alerts_per_day: float | None = None
    #: The live time-lapse the model was trained for (None when it was trained on a file).
    time_scale: float | None = None

    def time_lapse_mismatch(self, live_time_scale: float) -> str:
        """Why the model does not fit a generator at ``live_time_scale`` ('' when it does):
        velocity and recency features scale with the time-lapse, so a model trained for
        another one sees paces it never learnt."""
        if self.time_scale is None or math.isclose(self.time_scale, live_time_scale, rel_tol=0.01):
            return ""
        return (
            f"trained for time-lapse {self.time_scale:g}, generator at {live_time_scale:g}: retrain"
        )

    def summary(self, live_time_scale: float | None = None) -> str:
        """'v0003 xgboost supervised thr 0.420 · precision ~81% · ~1,200 alerts/day' (or
        'v0003 (why not)') for the status bar. Given the generator's time-lapse and trained for
        another, it says so instead of a promise that no longer holds."""
        if self.note or self.threshold is None:
            return f"{self.version} ({self.note or 'no threshold'})"
        text = f"{self.version} {self.algo} {self.mode} thr {self.threshold:.3f}"
        mismatch = "" if live_time_scale is None else self.time_lapse_mismatch(live_time_scale)
        if mismatch:
            return f"{text} · {mismatch}"
        if self.expected_precision is not None:
            text += f" · precision ~{self.expected_precision:.0%}"
        if self.expected_alerts_per_day is not None:
            text += f" · ~{self.expected_alerts_per_day:,.0f} alerts/day"
        return text


@dataclass(frozen=True)
class GeneratorInfo:
    """A snapshot of the live generator: its settings and what it has actually done."""

    rate: float
    paused: bool = False
    cards: int = 0  # simulated cards active (0 for a file replay)
    actual_rate: float | None = None  # tx/s sent over the last few seconds
    cards_pending: int = 0  # cards being drawn for a higher rate
    failed: int = 0  # deliveries the broker refused

    def summary(self) -> str:
        """'on 200 tx/s, 10,000 cards' for the status bar."""
        cards = f", {self.cards:,} cards" if self.cards else ""
        return f"{'paused' if self.paused else 'on'} {self.rate:g} tx/s{cards}"
