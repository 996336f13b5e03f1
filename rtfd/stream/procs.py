"""Process hygiene for the stream: one owner per checkpoint, and no orphans of a killed run.

* :class:`CheckpointLock` holds an ``flock`` on ``<checkpoints>/.lock`` for as long as a stream
  runs: two queries on one checkpoint corrupt it (FIELD-NOTES). The kernel drops the lock when the
  owner dies, even on ``kill -9``, and the JVM never inherits it (``close_fds``).
* After a ``kill -9`` of the driver, its JVM and Python workers can live on (FIELD-NOTES measured
  four survivors) and may still touch the checkpoint. Every process of a stream carries the
  environment variable ``RTFD_SPARK_TAG=<tag of its checkpoint dir>``; :func:`end_orphans` finds
  them through ``/proc`` and ends them (SIGTERM, then SIGKILL) before the checkpoint is reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import time
from pathlib import Path

from rtfd.errors import RtfdError
from rtfd.sysinfo import pid_alive

log = logging.getLogger(__name__)


class StreamBusy(RtfdError):
    """Another stream already owns the checkpoint."""

    title = "Stream already running"


def checkpoint_tag(checkpoints_dir: Path) -> str:
    """A short stable id of a checkpoint root, used to mark its Spark processes."""
    return hashlib.sha1(str(Path(checkpoints_dir).resolve()).encode()).hexdigest()[:16]


class CheckpointLock:
    """An exclusive, non-blocking lock on a checkpoint root, held until :meth:`release`."""

    def __init__(self, checkpoints_dir: Path) -> None:
        self.path = Path(checkpoints_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StreamBusy` naming the owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise StreamBusy(
                f"another rtfd stream (pid {owner or '?'}) is using the checkpoints in "
                f"{self.path.parent}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_owner(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode().strip()
    return ""


def tagged_processes(tag: str, env_name: str) -> list[int]:
    """Pids of live processes whose environment holds ``env_name=tag`` (not this process)."""
    needle = f"{env_name}={tag}".encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def end_orphans(tag: str, env_name: str, *, grace_s: float = 5.0) -> list[int]:
    """End every process marked with ``tag``: SIGTERM, then SIGKILL after ``grace_s``."""
    pids = tagged_processes(tag, env_name)
    if not pids:
        return []
    log.warning("ending %d orphan Spark process(es) of a previous run: %s", len(pids), pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            break
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    return pids
