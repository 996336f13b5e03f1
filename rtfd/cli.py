"""The ``rtfd`` command.

Kept import-light so that ``rtfd --help`` is instant: each subsystem contributes its subcommands
through a small ``commands`` module that only uses argparse at import time; the handler imports
the heavy machinery when it runs.

A command module defines ``register(subparsers) -> None`` and sets ``func`` on each parser it adds
(``parser.set_defaults(func=handler)``) where ``handler(args, settings) -> int``.

Exit codes: 0 done; 2 a user error (a bad flag, setting, path or file; a broker that does not
answer), always one line ``rtfd: <title>: <message>`` on stderr; 1 an internal error (a bug),
also one line, naming the log file that holds the traceback; 130 interrupted. ``broker status``
and ``doctor`` also use 1 for "not running" and "a check failed", printing their report on
stdout and nothing on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rtfd.config import Settings

# Order = order in --help. A module that does not exist yet is skipped.
COMMAND_MODULES = (
    "rtfd.tui.commands",
    "rtfd.supervisor_commands",
    "rtfd.broker.commands",
    "rtfd.generator.commands",
    "rtfd.stream.commands",
    "rtfd.ml.commands",
    "rtfd.query.commands",
    "rtfd.label_commands",
    "rtfd.monitor.commands",
    "rtfd.doctor",
)

# Global flags that map one-to-one onto Settings fields (dest = field name).
GLOBAL_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--home", "home", "data root (RTFD_HOME)"),
    ("--log-level", "log_level", "DEBUG, INFO, WARNING or ERROR"),
    ("--broker", "broker_backend", "auto, redpanda, kafka or external"),
    ("--bootstrap-servers", "broker_bootstrap_servers", "host:port of an external cluster"),
    ("--broker-port", "broker_port", "client port of the local broker"),
)


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


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="rtfd",
        description="rtfd: a real-time fraud-detection appliance (Kafka + Spark + ML + TUI).",
    )
    parser.add_argument("--config", default=None, metavar="FILE", help="TOML config file")
    for flag, field, help_text in GLOBAL_FLAGS:
        add_settings_flag(parser, flag, field, help_text)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (name == e.name or name.startswith(e.name + ".")):
                continue
            raise
        module.register(sub)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Load Settings with every ``set_<field>`` attribute of ``args`` as a CLI override."""
    from pathlib import Path

    from rtfd.config import load_settings

    overrides: dict[str, Any] = {
        key[4:]: value for key, value in vars(args).items() if key.startswith("set_")
    }
    config = Path(args.config) if getattr(args, "config", None) else None
    return load_settings(overrides, config_file=config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``rtfd`` command; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from rtfd import __version__

        print(f"rtfd {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0

    from rtfd.errors import RtfdError

    settings: Settings | None = None
    try:
        settings = settings_from_args(args)
        settings.ensure_dirs()
        from rtfd.logs import setup_logging

        setup_logging(settings, console=not getattr(args, "quiet_console", False))
        import logging

        logging.getLogger("rtfd.cli").info(
            "rtfd %s with settings %s", args.command, settings.redacted()
        )
        return int(args.func(args, settings) or 0)
    except RtfdError as e:
        from rtfd.redact import redact_text  # a message may quote an address with its password

        print(f"rtfd: {e.title}: {one_line(redact_text(e.message))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtfd: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # The machine refused something (a full disk, a permission, a name too long) where no
        # RtfdError wrapped it: still for the user to fix, so one line that names the file.
        _keep_traceback(settings, "file system error", e, crash_file=False)
        print(f"rtfd: File system error: {one_line(_describe_os_error(e))}", file=sys.stderr)
        return 2
    except Exception as e:
        # A bug: one line, and the traceback where a bug report can quote it.
        where = _keep_traceback(settings, "internal error", e)
        kept = f"the traceback is in {where}" if where else "no log file could be written"
        print(
            f"rtfd: Internal error: {type(e).__name__}: {one_line(str(e))[:300]} "
            f"(a bug in rtfd; {kept})",
            file=sys.stderr,
        )
        return 1


def one_line(text: str) -> str:
    """``text`` as one printable line: whitespace runs become a space (a library's message over
    several lines), other control characters their escape (a NUL or ESC from a bad value)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(text.split()))


def _describe_os_error(e: OSError) -> str:
    from rtfd.config import short_path

    text = e.strerror or one_line(str(e)) or type(e).__name__
    names = [short_path(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{text}: {' -> '.join(names)}" if names else text


def _keep_traceback(
    settings: Settings | None, message: str, error: BaseException, *, crash_file: bool = True
) -> str | None:
    """Write ``error``'s traceback to the log file (or, before logging is set up and with
    ``crash_file``, to a new file in the temp dir); returns where, or None if nowhere."""
    import tempfile
    import traceback

    if settings is not None:
        from rtfd.logs import log_traceback_to_file

        if log_traceback_to_file(message, error, settings.log_file):
            return str(settings.log_file)
    if not crash_file:
        return None
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="rtfd-crash-", suffix=".log", delete=False, encoding="utf-8"
        ) as f:
            f.write(f"{message}\n{''.join(traceback.format_exception(error))}")
            return f.name
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
