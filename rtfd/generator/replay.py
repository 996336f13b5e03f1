"""Replay: stream any transactions file (Parquet or CSV) into the transactions topic.

Required columns: ``transaction_id``, ``timestamp``, ``user_id``, ``merchant_id``, ``amount``.
Optional: ``currency`` (default given by the caller), ``location`` (default ``unknown``), ``lat``,
``lon``, ``channel``, and ``label`` (1 = fraud; then a LABEL record follows each fraudulent
transaction after the label delay, with ``fraud_type`` when that column exists). Other columns
are ignored.

Rows go out in timestamp order with their own event time, or with the wall clock at sending
(``retime``). Values are sent as they are: a row the stream cannot accept (a negative amount, a
text where a number belongs, a timestamp that does not parse) lands in its dead-letter topic,
which is exactly what replaying foreign data should exercise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfd.errors import DataError
from rtfd.generator.live import Row
from rtfd.generator.wire import TimestampFormatter, json_string, transaction_prefix

if TYPE_CHECKING:
    import pandas as pd

REQUIRED_COLUMNS = ("transaction_id", "timestamp", "user_id", "merchant_id", "amount")
OPTIONAL_COLUMNS = ("currency", "location", "lat", "lon", "channel", "label", "fraud_type")


def read_transactions_file(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or CSV transactions file; DataError names any missing required column."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")) or path.is_dir():
            df = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz", ".tsv")):
            sep = "\t" if name.endswith(".tsv") else ","
            df = pd.read_csv(
                path,
                sep=sep,
                dtype={c: str for c in ("transaction_id", "user_id", "merchant_id", "location")},
                keep_default_na=True,
            )
        else:
            raise DataError(f"{path}: unknown format (expected .parquet or .csv)")
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_COLUMNS)})"
        )
    return df


def _epoch_ms(col: pd.Series) -> np.ndarray:
    """Event times as epoch ms (float, NaN where unparseable). Numbers are epoch seconds, or
    milliseconds when they are too large to be seconds."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(col):
        ts = col if getattr(col.dt, "tz", None) is not None else col.dt.tz_localize("UTC")
        ms = ts.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64").astype(float)
        return np.where(col.isna().to_numpy(), np.nan, ms)
    if pd.api.types.is_numeric_dtype(col):
        v = col.to_numpy(dtype=float)
        return np.where(np.abs(v) > 1e11, v, v * 1000.0)
    parsed = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
    ms = parsed.astype("datetime64[ms, UTC]").astype("int64").astype(float)
    return np.where(parsed.isna().to_numpy(), np.nan, ms)


def _json_values(
    col: pd.Series | None, n: int, *, numeric: bool, default: str = "null"
) -> list[str]:
    """JSON fragments of a column: numbers as numbers when they are, text as strings, null for
    missing values."""
    if col is None:
        return [default] * n
    out = []
    for v in col.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("null")
        elif numeric and isinstance(v, int | float) and not isinstance(v, bool):
            out.append(repr(float(v)))
        elif numeric:
            try:
                out.append(repr(float(v)) if math.isfinite(float(v)) else json_string(str(v)))
            except (TypeError, ValueError):
                out.append(json_string(str(v)))
        else:
            out.append(json_string(str(v)))
    return out


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "fraud")
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


class FileSource:
    """A transactions file as a generator source: rows in event-time order, each sent once."""

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        retime: bool = False,
        default_currency: str = "USD",
        default_location: str = "unknown",
    ) -> None:
        ms = _epoch_ms(df["timestamp"])
        order = np.argsort(np.where(np.isnan(ms), np.inf, ms), kind="stable")
        df = df.iloc[order]
        ms = ms[order]
        n = len(df)
        raw_ts = df["timestamp"].astype(str).tolist()
        tids = df["transaction_id"].astype(str).tolist()
        uids = df["user_id"].astype(str).tolist()
        get = df.get
        columns = [
            _json_values(df["transaction_id"], n, numeric=False),
            _json_values(df["user_id"], n, numeric=False),
            _json_values(df["merchant_id"], n, numeric=False),
            _json_values(df["amount"], n, numeric=True),
            _json_values(get("currency"), n, numeric=False, default=json_string(default_currency)),
            _json_values(get("location"), n, numeric=False, default=json_string(default_location)),
            _json_values(get("lat"), n, numeric=True),
            _json_values(get("lon"), n, numeric=True),
            _json_values(get("channel"), n, numeric=False),
        ]
        fmt = TimestampFormatter()
        labels = df["label"].tolist() if "label" in df.columns else [0] * n
        types = df["fraud_type"].tolist() if "fraud_type" in df.columns else [None] * n
        self.rows: list[Row] = []
        for i, fields in enumerate(zip(*columns, strict=True)):
            # A timestamp that does not parse is sent as written, for the stream to reject.
            if retime and not math.isnan(ms[i]):
                timestamp = None
            elif math.isnan(ms[i]):
                timestamp = json_string(raw_ts[i])[1:-1]
            else:
                timestamp = fmt(int(ms[i]))
            fraud_type = types[i] if isinstance(types[i], str) and types[i] else None
            self.rows.append(
                Row(
                    tids[i],
                    transaction_prefix(fields),
                    uids[i],
                    _truthy(labels[i]),
                    fraud_type,
                    timestamp,
                )
            )
        self.pos = 0
        self.has_labels = "label" in df.columns

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def finished(self) -> bool:
        return self.pos >= len(self.rows)

    def take(self, n: int) -> list[Row]:
        out = self.rows[self.pos : self.pos + n]
        self.pos += len(out)
        return out
