"""The record schemas: one definition, three derivations, validation with countable reasons."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from rtfd.errors import ValidationError
from rtfd.schemas import ALERT, DEAD_LETTER, LABEL, TRANSACTION, format_timestamp, parse_timestamp

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def txn(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "transaction_id": "t1",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": 12.5,
        "currency": "EUR",
        "location": "Berlin",
        "lat": 52.52,
        "lon": 13.40,
        "channel": "pos",
        "timestamp": "2026-11-30T11:59:00.123Z",
    }
    base.update(over)
    return base


def test_a_valid_transaction_is_normalised() -> None:
    out = TRANSACTION.validate(txn(), now=NOW)
    assert out["timestamp"] == datetime(2026, 11, 30, 11, 59, 0, 123000, tzinfo=UTC)
    assert out["amount"] == 12.5


def test_extra_fields_are_dropped_and_optional_fields_may_be_missing() -> None:
    out = TRANSACTION.validate(txn(extra="x", lat=None, lon=None, channel=None), now=NOW)
    assert "extra" not in out and out["lat"] is None


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"amount": None}, "missing:amount"),
        ({"amount": "12"}, "type:amount"),
        ({"amount": True}, "type:amount"),
        ({"amount": 0}, "range:amount"),
        ({"amount": -3}, "range:amount"),
        ({"amount": float("nan")}, "range:amount"),
        ({"amount": 1e12}, "range:amount"),
        ({"user_id": 5}, "type:user_id"),
        ({"user_id": ""}, "empty:user_id"),
        ({"user_id": "x" * 500}, "too_long:user_id"),
        ({"currency": "euro"}, "format:currency"),
        ({"lat": 91.0}, "range:lat"),
        ({"timestamp": "yesterday"}, "format:timestamp"),
        ({"timestamp": "1970-01-01T00:00:00.000Z"}, "range:timestamp"),
        ({"timestamp": "2100-01-01T00:00:00.000Z"}, "future:timestamp"),
    ],
)
def test_bad_transactions_get_a_reason_code(over: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        TRANSACTION.validate(txn(**over), now=NOW)
    assert info.value.reason == reason


def test_a_non_object_is_refused() -> None:
    with pytest.raises(ValidationError, match="object"):
        TRANSACTION.validate([1, 2], now=NOW)


def test_unknown_but_well_formed_currency_is_accepted() -> None:
    assert TRANSACTION.validate(txn(currency="XYZ"), now=NOW)["currency"] == "XYZ"


def test_timestamps_round_trip_with_milliseconds() -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    text = format_timestamp(ts)
    assert text == "2026-01-02T03:04:05.678Z"
    assert parse_timestamp(text) == ts.replace(microsecond=678000)
    assert parse_timestamp("2026-01-02T04:04:05+01:00") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_timestamp("2026-13-02T04:04:05Z") is None


def test_future_limit_is_configurable() -> None:
    soon = format_timestamp(NOW + timedelta(minutes=10))
    with pytest.raises(ValidationError):
        TRANSACTION.validate(txn(timestamp=soon), now=NOW)
    assert TRANSACTION.validate(txn(timestamp=soon), now=NOW, max_future=timedelta(hours=1))


def test_arrow_schemas_follow_the_definitions() -> None:
    import pyarrow as pa

    schema = TRANSACTION.arrow_schema()
    assert schema.names == TRANSACTION.names
    assert schema.field("amount").type == pa.float64()
    assert schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert not schema.field("amount").nullable and schema.field("lat").nullable
    assert ALERT.arrow_schema().field("reasons").type == pa.list_(pa.string())
    for s in (LABEL, ALERT, DEAD_LETTER):
        assert s.arrow_schema().names == s.names


def test_spark_schema_is_derived_lazily() -> None:
    from rtfd.stream.spark_types import spark_schema

    code = "import rtfd.schemas, sys; assert 'pyspark' not in sys.modules, 'imported pyspark'"
    subprocess.run([sys.executable, "-c", code], check=True)
    struct = spark_schema(TRANSACTION)
    assert [f.name for f in struct.fields] == TRANSACTION.names
    raw = spark_schema(TRANSACTION, timestamps_as_string=True)
    assert raw["timestamp"].dataType.simpleString() == "string"
