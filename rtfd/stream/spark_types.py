"""The Spark ``StructType`` of a record schema of :mod:`rtfd.schemas`.

The schemas are data (fields with constraints) from which every side derives what it needs; the
Spark side lives here so that pyspark is imported only under :mod:`rtfd.stream` (a layering
contract that ``just lint`` checks).
"""

from __future__ import annotations

from typing import Any

from rtfd.schemas import RecordSchema


def spark_schema(schema: RecordSchema, *, timestamps_as_string: bool = False) -> Any:
    """The Spark StructType of ``schema``. JSON parsing reads timestamps as strings first
    (``timestamps_as_string``) so that a bad timestamp is a countable reason, not a null."""
    from pyspark.sql import types as T

    mapping = {
        "string": T.StringType(),
        "double": T.DoubleType(),
        "long": T.LongType(),
        "int": T.IntegerType(),
        "boolean": T.BooleanType(),
        "timestamp": T.StringType() if timestamps_as_string else T.TimestampType(),
        "list<string>": T.ArrayType(T.StringType()),
    }
    return T.StructType(
        [T.StructField(f.name, mapping[f.type], nullable=True) for f in schema.fields]
    )


def decoded_fields() -> list[Any]:
    """The Spark fields of a decoded record: the transaction's (all nullable: a dead letter has
    none), its Kafka coordinates, and the dead-letter columns (reason, raw bytes, a preview)."""
    from pyspark.sql import types as T

    from rtfd.schemas import TRANSACTION

    return [
        *spark_schema(TRANSACTION).fields,
        T.StructField("kafka_topic", T.StringType()),
        T.StructField("kafka_partition", T.IntegerType()),
        T.StructField("kafka_offset", T.LongType()),
        T.StructField("kafka_ts", T.TimestampType()),
        T.StructField("reason", T.StringType()),
        T.StructField("raw_b64", T.StringType()),
        T.StructField("raw_preview", T.StringType()),
    ]
