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
