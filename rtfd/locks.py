"""Inter-process file locks (fcntl), for one-time downloads and exclusive resources."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float | None = None, what: str = "resource") -> Iterator[int]:
    """Hold an exclusive lock on ``path`` for the duration of the block.

    With ``timeout=None`` waits forever; otherwise raises TimeoutError naming ``what``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{what} is locked by another process ({path})") from None
                time.sleep(0.2)
        yield fd
    finally:
        os.close(fd)
