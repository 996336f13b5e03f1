"""Validation in Spark gives the Python validator's verdicts and reason codes, record by record."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rtfd.errors import ValidationError
from rtfd.schemas import LABEL, TRANSACTION

pytestmark = pytest.mark.spark

KAFKA_TS = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MAX_FUTURE_S = 300.0
MAX_AMOUNT = 1_000_000.0


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
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()

CASES: list[bytes | None] = [
    json.dumps(txn()).encode(),
    json.dumps(txn(extra="x", lat=None, lon=None, channel=None)).encode(),
    json.dumps(txn(lat=_DROP, lon=_DROP, channel=_DROP)).encode(),
    json.dumps(txn(amount=None)).encode(),
    json.dumps(txn(amount=_DROP)).encode(),
    json.dumps(txn(amount="12")).encode(),
    json.dumps(txn(amount=True)).encode(),
    json.dumps(txn(amount=0)).encode(),
    json.dumps(txn(amount=-3)).encode(),
    json.dumps(txn(amount=1e12)).encode(),
    json.dumps(txn(amount=7)).encode(),
    json.dumps(txn(amount=1_000_000)).encode(),
    json.dumps(txn(amount=[1])).encode(),
    json.dumps(txn(amount={"v": 1})).encode(),
    json.dumps(txn(user_id=5)).encode(),
    json.dumps(txn(user_id="")).encode(),
    json.dumps(txn(user_id="   ")).encode(),
    json.dumps(txn(user_id="x" * 500)).encode(),
    json.dumps(txn(user_id="x" * 128)).encode(),
    json.dumps(txn(currency="euro")).encode(),
    json.dumps(txn(currency="EURO")).encode(),
    json.dumps(txn(currency="usd")).encode(),
    json.dumps(txn(lat=91)).encode(),
    json.dumps(txn(lon=-180.5)).encode(),
    json.dumps(txn(lat="52")).encode(),
    json.dumps(txn(channel=1)).encode(),
    json.dumps(txn(channel="x" * 33)).encode(),
    json.dumps(txn(timestamp="yesterday")).encode(),
    json.dumps(txn(timestamp=1234567890)).encode(),
    json.dumps(txn(timestamp="1999-12-31T23:59:59.999Z")).encode(),
    json.dumps(txn(timestamp="2026-11-30T12:04:59.000Z")).encode(),
    json.dumps(txn(timestamp="2026-11-30T12:05:01.000Z")).encode(),
    json.dumps(txn(timestamp="2027-01-01T00:00:00Z")).encode(),
    json.dumps(txn(timestamp="2026-11-30T13:00:00+02:00")).encode(),
    json.dumps(txn(timestamp="2026-11-30 11:00:00")).encode(),
    json.dumps(txn(timestamp="2026-13-30T11:00:00Z")).encode(),
    json.dumps(txn(timestamp="2026-02-30T11:00:00Z")).encode(),
    json.dumps(txn(transaction_id=None)).encode(),
    json.dumps(txn(location="")).encode(),
    b"not json",
    b"",
    b"[1, 2]",
    b'"a string"',
    b"null",
    b'{"transaction_id": "t1", "amount": 3',
    b"\xff\xfe\x00garbage",
    None,
]


def python_verdict(raw: bytes | None) -> str | None:
    """What rtfd.schemas says about one message (None = valid)."""
    if raw is None:
        return "malformed_json"
    try:
        obj: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "malformed_json"
    try:
        TRANSACTION.validate(
            obj, now=KAFKA_TS, max_future=timedelta(seconds=MAX_FUTURE_S), max_amount=MAX_AMOUNT
        )
    except ValidationError as e:
        return e.reason
    return None


def kafka_frame(spark: Any, values: list[bytes | None]) -> Any:
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("value", T.BinaryType()),
            T.StructField("topic", T.StringType()),
            T.StructField("partition", T.IntegerType()),
            T.StructField("offset", T.LongType()),
            T.StructField("timestamp", T.TimestampType()),
        ]
    )
    rows = [(v, "transactions", 0, i, KAFKA_TS) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, schema)


def spark_verdicts(spark: Any, values: list[bytes | None], schema: Any = TRANSACTION) -> Any:
    from rtfd.stream.validate import parse_records

    parsed = parse_records(
        kafka_frame(spark, values), schema, max_future_s=MAX_FUTURE_S, max_amount=MAX_AMOUNT
    )
    return parsed.orderBy("kafka_offset").toPandas()


def test_reason_codes_match_the_python_validator(spark: Any) -> None:
    out = spark_verdicts(spark, CASES)
    got = [None if r is None else r for r in out["reason"].tolist()]
    want = [python_verdict(v) for v in CASES]
    mismatches = [(CASES[i], want[i], got[i]) for i in range(len(CASES)) if want[i] != got[i]]
    assert not mismatches


def test_valid_rows_are_typed_and_invalid_rows_keep_the_raw_bytes(spark: Any) -> None:
    import base64

    out = spark_verdicts(spark, [CASES[0], b"not json"])
    ok, bad = out.iloc[0], out.iloc[1]
    assert ok["amount"] == 12.5 and ok["transaction_id"] == "t1"
    assert ok["timestamp"] == datetime(2026, 11, 30, 11, 59, 0, 123000)
    assert ok["raw_b64"] is None and ok["reason"] is None
    assert base64.b64decode(bad["raw_b64"]) == b"not json"
    assert bad["raw_preview"] == "not json" and bad["reason"] == "malformed_json"
    where = (bad["kafka_topic"], bad["kafka_partition"], bad["kafka_offset"])
    assert where == ("transactions", 0, 1)


def test_random_mutations_agree_with_the_python_validator(spark: Any) -> None:
    """Fuzz: drop, retype or stretch random fields; Spark and Python must agree on each."""
    rng = random.Random(7)
    junk: list[object] = [None, "", " ", "x", 0, -1, 1.5, 1e300, True, [], {}, "2026-11-30", "EUR"]
    values: list[bytes | None] = []
    for _ in range(400):
        record: dict[str, object] = dict(txn())
        for _k in range(rng.randint(1, 2)):
            name = rng.choice(TRANSACTION.names)
            if rng.random() < 0.3:
                record.pop(name, None)
            else:
                record[name] = rng.choice(junk)
        values.append(json.dumps(record).encode())
    out = spark_verdicts(spark, values)
    want = [python_verdict(v) for v in values]
    got = out["reason"].tolist()
    mismatches = [(values[i], want[i], got[i]) for i in range(len(values)) if want[i] != got[i]]
    assert not mismatches[:5]


def test_labels_are_validated_from_the_label_schema(spark: Any) -> None:
    ok = {
        "transaction_id": "t1",
        "label": 1,
        "fraud_type": "card_testing",
        "reported_at": "2026-11-30T11:00:00Z",
    }
    values: list[bytes | None] = [
        json.dumps(ok).encode(),
        json.dumps({**ok, "label": 2}).encode(),
        json.dumps({**ok, "label": 0.5}).encode(),
        json.dumps({**ok, "label": 1.0}).encode(),
        json.dumps({**ok, "reported_at": None}).encode(),
    ]
    out = spark_verdicts(spark, values, LABEL)
    want = [None, "value:label", "type:label", None, "missing:reported_at"]
    assert out["reason"].tolist() == want
    assert out["label"].tolist()[0] == 1


def test_bucket_values_spread_evenly_over_spark_hash_partitions(spark: Any) -> None:
    """Our Murmur3 equals Spark's hash(), so the chosen bucket keys split evenly."""
    from pyspark.sql import functions as F

    from rtfd.stream.state import bucket_values, murmur3_int

    ints = [*range(-5, 200), 2**31 - 1, -(2**31)]
    df = spark.createDataFrame([(i,) for i in ints], "v int").select("v", F.hash("v").alias("h"))
    assert {r.v: r.h for r in df.collect()} == {i: murmur3_int(i) for i in ints}
    for buckets, partitions in ((16, 2), (16, 3), (7, 2)):
        values = bucket_values(buckets, partitions)
        counts = [0] * partitions
        for v in values:
            counts[murmur3_int(v) % partitions] += 1
        assert len(set(values)) == buckets
        assert max(counts) - min(counts) <= 1
