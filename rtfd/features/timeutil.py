"""Event time as integer milliseconds since the epoch: the one clock every feature reads.

The per-user kernel and the merchant-risk table both turn timestamps into integer milliseconds
(floored), so that windows and snapshots are integer arithmetic. This module sits below both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from rtfd.errors import DataError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_I64 = np.int64


def timestamp_ms(value: Any) -> int:
    """Milliseconds since the epoch (floored) of a datetime, pandas Timestamp, ISO string or ms."""
    if isinstance(value, pd.Timestamp):
        ts = value if value.tzinfo is not None else value.tz_localize("UTC")
        return int(ts.value) // 1_000_000
    if isinstance(value, datetime):
        ts2 = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (ts2 - _EPOCH) // _MS
    if isinstance(value, str):
        return timestamp_ms(pd.Timestamp(value))
    if isinstance(value, int | np.integer):
        return int(value)
    raise DataError(f"unsupported timestamp {value!r}")


def timestamps_ms(values: pd.Series) -> np.ndarray:
    """Vectorised :func:`timestamp_ms` over a column (aware, naive = UTC, or ISO strings)."""
    s = values
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        # Fast path: the integer ticks in the column's own unit, floored to milliseconds.
        per_ms = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}[s.dtype.unit]
        ticks = s.array.asi8
        return ticks * 1000 if per_ms is None else ticks // per_ms
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy(dtype=_I64)
    if not isinstance(s.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(
        s.dtype
    ):
        s = pd.to_datetime(s, utc=True, format="ISO8601")
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = s.astype("datetime64[ns]").to_numpy().view(_I64)
    return ns // 1_000_000
