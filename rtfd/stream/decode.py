"""Kafka records -> validated records and dead letters, vectorised, with one meaning.

The meaning is :func:`check_record`: strict JSON (what the standard allows — no ``NaN`` or
``Infinity``, no duplicate keys, no trailing data, valid UTF-8 and valid Unicode strings), then
:meth:`rtfd.schemas.RecordSchema.validate` with "too far in the future" measured against the
record's **Kafka timestamp** (when the broker got it, not the wall clock), so that a batch replayed
after a crash validates exactly as it did the first time. A record that fails gets the validator's
short reason code (``malformed_json``, ``not_an_object``, ``missing:amount``, ``type:amount``,
``range:amount``, ``future:timestamp`` ...), the same codes everywhere in rtfd.

:func:`decode` gives exactly those verdicts and values for a whole micro-batch, fast: the common
case — canonical, well-formed records — is parsed at once by Arrow's JSON reader and checked with
vectorised rules derived from the schema's :class:`~rtfd.schemas.Field` constraints; every record
the fast path cannot vouch for (a line Arrow refuses, an unusual timestamp, a value at a
boundary, a failed check) goes through :func:`check_record` itself. The fast path only ever
*accepts* records whose every value :func:`check_record` would accept unchanged, and a fuzz test
holds the two to identical output on random mutations. Nothing here imports pyspark: the local
stream calls it in ``foreachBatch``; a Spark cluster runs it on executors.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rtfd.errors import ValidationError
from rtfd.parallel import map_rows
from rtfd.schemas import MIN_TIMESTAMP, Field, RecordSchema

if TYPE_CHECKING:
    import pyarrow as pa

MALFORMED = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
PREVIEW_CHARS = 200
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts")
DEAD_COLUMNS = (
    "reason",
    "raw_b64",
    "raw_preview",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
)
_MIN_MS = int(MIN_TIMESTAMP.timestamp() * 1000)
# The wire format the generator and most producers use; anything else takes the exact path.
_CANONICAL_TS = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$"
)
_EXACT_INT = 2**53


@dataclass
class Decoded:
    """One batch, decoded: ``valid`` (the schema's fields typed, timestamps as aware
    ``datetime64[ms]``, plus the Kafka coordinates, in input order) and ``dead`` (one row per
    refused record: :data:`DEAD_COLUMNS`)."""

    valid: pd.DataFrame
    dead: pd.DataFrame
    fast: int  # records the vectorised path accepted (the rest went through check_record)


# --------------------------------------------------------------------------------------------
# The meaning: one record at a time
# --------------------------------------------------------------------------------------------
def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def strict_json(value: bytes) -> Any:
    """Parse JSON the way the standard defines it; ValueError otherwise."""
    text = value.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)


def check_record(
    value: bytes | None,
    kafka_ms: int,
    schema: RecordSchema,
    *,
    max_future_s: float,
    max_amount: float,
) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for a valid record (normalised by the schema), else (None, reason)."""
    if value is None:
        return None, MALFORMED
    try:
        obj = strict_json(value)
    except (ValueError, RecursionError):
        return None, MALFORMED
    if not isinstance(obj, dict):
        return None, NOT_AN_OBJECT
    for f in schema.fields:
        text = obj.get(f.name)
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate escape: not valid Unicode text
                return None, MALFORMED
    reference = datetime.fromtimestamp(kafka_ms / 1000.0, tz=UTC)
    try:
        record = schema.validate(
            obj,
            now=reference,
            max_future=timedelta(seconds=max_future_s),
            max_amount=max_amount,
        )
    except ValidationError as e:
        return None, e.reason
    return record, None


# --------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------
def _arrow_type(f: Field) -> pa.DataType:
    import pyarrow as pa

    if f.type in ("double", "long", "int"):
        return pa.float64()
    if f.type in ("string", "timestamp"):
        return pa.string()
    if f.type == "boolean":
        return pa.bool_()
    return pa.list_(pa.string())


def _read_options(schema: RecordSchema, size: int) -> tuple[Any, Any]:
    import pyarrow as pa
    import pyarrow.json as pj

    arrow = pa.schema([pa.field(f.name, _arrow_type(f)) for f in schema.fields])
    # Unknown fields stop the fast path: Arrow would skip them unchecked (a NaN or a duplicate
    # key inside one must still make the record malformed).
    parse = pj.ParseOptions(explicit_schema=arrow, unexpected_field_behavior="error")
    read = pj.ReadOptions(use_threads=False, block_size=max(size + 1, 1 << 20))
    return parse, read


# One object on one line (optional spaces or tabs around it), no NaN/Infinity anywhere: the
# values the fast path may try. Anything else goes to check_record.
_ONE_LINE_OBJECT = r"^[ \t]*\{[^\n\r]*\}[ \t]*$"


def _candidates(values: pa.Array) -> np.ndarray:
    import pyarrow.compute as pc

    ok = pc.fill_null(pc.match_substring_regex(values, _ONE_LINE_OBJECT), False)
    for word in ("NaN", "Infinity"):
        ok = pc.and_(ok, pc.invert(pc.fill_null(pc.match_substring(values, word), True)))
    return np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)


def _joined_lines(values: pa.Array) -> bytes:
    """The values as one newline-separated text (Arrow's join, no Python loop per value)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)
    return pc.binary_join(lists, b"\n")[0].as_buffer().to_pybytes()


def _fast_checks(
    table: pa.Table,
    schema: RecordSchema,
    kafka_ms: np.ndarray,
    *,
    max_future_s: float,
    max_amount: float,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(ok, columns): which rows every rule passes with a value check_record would give
    unchanged, and the typed columns. A row that is not ok is not necessarily invalid: it goes
    to check_record."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    ok = np.ones(n, dtype=bool)
    columns: dict[str, Any] = {}
    for f in schema.fields:
        col = table.column(f.name)
        present = pc.is_valid(col).to_numpy(zero_copy_only=False)
        if f.required:
            ok &= present
        if f.type == "string":
            length = pc.fill_null(pc.utf8_length(col), 0).to_numpy(zero_copy_only=False)
            if f.max_length is not None:
                ok &= length <= f.max_length
            if f.required:
                # Python's str.strip() knows more whitespace than RE2: only a string with a
                # letter or digit is surely not empty; any other goes the exact way.
                word = pc.match_substring_regex(col, "[0-9A-Za-z]")
                ok &= pc.fill_null(word, False).to_numpy(zero_copy_only=False)
            if f.pattern is not None:
                match = pc.match_substring_regex(col, f"^(?:{f.pattern})$")
                ok &= pc.fill_null(match, True).to_numpy(zero_copy_only=False)
            if f.choices is not None:
                chosen = pc.is_in(col, value_set=pa.array(list(f.choices), pa.string()))
                ok &= pc.fill_null(chosen, True).to_numpy(zero_copy_only=False) | ~present
            columns[f.name] = col
        elif f.type in ("double", "long", "int"):
            x = pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
            with np.errstate(invalid="ignore"):
                good = np.isfinite(x) & (x != 0.0)  # -0 and 0: the exact path decides the sign
                if f.positive:
                    good &= x > 0
                if f.name == "amount":
                    good &= x <= max_amount
                if f.min_value is not None:
                    good &= x >= f.min_value
                if f.max_value is not None:
                    good &= x <= f.max_value
                if f.type in ("long", "int"):
                    good &= (x == np.floor(x)) & (np.abs(x) < _EXACT_INT)
                if f.choices is not None:
                    good &= np.isin(x, np.asarray(f.choices, dtype=np.float64))
            ok &= good | ~present
            columns[f.name] = x
        elif f.type == "timestamp":
            canonical = pc.fill_null(pc.match_substring_regex(col, _CANONICAL_TS), False)
            canon = canonical.to_numpy(zero_copy_only=False)
            ms = np.zeros(n, dtype=np.int64)
            if canon.any():
                try:
                    stamps = pc.cast(
                        pc.if_else(canonical, col, "2000-01-01T00:00:00.000Z"),
                        pa.timestamp("ms", tz="UTC"),
                    )
                    ms = pc.cast(stamps, pa.int64()).to_numpy(zero_copy_only=False)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    canon = np.zeros(n, dtype=bool)  # an impossible date (Feb 30): exact path
            good = canon & (ms >= _MIN_MS)
            # Floored: the fast path may only be stricter than check_record, never looser.
            good &= ms <= kafka_ms + math.floor(max_future_s * 1000)
            ok &= good | ~present
            columns[f.name] = ms
        else:  # boolean, list<string>: rare in records; the exact path handles them
            ok &= ~present
            columns[f.name] = col
    return ok, columns


def decode(
    values: list[bytes | None] | pa.Array,
    kafka_ms: np.ndarray,
    coords: pd.DataFrame,
    schema: RecordSchema,
    *,
    max_future_s: float,
    max_amount: float,
) -> Decoded:
    """Decode and validate one batch.

    ``values`` are the raw message values (a list of bytes, or an Arrow binary array),
    ``kafka_ms`` their Kafka timestamps (epoch ms), and
    ``coords`` the Kafka columns to carry (``kafka_topic``, ``kafka_partition``,
    ``kafka_offset``), one row per value. Same verdicts as :func:`check_record` on each value.
    """

    import pyarrow as pa

    arr = values if isinstance(values, pa.Array) else pa.array(values, pa.binary())
    if not pa.types.is_binary(arr.type):
        arr = arr.cast(pa.binary())
    n = len(arr)
    kafka_ms = np.asarray(kafka_ms, dtype=np.int64)

    def fast_path(start: int, stop: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """(rows, typed columns) the vectorised path accepts among rows [start, stop)."""
        if start == stop:
            return []
        idx = np.flatnonzero(_candidates(arr.slice(start, stop - start))) + start
        out = []
        for part, table in _read_fast(arr, idx, schema):
            ok, cols = _fast_checks(
                table, schema, kafka_ms[part], max_future_s=max_future_s, max_amount=max_amount
            )
            rows = np.flatnonzero(ok)
            out.append((part[rows], {k: _take(v, rows) for k, v in cols.items()}))
        return out

    accepted = np.zeros(n, dtype=bool)
    fast_cols: dict[str, list[Any]] = {}
    fast_rows: list[np.ndarray] = []
    # Arrow's reader and kernels release the GIL: a large batch is read on a few threads.
    for span in map_rows(fast_path, n):
        for rows, cols in span:
            accepted[rows] = True
            fast_rows.append(rows)
            for k, v in cols.items():
                fast_cols.setdefault(k, []).append(v)
    slow = np.flatnonzero(~accepted)
    slow_values = arr.take(pa.array(slow, pa.int64())).to_pylist() if len(slow) else []
    slow_records: list[dict[str, Any]] = []
    slow_valid: list[int] = []
    dead_at: list[int] = []
    reasons: list[str] = []
    for i, value in zip(slow.tolist(), slow_values, strict=True):
        record, reason = check_record(
            value, int(kafka_ms[i]), schema, max_future_s=max_future_s, max_amount=max_amount
        )
        if record is None:
            dead_at.append(i)
            reasons.append(str(reason))
        else:
            slow_valid.append(i)
            slow_records.append(record)
    fast_at = np.concatenate(fast_rows) if fast_rows else np.zeros(0, dtype=np.int64)
    valid = _valid_frame(schema, _joined(fast_cols), fast_at, slow_records, slow_valid)
    valid_rows = np.sort(np.concatenate([np.flatnonzero(accepted), slow_valid]).astype(np.int64))
    for c in coords.columns:
        valid[c] = coords[c].to_numpy()[valid_rows]
    valid["kafka_ts"] = pd.to_datetime(kafka_ms[valid_rows], unit="ms", utc=True)
    raw_dead = dict(zip(slow.tolist(), slow_values, strict=True))
    dead = _dead_frame([raw_dead[i] for i in dead_at], coords, dead_at, reasons)
    return Decoded(valid=valid, dead=dead, fast=int(accepted.sum()))


_MIN_SPLIT = 16


def _read_fast(
    values: pa.Array, idx: np.ndarray, schema: RecordSchema
) -> list[tuple[np.ndarray, pa.Table]]:
    """Arrow tables of the candidate rows, as (rows, table) parts. A part Arrow refuses (one
    bad record fails a whole read) is split in two and retried, down to :data:`_MIN_SPLIT`
    rows; what is left goes the exact way. One bad record costs a few small reads."""
    import pyarrow as pa
    import pyarrow.json as pj

    out: list[tuple[np.ndarray, pa.Table]] = []
    todo = [idx] if len(idx) else []
    while todo:
        part = todo.pop()
        body = _joined_lines(values.take(pa.array(part, pa.int64())))
        parse, read = _read_options(schema, len(body))
        try:
            table = pj.read_json(io.BytesIO(body), parse_options=parse, read_options=read)
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
            table = None
        if table is not None and table.num_rows == len(part):
            out.append((part, table))
        elif len(part) > _MIN_SPLIT:
            half = len(part) // 2
            todo += [part[half:], part[:half]]
    return out


def _joined(parts: dict[str, list[Any]]) -> dict[str, Any]:
    import pyarrow as pa

    out: dict[str, Any] = {}
    for k, v in parts.items():
        if isinstance(v[0], np.ndarray):
            out[k] = np.concatenate(v)
        else:
            out[k] = pa.concat_arrays(
                [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in v]
            )
    return out


def _take(values: Any, rows: np.ndarray) -> Any:
    if isinstance(values, np.ndarray):
        return values[rows]
    return values.take(rows)


def _valid_frame(
    schema: RecordSchema,
    fast: dict[str, Any],
    fast_rows: np.ndarray,
    slow: list[dict[str, Any]],
    slow_rows: list[int],
) -> pd.DataFrame:
    """The accepted records of both paths in input order, typed like the schema's Arrow form."""
    order = np.argsort(np.concatenate([fast_rows, slow_rows]).astype(np.int64), kind="stable")
    out: dict[str, Any] = {}
    for f in schema.fields:
        a = fast.get(f.name)
        b = [r[f.name] for r in slow]
        if f.type == "timestamp":
            fast_ms = np.asarray(a if a is not None else [], dtype=np.int64)
            slow_ms = np.array([_ms(t) for t in b], dtype=np.int64)
            ms = np.concatenate([fast_ms, slow_ms])[order]
            out[f.name] = pd.to_datetime(ms, unit="ms", utc=True)
        elif f.type in ("double", "long", "int"):
            fast_x = np.asarray(a if a is not None else [], dtype=np.float64)
            slow_x = np.array([np.nan if v is None else float(v) for v in b], dtype=np.float64)
            x = np.concatenate([fast_x, slow_x])[order]
            out[f.name] = x if f.type == "double" else _ints(x)
        else:
            fast_list = a.to_pylist() if a is not None else []
            out[f.name] = np.array(fast_list + b, dtype=object)[order]
    return pd.DataFrame(out)


def _ints(x: np.ndarray) -> Any:
    """int64 values (nullable only when some are missing)."""
    mask = np.isnan(x)
    ints = np.where(mask, 0, x).astype(np.int64)
    return pd.arrays.IntegerArray(ints, mask) if mask.any() else ints


def _ms(ts: datetime) -> int:
    """Epoch milliseconds of an aware datetime, floored (as the kernel reads event time)."""
    micros = (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return int(micros // 1000)


def _dead_frame(
    values: list[bytes | None], coords: pd.DataFrame, rows: list[int], reasons: list[str]
) -> pd.DataFrame:
    """Dead letters of the refused ``rows`` (``values`` are their raw values, in that order)."""
    raw = [v or b"" for v in values]
    frame = pd.DataFrame(
        {
            "reason": reasons,
            "raw_b64": [base64.b64encode(v).decode("ascii") for v in raw],
            "raw_preview": [v.decode("utf-8", errors="replace")[:PREVIEW_CHARS] for v in raw],
        }
    )
    for c in ("kafka_topic", "kafka_partition", "kafka_offset"):
        frame[c] = coords[c].to_numpy()[rows] if len(rows) else coords[c].to_numpy()[:0]
    return frame


def kafka_columns(
    raw: pa.Table, topic: str | None = None
) -> tuple[pa.Array, np.ndarray, pd.DataFrame]:
    """(values, Kafka timestamps in ms, coordinates) of a Kafka source batch, in
    (partition, offset) order, so a replayed batch is decoded in the same order. The values stay
    an Arrow binary array; the topic comes from the batch, or is ``topic`` when the query does
    not select it (one topic per query: no string per row to move)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    order = pc.sort_indices(raw, sort_keys=[("partition", "ascending"), ("offset", "ascending")])
    raw = raw.take(order)
    ts = raw.column("timestamp")
    if pa.types.is_timestamp(ts.type):
        per_ms = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}[ts.type.unit]
        ticks = pc.cast(ts, pa.int64())
        ts = pc.multiply(ticks, 1000) if per_ms is None else pc.divide(ticks, per_ms)
    n = raw.num_rows
    topics = (
        raw.column("topic").to_numpy(zero_copy_only=False)
        if "topic" in raw.column_names
        else np.full(n, topic, dtype=object)
    )
    coords = pd.DataFrame(
        {
            "kafka_topic": topics,
            "kafka_partition": raw.column("partition")
            .to_numpy(zero_copy_only=False)
            .astype(np.int32),
            "kafka_offset": raw.column("offset").to_numpy(zero_copy_only=False).astype(np.int64),
        }
    )
    values = raw.column("value").combine_chunks()
    return values, ts.to_numpy(zero_copy_only=False).astype(np.int64), coords
