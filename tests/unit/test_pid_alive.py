"""One liveness check for every process rtfd watches (brokers, stream workers, orphans)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from rtfd.sysinfo import is_zombie, pid_alive

pytestmark = pytest.mark.unit


def test_a_running_process_is_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid) and not is_zombie(child.pid)
    finally:
        child.kill()
        child.wait()


def test_an_unreaped_child_is_a_zombie_and_counts_as_dead() -> None:
    """kill(pid, 0) still succeeds on a zombie: only /proc tells it has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while not is_zombie(child.pid):  # exited, not yet reaped (no wait() before this loop ends)
        assert time.monotonic() < deadline, "the child never became a zombie"
        time.sleep(0.02)
    assert not pid_alive(child.pid)
    child.wait()


def test_a_reaped_pid_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid())
