"""The single source of truth for record shapes.

Each record (transaction, label, alert, dead letter) is defined once as a :class:`RecordSchema`.
From that one definition come:

* JSON validation in Python (:meth:`RecordSchema.validate`) with a short, countable reason;
* the Arrow schema (:meth:`RecordSchema.arrow_schema`) for Parquet files;
* the Spark ``StructType`` (:func:`rtfd.stream.spark_types.spark_schema`: pyspark is imported
  only under rtfd.stream) and the validation rules as data (:attr:`Field` constraints), which the
  stream turns into Spark SQL expressions.

This module imports neither pyspark nor textual.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from rtfd.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

FieldType = Literal["string", "double", "long", "int", "timestamp", "boolean", "list<string>"]


class Topics:
    """Names of the Kafka topics rtfd uses."""

    TRANSACTIONS = "transactions"
    LABELS = "fraud_labels"
    ALERTS = "fraud_alerts"
    DLQ = "transactions_dlq"
    ALL = (TRANSACTIONS, LABELS, ALERTS, DLQ)


# Timestamps before this are refused: card networks did not exist in 1970, and a zero epoch is
# the most common "unset" value in buggy producers.
MIN_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256


@dataclass(frozen=True)
class Field:
    """One field of a record, with the constraints validation enforces."""

    name: str
    type: FieldType
    required: bool = True
    doc: str = ""
    positive: bool = False
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[Any, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class RecordSchema:
    """A record shape: ordered fields and the derivations of the three schema worlds."""

    name: str
    fields: tuple[Field, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    # -- Arrow ------------------------------------------------------------------------------
    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        mapping = {
            "string": pa.string(),
            "double": pa.float64(),
            "long": pa.int64(),
            "int": pa.int32(),
            "boolean": pa.bool_(),
            "timestamp": pa.timestamp("ms", tz="UTC"),
            "list<string>": pa.list_(pa.string()),
        }
        return pa.schema(
            [pa.field(f.name, mapping[f.type], nullable=not f.required) for f in self.fields]
        )

    # -- Python validation ------------------------------------------------------------------
    def validate(
        self,
        obj: Any,
        *,
        now: datetime | None = None,
        max_future: timedelta = timedelta(minutes=5),
        max_amount: float = 1_000_000.0,
    ) -> dict[str, Any]:
        """Check a decoded JSON object; return it normalised (timestamps as aware datetimes).

        Raises :class:`ValidationError` whose ``reason`` is a short code such as
        ``missing:amount`` or ``type:amount``, the same codes the stream writes to the DLQ.
        Unknown extra fields are dropped (documented rule: producers may add fields).
        """
        if not isinstance(obj, dict):
            raise ValidationError("not_an_object", f"{self.name}: expected a JSON object")
        out: dict[str, Any] = {}
        for f in self.fields:
            value = obj.get(f.name)
            if value is None:
                if f.required:
                    raise ValidationError(f"missing:{f.name}", f"{self.name}: {f.name} is missing")
                out[f.name] = None
                continue
            out[f.name] = _check_field(self.name, f, value, now, max_future, max_amount)
        return out


def _check_field(
    record: str,
    f: Field,
    value: Any,
    now: datetime | None,
    max_future: timedelta,
    max_amount: float,
) -> Any:
    def bad(kind: str, why: str) -> ValidationError:
        return ValidationError(f"{kind}:{f.name}", f"{record}: {f.name} {why}")

    if f.type == "string":
        if not isinstance(value, str):
            raise bad("type", f"must be a string, got {type(value).__name__}")
        if f.max_length is not None and len(value) > f.max_length:
            raise bad("too_long", f"is longer than {f.max_length} characters")
        if f.required and not value.strip():
            raise bad("empty", "is empty")
        if f.pattern is not None and not re.fullmatch(f.pattern, value):
            raise bad("format", f"does not match {f.pattern}")
        if f.choices is not None and value not in f.choices:
            raise bad("value", f"must be one of {f.choices}")
        return value
    if f.type in ("double", "long", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("type", f"must be a number, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise bad("range", "is not finite")
        if f.type in ("long", "int") and isinstance(value, float) and not value.is_integer():
            raise bad("type", "must be an integer")
        if f.positive and value <= 0:
            raise bad("range", "must be > 0")
        if f.name == "amount" and value > max_amount:
            raise bad("range", f"exceeds the maximum {max_amount:g}")
        if f.min_value is not None and value < f.min_value:
            raise bad("range", f"must be >= {f.min_value}")
        if f.max_value is not None and value > f.max_value:
            raise bad("range", f"must be <= {f.max_value}")
        if f.choices is not None and value not in f.choices:
            raise bad("value", f"must be one of {f.choices}")
        return float(value) if f.type == "double" else int(value)
    if f.type == "boolean":
        if not isinstance(value, bool):
            raise bad("type", "must be true or false")
        return value
    if f.type == "timestamp":
        if not isinstance(value, str):
            raise bad("type", "must be an ISO-8601 string")
        ts = parse_timestamp(value)
        if ts is None:
            raise bad("format", "is not an ISO-8601 timestamp")
        if ts < MIN_TIMESTAMP:
            raise bad("range", "is before 2000-01-01")
        reference = now or datetime.now(UTC)
        if ts > reference + max_future:
            raise bad("future", "is too far in the future")
        return ts
    if f.type == "list<string>":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("type", "must be a list of strings")
        return value
    raise AssertionError(f.type)


TIMESTAMP_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?"
)
"""What a wire timestamp looks like; the stream derives its Spark check from it."""


def parse_timestamp(text: str) -> datetime | None:
    """Parse ISO-8601 (``Z`` or offset; naive means UTC). None when it is not a timestamp."""
    if not TIMESTAMP_RE.fullmatch(text.strip()):
        return None
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def format_timestamp(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``: the wire format of every timestamp."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


TRANSACTION = RecordSchema(
    "transaction",
    (
        Field("transaction_id", "string", doc="Unique id.", max_length=MAX_ID_LENGTH),
        Field("user_id", "string", doc="Card holder; the Kafka key.", max_length=MAX_ID_LENGTH),
        Field("merchant_id", "string", doc="Merchant.", max_length=MAX_ID_LENGTH),
        Field("amount", "double", doc="Amount, > 0.", positive=True),
        Field(
            "currency",
            "string",
            doc="ISO 4217 code; well-formed unknown codes are accepted.",
            pattern=r"[A-Z]{3}",
        ),
        Field("location", "string", doc="City name.", max_length=MAX_TEXT_LENGTH),
        Field("lat", "double", required=False, doc="Latitude.", min_value=-90, max_value=90),
        Field("lon", "double", required=False, doc="Longitude.", min_value=-180, max_value=180),
        Field("channel", "string", required=False, doc="pos, online, atm ...", max_length=32),
        Field("timestamp", "timestamp", doc="Event time, ISO-8601 UTC with milliseconds."),
    ),
)

LABEL_SOURCES = ("chargeback", "analyst")
"""Where a label comes from; a LABEL record without ``source`` is a chargeback (records written
before analysts could label stay valid). See docs/ml.md for which one counts."""

LABEL = RecordSchema(
    "label",
    (
        Field("transaction_id", "string", max_length=MAX_ID_LENGTH),
        Field("label", "int", doc="1 = fraud.", choices=(0, 1)),
        Field("fraud_type", "string", required=False, max_length=64),
        Field("reported_at", "timestamp", doc="When it was reported, or the analyst decided."),
        Field(
            "source",
            "string",
            required=False,
            doc="Who reported it: chargeback (also when absent) or analyst.",
            choices=LABEL_SOURCES,
        ),
        Field(
            "withdrawn",
            "boolean",
            required=False,
            doc="True on an analyst's undo: their earlier label no longer counts.",
        ),
    ),
)

ALERT = RecordSchema(
    "alert",
    (
        Field("transaction_id", "string"),
        Field("user_id", "string"),
        Field("fraud_score", "double", min_value=0, max_value=1),
        Field("timestamp", "timestamp"),
        Field("alert_id", "string", doc="Deterministic: same transaction and model -> same id."),
        Field("model_version", "string"),
        Field("threshold", "double"),
        Field("amount", "double"),
        Field("merchant_id", "string"),
        Field("reasons", "list<string>", doc="Top feature contributions, human-readable."),
        Field("scored_at", "timestamp"),
    ),
)

DEAD_LETTER = RecordSchema(
    "dead_letter",
    (
        Field("raw_b64", "string", doc="The raw message value, base64."),
        Field("raw_preview", "string", required=False, doc="First 200 characters, lossy UTF-8."),
        Field("reason", "string", doc="Short code, e.g. missing:amount, malformed_json."),
        Field("topic", "string"),
        Field("partition", "int"),
        Field("offset", "long"),
        Field("seen_at", "timestamp"),
    ),
)

SCHEMAS = {s.name: s for s in (TRANSACTION, LABEL, ALERT, DEAD_LETTER)}
