"""``rtfd label TRANSACTION_ID fraud|legit [--undo]``: an analyst's verdict, headless.

The same record the console's case screen publishes (``source = analyst``, the decision time)
goes to ``fraud_labels``, once the transaction is found in the enriched Parquet: a typo'd id
must not become a label nobody can match.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtfd.config import Settings

#: What the verdict argument accepts (the keys of :data:`rtfd.query.labels.VERDICTS`, kept here so
#: that ``rtfd --help`` imports nothing).
VERDICT_WORDS = ("fraud", "legit")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "label",
        help="record an analyst's verdict on a transaction (fraud_labels, source analyst)",
        description="Publish an analyst's verdict to fraud_labels: it counts for training at "
        "once, unless a chargeback for the transaction disagrees (docs/ml.md).",
    )
    parser.add_argument("transaction_id", help="a transaction of the enriched Parquet")
    parser.add_argument("verdict", choices=VERDICT_WORDS, help="fraud or legit")
    parser.add_argument(
        "--undo", action="store_true", help="withdraw that verdict instead of giving it"
    )
    # librdkafka's connection errors go to the log file: the outcome is one line on stderr.
    parser.set_defaults(func=cmd_label, quiet_console=True)


def cmd_label(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.broker import client_config
    from rtfd.broker.labels import label_publisher
    from rtfd.errors import UsageError
    from rtfd.query.labels import AnalystDecision, find_transaction

    tx = args.transaction_id.strip()
    decision = AnalystDecision(tx, args.verdict, datetime.now(UTC), withdrawn=args.undo)
    decision.record()  # an id too long or empty is refused before the lake is read
    if not find_transaction(settings, tx):
        shown = tx if len(tx) <= 60 else tx[:60] + "…"
        raise UsageError(
            f"no transaction {shown!r} in the enriched Parquet under {settings.enriched_dir} "
            "(the stream writes each batch; find ids with `rtfd query`)",
            title="Unknown transaction",
        )
    record = label_publisher(client_config(settings)).publish(decision)
    what = "withdrawn" if args.undo else "recorded"
    print(
        f"rtfd: {args.verdict} verdict on {tx} {what} on fraud_labels "
        f"(source analyst, {record['reported_at']})"
    )
    return 0
