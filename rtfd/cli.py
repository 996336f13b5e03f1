"""The ``rtfd`` command.

Kept import-light so that ``rtfd --help`` is instant: each subsystem contributes its subcommands
through a small ``commands`` module that only uses argparse at import time; the handler imports
the heavy machinery when it runs.

A command module defines ``register(subparsers) -> None`` and sets ``func`` on each parser it adds
(``parser.set_defaults(func=handler)``) where ``handler(args, settings) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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


def add_settings_flag(parser: argparse.ArgumentParser, flag: str, field: str, help: str) -> None:
    """Add a flag whose value overrides the Settings field ``field`` (None = not given)."""
    parser.add_argument(flag, dest=f"set_{field}", default=None, metavar="VALUE", help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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

    try:
        settings = settings_from_args(args)
        from rtfd.logs import setup_logging

        setup_logging(settings, console=not getattr(args, "quiet_console", False))
        import logging

        logging.getLogger("rtfd.cli").info(
            "rtfd %s with settings %s", args.command, settings.redacted()
        )
        return int(args.func(args, settings) or 0)
    except RtfdError as e:
        from rtfd.redact import redact_text  # a message may quote an address with its password

        print(f"rtfd: {e.title}: {redact_text(e.message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtfd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
