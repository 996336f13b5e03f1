"""The ``rtfd`` command: the argparse entry and, beside it, one module per command.

This package is the only place that knows about argparse and the command line; nothing else in
rtfd imports it. Layout:

- ``__init__.py``: :func:`main` (the ``rtfd`` console script, also ``python -m rtfd.cli``), the
  global flags, exit codes and one-line errors;
- ``flags.py``: the helpers the command modules share (:class:`Number`, :func:`output_file`,
  :func:`add_settings_flag`, :func:`one_line` ...);
- one module per command or group: ``tui``, ``up`` (``up``/``down``), ``broker``, ``generate``
  (``generate``/``replay``), ``stream``, ``ml`` (``train``/``models``/``backtest``), ``query``,
  ``label``, ``monitor``, ``doctor``.

Kept import-light so that ``rtfd --help`` is instant: a command module only uses argparse at
import time; its handler imports the heavy machinery (pandas, Spark, the Kafka client, textual)
when it runs, so a bad value fails before anything heavy starts.

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
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rtfd.cli.flags import (
    ArgumentParser,
    Number,
    add_settings_flag,
    one_line,
    output_dir,
    output_file,
    shown,
)

__all__ = [
    "COMMAND_MODULES",
    "GLOBAL_FLAGS",
    "ArgumentParser",
    "Number",
    "add_settings_flag",
    "build_parser",
    "main",
    "one_line",
    "output_dir",
    "output_file",
    "settings_from_args",
    "shown",
]

if TYPE_CHECKING:
    from rtfd.config import Settings

# Order = order in --help. A module that does not exist yet is skipped.
COMMAND_MODULES = (
    "rtfd.cli.tui",
    "rtfd.cli.up",
    "rtfd.cli.broker",
    "rtfd.cli.generate",
    "rtfd.cli.stream",
    "rtfd.cli.ml",
    "rtfd.cli.query",
    "rtfd.cli.label",
    "rtfd.cli.monitor",
    "rtfd.cli.doctor",
)

# Global flags that map one-to-one onto Settings fields (dest = field name).
GLOBAL_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--home", "home", "data root (RTFD_HOME)"),
    ("--log-level", "log_level", "DEBUG, INFO, WARNING or ERROR"),
    ("--broker", "broker_backend", "auto, redpanda, kafka or external"),
    ("--bootstrap-servers", "broker_bootstrap_servers", "host:port of an external cluster"),
    ("--broker-port", "broker_port", "client port of the local broker"),
)


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
