"""The Spark-state path's pieces that run inside Spark: decoding on the executors agrees with the
driver's decoder; bucket keys spread evenly over Spark's hash partitions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_decode import CASES, KAFKA_MS, MAX_AMOUNT, MAX_FUTURE_S, decoded

pytestmark = pytest.mark.spark


def test_decoding_on_the_executors_gives_the_drivers_verdicts(spark: Any) -> None:
    import pandas as pd
    from pyspark.sql import types as T

    from rtfd.stream.cluster import decode_batches, decoded_schema

    ts = pd.Timestamp(KAFKA_MS, unit="ms", tz="UTC").to_pydatetime()
    schema = T.StructType(
        [
            T.StructField("value", T.BinaryType()),
            T.StructField("topic", T.StringType()),
            T.StructField("partition", T.IntegerType()),
            T.StructField("offset", T.LongType()),
            T.StructField("timestamp", T.TimestampType()),
        ]
    )
    df = spark.createDataFrame([(v, "transactions", 0, i, ts) for i, v in enumerate(CASES)], schema)
    got = (
        df.mapInArrow(
            decode_batches(max_future_s=MAX_FUTURE_S, max_amount=MAX_AMOUNT), decoded_schema()
        )
        .toPandas()
        .sort_values("kafka_offset")
    )
    want = decoded(CASES)
    dead = got[got["reason"].notna()]
    assert dead["kafka_offset"].tolist() == want.dead["kafka_offset"].tolist()
    assert dead["reason"].tolist() == want.dead["reason"].tolist()
    valid = got[got["reason"].isna()].reset_index(drop=True)
    assert valid["kafka_offset"].tolist() == want.valid["kafka_offset"].tolist()
    for name in ("transaction_id", "amount", "location", "currency"):
        assert valid[name].tolist() == want.valid[name].tolist(), name
    assert pd.to_datetime(valid["timestamp"], utc=True).tolist() == want.valid["timestamp"].tolist()


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
