"""The flag helpers every command module uses: argparse types and checks that turn a bad value
into rtfd's one-line error before a command starts anything.

Only the standard library at import time (``rtfd --help`` imports this); :mod:`rtfd.config` and
:mod:`rtfd.errors` are imported when a check runs.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse with rtfd's one-line errors: ``rtfd: Invalid argument: ...`` and exit code 2,
    instead of the usage block and the error (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rtfd: Invalid argument: {one_line(message)} (see `{self.prog} --help`)\n")


@dataclass(frozen=True)
class Number:
    """An argparse ``type``: a finite int or float in a range, so nan, inf, 1e309 and a negative
    count fail at parsing, before a command starts anything (``type=float`` takes them all)."""

    kind: type[int] | type[float] = float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # the value must be > lo rather than >= lo

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        lo, hi = (
            None if b is None else f"{int(b):,}" if b == int(b) else f"{b:g}"
            for b in (self.lo, self.hi)
        )
        if lo is not None and hi is not None and not self.lo_open:
            return f"{what} from {lo} to {hi}"
        bounds = []
        if lo is not None:
            bounds.append(f"{'>' if self.lo_open else '>='} {lo}")
        if hi is not None:
            bounds.append(f"<= {hi}")
        return f"{what} {' and '.join(bounds)}".strip()

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text.strip().replace("_", ""))
        except (ValueError, OverflowError):
            value = None
        ok = value is not None and (isinstance(value, int) or math.isfinite(value))
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo  # type: ignore[operator]
        if ok and self.hi is not None:
            ok = value <= self.hi  # type: ignore[operator]
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {shown(text)}")
        return value  # type: ignore[return-value]


def shown(value: str, limit: int = 60) -> str:
    """``repr(value)``, shortened past ``limit`` characters, for one-line messages."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


def output_file(value: str | None, flag: str) -> Path:
    """Check, before any long work, that a file can be written at ``value``; returns its path.

    Creates the missing parent directories (the writer would anyway) and tries creating the
    file, so /proc, a directory, a parent that is a file or a name too long fail at once with a
    :class:`~rtfd.errors.UsageError` naming ``flag``.
    """
    from rtfd.config import short_path
    from rtfd.errors import UsageError

    if not value or "\x00" in value:
        raise UsageError(f"{flag}: expected a file name, got {shown(value or '')}")
    path = Path(value).expanduser()
    if path.is_dir():
        raise UsageError(f"{flag} {short_path(path)}: is a directory; give a file name")
    if path.exists() and not path.is_file():
        # /dev/null, a FIFO: the writers replace the file atomically, which would clobber it.
        raise UsageError(f"{flag} {short_path(path)}: not a regular file; give a file name")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):  # appends nothing: an existing file is left as it was
            pass
        if not existed:
            path.unlink()
    except OSError as e:
        raise UsageError(f"{flag} {short_path(path)}: cannot write it: {e.strerror or e}") from e
    return path


def output_dir(value: str | None, flag: str) -> Path:
    """Like :func:`output_file` for a directory: created now, and it must be writable."""
    from rtfd.config import make_dir, short_path
    from rtfd.errors import ConfigError, UsageError

    if not value or "\x00" in value:
        raise UsageError(f"{flag}: expected a directory, got {shown(value or '')}")
    path = Path(value).expanduser()
    try:
        return make_dir(path, flag)
    except ConfigError as e:
        cause = e.__cause__
        reason = getattr(cause, "strerror", None) or "not writable"
        raise UsageError(
            f"{flag} {short_path(path)}: cannot use it as a directory: {reason}"
        ) from e


def add_settings_flag(parser: argparse.ArgumentParser, flag: str, field: str, help: str) -> None:
    """Add a flag whose value overrides the Settings field ``field`` (None = not given)."""
    parser.add_argument(flag, dest=f"set_{field}", default=None, metavar="VALUE", help=help)


def one_line(text: str) -> str:
    """``text`` as one printable line: whitespace runs become a space (a library's message over
    several lines), other control characters their escape (a NUL or ESC from a bad value)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(text.split()))
