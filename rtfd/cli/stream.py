"""``rtfd stream [--console]``: run the Spark streaming job until Ctrl-C."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rtfd.cli.flags import Number, add_settings_flag

if TYPE_CHECKING:
    from rtfd.config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "stream",
        help="run the Spark streaming job (validate, features, score, Parquet, alerts)",
        description=(
            "Run the Spark Structured Streaming job in the foreground until Ctrl-C. It reads the "
            "transactions and fraud_labels topics of the configured broker (start one with "
            "`rtfd broker up`), writes enriched_transactions/ and labels/ Parquet exactly once, "
            "and sends alerts and dead letters to Kafka. A restart resumes from the checkpoints."
        ),
    )
    parser.add_argument(
        "--console", action="store_true", help="also print one line per fraud alert"
    )
    parser.add_argument(
        "--topic-prefix",
        default="",
        metavar="PREFIX",
        help="prefix of every topic name (several appliances on one broker)",
    )
    parser.add_argument(
        "--progress-every",
        type=Number(float, lo=0),
        default=10.0,
        metavar="SECONDS",
        help="print a progress line at most this often (0: never)",
    )
    add_settings_flag(parser, "--master", "spark_master", "Spark master URL (default local[*])")
    add_settings_flag(parser, "--trigger", "stream_trigger_s", "micro-batch interval in seconds")
    parser.set_defaults(func=cmd_stream)


def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.stream.foreground import run_stream

    return run_stream(
        settings,
        console=args.console,
        topic_prefix=args.topic_prefix,
        progress_every_s=args.progress_every,
    )
