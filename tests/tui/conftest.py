"""Fixtures of the TUI tests: settings in the isolated data root, a fake supervisor, the app."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from rtfd.config import Settings
from rtfd.tui.app import RtfdApp
from tests.tui.fakes import FakeAlertFeed, FakeRegistry, FakeSupervisor

SIZE = (120, 36)


@pytest.fixture
def supervisor(settings: Settings) -> FakeSupervisor:
    return FakeSupervisor(settings)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture(autouse=True)
def _forget_alert_feeds() -> Iterator[None]:
    FakeAlertFeed.instances.clear()
    yield
    FakeAlertFeed.instances.clear()


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], object], what: str, timeout: float = 5.0
) -> None:
    """Let the app run until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class RecordingApp(RtfdApp):
    """The app, recording every notification it shows (title, message, severity)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.toasts: list[tuple[str, str, str]] = []

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               **kwargs: Any) -> None:  # fmt: skip
        self.toasts.append((title, str(message), str(severity)))
        super().notify(message, title=title, severity=severity, **kwargs)

    def toast_text(self) -> str:
        return "\n".join(f"{t}: {m} [{s}]" for t, m, s in self.toasts)
