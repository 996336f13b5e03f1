"""What goes on the wire: producer settings and fast JSON encoding of transactions and labels.

Transactions are JSON objects with exactly the TRANSACTION field names, keyed by ``user_id``;
labels are LABEL objects keyed by ``transaction_id``. Timestamps are written exactly as
:func:`rtfd.schemas.format_timestamp` writes them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtfd.config import Settings

log = logging.getLogger(__name__)


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka settings of every rtfd producer of transactions and labels.

    Idempotence with acks=all means a retried batch is never written twice; a short linger lets
    librdkafka batch at high rates without adding visible latency at low ones. librdkafka's own
    log goes to Python logging (never to the terminal, which the TUI owns).
    """
    from rtfd.broker import client_config

    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 10,
        "queue.buffering.max.messages": 500_000,
        "log_level": 3,
        "logger": logging.getLogger("rtfd.kafka.producer"),
        **extra,
    }


class TimestampFormatter:
    """Epoch milliseconds -> ISO-8601 UTC text with a ``Z``, identical to
    :func:`rtfd.schemas.format_timestamp`, but caching the text of the current second (the
    producer formats thousands of timestamps per second)."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._prefix = ""

    def __call__(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        return f"{self._prefix}{milli:03d}Z"


def json_string(text: str) -> str:
    """A JSON string literal (UTF-8 kept as is)."""
    return json.dumps(text, ensure_ascii=False)


def number(value: float) -> str:
    """A JSON number: shortest round-trip text."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return repr(float(value))


_TX_PREFIX = (
    '{{"transaction_id":{0},"user_id":{1},"merchant_id":{2},"amount":{3},"currency":{4},'
    '"location":{5},"lat":{6},"lon":{7},"channel":{8},"timestamp":"'
)


def transaction_prefix(fields: Sequence[str]) -> str:
    """A transaction's JSON up to its timestamp value, from nine JSON fragments in TRANSACTION
    order (id, user, merchant, amount, currency, location, lat, lon, channel: strings quoted,
    numbers as text, ``null`` for none). Drawing prepares this once; sending only appends the
    timestamp (:func:`finish_transaction`)."""
    return _TX_PREFIX.format(*fields)


def finish_transaction(prefix: str, timestamp: str) -> bytes:
    """The message value: a prefix from :func:`transaction_prefix` plus the timestamp text."""
    return f'{prefix}{timestamp}"}}'.encode()


def encode_record(record: dict[str, Any]) -> bytes:
    """Any record as compact UTF-8 JSON (NaN becomes null: JSON has no NaN)."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }
    return json.dumps(clean, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_label(transaction_id: str, fraud_type: str | None, reported_at: str) -> bytes:
    """A LABEL record for a fraudulent transaction."""
    return encode_record(
        {
            "transaction_id": transaction_id,
            "label": 1,
            "fraud_type": fraud_type,
            "reported_at": reported_at,
        }
    )
