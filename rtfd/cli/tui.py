"""``rtfd tui``: the appliance with its terminal console (textual is imported only when it runs)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rtfd.cli.flags import add_settings_flag

if TYPE_CHECKING:
    from rtfd.config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "tui",
        help="start everything and open the console (scores, alerts, SQL, models)",
        description=(
            "Start the broker, a bootstrap model if none exists, the stream and the generator, "
            "and show them live. q stops everything and quits; ? lists the keys."
        ),
    )
    add_settings_flag(parser, "--rate", "generator_rate", "generator rate at start (tx/s)")
    parser.add_argument(
        "--no-generator", action="store_true", help="do not start the transaction generator"
    )
    parser.add_argument(
        "--no-stream", action="store_true", help="do not start the Spark stream (console only)"
    )
    # cli.main reads this before calling the handler: no log line may reach the terminal.
    parser.set_defaults(func=cmd_tui, quiet_console=True)


def cmd_tui(args: argparse.Namespace, settings: Settings) -> int:
    import logging
    import sys

    from rtfd.errors import RtfdError
    from rtfd.logs import setup_logging

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise RtfdError(
            "rtfd tui needs an interactive terminal; use `rtfd up` to run headless",
            title="No terminal",
        )
    settings.ensure_dirs()
    setup_logging(settings, console=False)
    logging.captureWarnings(True)  # Python warnings would otherwise print over the screen

    from rtfd.tui.app import run_app

    return run_app(settings, with_stream=not args.no_stream, with_generator=not args.no_generator)
