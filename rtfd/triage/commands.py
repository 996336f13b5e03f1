"""``rtfd label TRANSACTION_ID fraud|legit|undo``: an analyst's decision, headless."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtfd.config import Settings

UNDO = "undo"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "label",
        help="confirm (fraud) or clear (legit) a transaction, or undo that: publishes an "
        "analyst label to fraud_labels, used by the next training at once",
    )
    parser.add_argument("transaction_id", help="a transaction id from enriched_transactions")
    parser.add_argument("verdict", help="fraud, legit, or undo (withdraws your last decision)")
    parser.set_defaults(func=cmd_label)


def cmd_label(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from rtfd.broker import client_config
    from rtfd.cli import shown
    from rtfd.errors import UsageError
    from rtfd.labels import analyst_decision
    from rtfd.query.service import QueryService
    from rtfd.schemas import MAX_ID_LENGTH
    from rtfd.triage.case import labels_sql, transaction_exists
    from rtfd.triage.decisions import Verdict, label_record
    from rtfd.triage.publish import LabelPublisher

    tid = args.transaction_id
    if not tid.strip() or len(tid) > MAX_ID_LENGTH or not tid.isprintable():
        raise UsageError(f"not a transaction id: {shown(tid)}")
    undo = args.verdict.strip().lower() == UNDO
    standing: int | None = None
    verdict = None if undo else Verdict.parse(args.verdict)
    service = QueryService(settings)
    try:
        if not transaction_exists(service, tid):
            raise UsageError(
                f"no transaction {shown(tid)} in enriched_transactions (the stream writes each "
                "one there within seconds of scoring it; check the id with `rtfd query`)"
            )
        if undo:
            result = service.run(labels_sql(tid), limit=1000)
            records = [dict(zip(result.columns, r, strict=False)) for r in result.rows]
            standing = analyst_decision(records)
            if standing is None:
                raise UsageError(f"no analyst decision on {tid} to undo")
    finally:
        service.close()
    now = datetime.now(UTC)
    if verdict is None:
        record = label_record(tid, standing or 0, at=now, retracted=True)
    else:
        record = label_record(tid, verdict.label, at=now)
    publisher = LabelPublisher(client_config(settings))
    try:
        publisher.publish(record)
    finally:
        publisher.close()
    if verdict is None:
        what = "undone"
    else:
        what = "confirmed fraud" if verdict is Verdict.FRAUD else "cleared (legitimate)"
    print(f"rtfd: {tid} {what} (published to fraud_labels at {record['reported_at']})")
    return 0
