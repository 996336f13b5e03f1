"""Parse and validate Kafka records in Spark, with rules derived from :mod:`rtfd.schemas`.

A :class:`~rtfd.schemas.RecordSchema` (TRANSACTION, LABEL) becomes Spark SQL: the value is parsed
once into a VARIANT (``try_parse_json``), each field's JSON type is read from the variant, and the
field constraints (required, type, max_length, pattern, positive, min/max, choices, the timestamp
rules) become one ``CASE`` that yields the first failing check as the same short reason code the
Python validator raises (``missing:amount``, ``type:amount``, ``range:amount``,
``future:timestamp``, ``malformed_json`` ...). Nothing is restated here: add a constraint to the
schema and the stream enforces it.

Two deliberate differences from :meth:`RecordSchema.validate`:

* "too far in the future" is measured against the record's Kafka timestamp (when the broker got
  it), not the wall clock, so that a replayed batch validates exactly as it did the first time
  (exactly-once output depends on it).
* JSON that Python's ``json`` module tolerates but the JSON standard does not (``NaN``, duplicate
  keys) is ``malformed_json`` here.

And one leniency: ``try_parse_json`` reads the first JSON value and ignores what follows. An
object's text must end with ``}`` (so trailing bytes are ``malformed_json``), but two complete
objects back to back pass: the first is validated and used (docs/bad-input.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtfd.schemas import MIN_TIMESTAMP, TRANSACTION, Field, RecordSchema

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# The wire format of timestamps, taken from rtfd.schemas so there is one definition.
from rtfd.schemas import TIMESTAMP_RE as _TIMESTAMP_RE

MALFORMED = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts")
DEAD_COLUMNS = ("reason", "raw_b64", "raw_preview")
PREVIEW_CHARS = 200

_NUMERIC_TYPES = "('BIGINT', 'INT', 'SMALLINT', 'TINYINT', 'DOUBLE', 'FLOAT')"
# How each field type is read out of its variant (timestamps first as text).
_READ_AS = {
    "string": "string",
    "double": "double",
    "long": "double",
    "int": "double",
    "boolean": "boolean",
    "list<string>": "array<string>",
    "timestamp": "string",
}
_OUTPUT_TYPES = {"long": "bigint", "int": "int"}


def _sql_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_lit(value: object) -> str:
    if isinstance(value, str):
        return _sql_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


# Per-field helper columns. Each expensive expression (variant extraction, its JSON type, the
# typed read, the timestamp parse) is computed once per row in its own projection; the CASE that
# picks the reason then only compares columns. (Written inline, the CASE evaluated the same
# variant reads dozens of times per row: 4x slower.)
def _var(name: str) -> str:
    return f"__v_{name}"


def _typ(name: str) -> str:
    return f"__t_{name}"


def _raw(name: str) -> str:
    return f"__x_{name}"


def _ts(name: str) -> str:
    return f"__ts_{name}"


def _value_sql(f: Field) -> str:
    """The output value of a field, from the helper columns."""
    if f.type == "timestamp":
        return _ts(f.name)
    if f.type in _OUTPUT_TYPES:
        return f"try_cast({_raw(f.name)} as {_OUTPUT_TYPES[f.type]})"
    return _raw(f.name)


def field_checks(
    f: Field, *, max_future_s: float, max_amount: float, reference: str
) -> list[tuple[str, str]]:
    """(failing SQL condition, reason) pairs for one field, in the Python validator's order.

    Conditions refer to the helper columns of :func:`parse_records`; ``reference`` is the SQL
    expression of "now" for the future-timestamp rule.
    """
    v, t, x = _var(f.name), _typ(f.name), _raw(f.name)
    checks: list[tuple[str, str]] = []
    absent = f"({v} IS NULL OR {t} = 'VOID')"
    if f.required:
        checks.append((absent, f"missing:{f.name}"))
    present = f"NOT {absent}"

    def add(cond: str, kind: str) -> None:
        checks.append((f"({present} AND ({cond}))", f"{kind}:{f.name}"))

    if f.type == "string":
        add(f"{t} <> 'STRING'", "type")
        if f.max_length is not None:
            add(f"char_length({x}) > {f.max_length}", "too_long")
        if f.required:
            add(f"{x} rlike '(?U)^\\\\s*$'", "empty")
        if f.pattern is not None:
            add(f"NOT ({x} rlike {_sql_str('^(?:' + f.pattern + ')$')})", "format")
        if f.choices is not None:
            add(f"NOT ({x} IN ({', '.join(_sql_lit(c) for c in f.choices)}))", "value")
    elif f.type in ("double", "long", "int"):
        add(f"NOT ({t} IN {_NUMERIC_TYPES} OR {t} LIKE 'DECIMAL%')", "type")
        add(f"{x} IS NULL OR isnan({x}) OR abs({x}) = double('Infinity')", "range")
        if f.type in ("long", "int"):
            add(f"{x} <> floor({x})", "type")
        if f.positive:
            add(f"{x} <= 0", "range")
        if f.name == "amount":
            add(f"{x} > {float(max_amount)!r}", "range")
        if f.min_value is not None:
            add(f"{x} < {float(f.min_value)!r}", "range")
        if f.max_value is not None:
            add(f"{x} > {float(f.max_value)!r}", "range")
        if f.choices is not None:
            add(f"NOT ({x} IN ({', '.join(_sql_lit(float(c)) for c in f.choices)}))", "value")
    elif f.type == "boolean":
        add(f"{t} <> 'BOOLEAN'", "type")
    elif f.type == "timestamp":
        ts = _ts(f.name)
        add(f"{t} <> 'STRING'", "type")
        pattern = _sql_str("^(?:" + _TIMESTAMP_RE.pattern + ")$")
        add(f"NOT ({x} rlike {pattern}) OR {ts} IS NULL", "format")
        add(f"{ts} < timestamp'{MIN_TIMESTAMP.strftime('%Y-%m-%d %H:%M:%S')}'", "range")
        add(f"unix_micros({ts}) > unix_micros({reference}) + {int(max_future_s * 1e6)}", "future")
    elif f.type == "list<string>":
        add(f"NOT ({t} IN ('ARRAY<STRING>', 'ARRAY<VOID>'))", "type")
    else:  # pragma: no cover - a new FieldType must be taught to the stream
        raise NotImplementedError(f.type)
    return checks


def reason_sql(
    schema: RecordSchema, *, max_future_s: float, max_amount: float, reference: str
) -> str:
    """One CASE expression: NULL for a valid record, else the first failing reason code."""
    whens = [
        f"WHEN __value IS NULL OR NOT __utf8 OR __json IS NULL THEN '{MALFORMED}'",
        f"WHEN __object AND NOT __closed THEN '{MALFORMED}'",
        f"WHEN NOT __object THEN '{NOT_AN_OBJECT}'",
    ]
    for f in schema.fields:
        for cond, reason in field_checks(
            f, max_future_s=max_future_s, max_amount=max_amount, reference=reference
        ):
            whens.append(f"WHEN {cond} THEN {_sql_str(reason)}")
    return "CASE " + " ".join(whens) + " ELSE NULL END"


def parse_records(
    kafka_df: DataFrame,
    schema: RecordSchema = TRANSACTION,
    *,
    max_future_s: float,
    max_amount: float,
) -> DataFrame:
    """Kafka rows -> one row per record: the schema's typed fields, ``reason`` (NULL when valid),
    ``raw_b64`` and ``raw_preview`` (set for invalid rows only) and the Kafka coordinates."""
    from pyspark.sql import functions as F

    names = [f.name for f in schema.fields]
    kafka = [F.col(c) for c in KAFKA_COLUMNS]
    base = kafka_df.select(
        F.col("value").alias("__value"),
        F.col("value").cast("string").alias("__text"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_ts"),
    )
    parsed = base.select(
        "*",
        F.expr("try_parse_json(__text)").alias("__json"),
        F.expr("is_valid_utf8(__text)").alias("__utf8"),
        # A JSON text that parses and starts with "{" is an object (cheaper than its schema).
        F.expr("__text rlike '^\\\\s*[{]'").alias("__object"),
        # try_parse_json stops after the first value and ignores what follows, so
        # '{...} garbage' would parse: an object's text must also end with "}".
        F.expr("__text rlike '[}]\\\\s*$'").alias("__closed"),
    )
    fields_v = parsed.select(
        "*",
        *[F.expr(f"try_variant_get(__json, '$.{n}', 'variant')").alias(_var(n)) for n in names],
    )
    typed = fields_v.select(
        "*",
        *[F.expr(f"schema_of_variant({_var(n)})").alias(_typ(n)) for n in names],
        *[
            F.expr(f"try_variant_get({_var(f.name)}, '$', '{_READ_AS[f.type]}')").alias(
                _raw(f.name)
            )
            for f in schema.fields
        ],
    )
    stamps = [f.name for f in schema.fields if f.type == "timestamp"]
    timed = typed.select(
        "*", *[F.expr(f"try_cast(trim({_raw(n)}) as timestamp)").alias(_ts(n)) for n in stamps]
    )
    reason = reason_sql(
        schema, max_future_s=max_future_s, max_amount=max_amount, reference="kafka_ts"
    )
    with_reason = timed.withColumn("reason", F.expr(reason))
    out: list[Column] = [F.expr(_value_sql(f)).alias(f.name) for f in schema.fields]
    out += kafka
    out += [
        F.col("reason"),
        F.when(F.col("reason").isNotNull(), F.base64("__value")).alias("raw_b64"),
        F.when(
            F.col("reason").isNotNull(),
            F.expr(f"substring(make_valid_utf8(__text), 1, {PREVIEW_CHARS})"),
        ).alias("raw_preview"),
    ]
    return with_reason.select(*out)
