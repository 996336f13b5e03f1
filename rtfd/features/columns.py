"""A batch of transactions as arrays: what the batch step reads, validated once.

:func:`batch_columns` checks the required columns (a missing one is a :class:`DataError`), turns
timestamps into integer milliseconds and every key (user, city, merchant, channel, 3-hour slot)
into integer codes over text uniques, matching ``str(value)`` as the reference step keys them.
The stream's user store calls it once per batch and hands the result to
:func:`rtfd.features.batch.step_batch`, and the merchant-risk join reuses its merchant codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rtfd.errors import DataError
from rtfd.features.arithmetic import HOUR_SLOT_MS
from rtfd.features.timeutil import timestamps_ms

_I64 = np.int64
_SLOTS = np.array([str(i) for i in range(8)], dtype=object)  # text of the 3-hour slots


@dataclass
class BatchColumns:
    """A batch's transaction columns as arrays, in input order; keys as (codes, text uniques)."""

    user: np.ndarray
    users: np.ndarray
    keys: dict[str, tuple[np.ndarray, np.ndarray]]  # kind -> (codes, text uniques); -1 = none
    t_ms: np.ndarray
    amount: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    tid: pd.Series


REQUIRED_COLUMNS = ("transaction_id", "user_id", "merchant_id", "amount", "timestamp")


def _codes(values: pd.Series, *, optional: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and text uniques of a key column, matching ``str(value)`` in :func:`step`.

    For an ``optional`` key, missing values and the empty string get code -1.
    """
    codes, uniq = pd.factorize(values, use_na_sentinel=optional)
    codes = codes.astype(_I64)
    raw = np.asarray(uniq, dtype=object)
    if all(type(v) is str for v in raw):
        # The usual case: the keys are already distinct strings.
        if optional and (raw == "").any():
            empty = np.flatnonzero(raw == "")[0]
            keep = np.arange(len(raw)) != empty
            remap = np.append(np.where(keep, np.cumsum(keep) - 1, -1), -1)
            return remap[codes], raw[keep]
        return codes, raw
    text = np.array([str(v) for v in raw], dtype=object)
    if optional:
        text[text == ""] = None
    # Distinct raw values may share a text (1 and "1"): merge them as the reference does.
    tcodes, tuniq = pd.factorize(text, use_na_sentinel=True)
    tcodes = np.append(tcodes, -1).astype(_I64)
    return tcodes[codes], np.asarray(tuniq, dtype=object)


def batch_columns(txns: pd.DataFrame) -> BatchColumns:
    """Validate and convert a frame of transactions; location, lat and lon are optional."""
    missing = [c for c in REQUIRED_COLUMNS if c not in txns.columns]
    if missing:
        raise DataError(f"transactions lack column(s): {', '.join(missing)}")
    n = len(txns)

    def optional(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in txns.columns:
            return np.full(n, -1, dtype=_I64), np.zeros(0, dtype=object)
        return _codes(txns[name], optional=True)

    def coord(name: str) -> np.ndarray:
        if name not in txns.columns:
            return np.full(n, np.nan)
        col = txns[name]
        if col.dtype != np.float64:
            col = pd.to_numeric(col, errors="coerce")
        out = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(np.isfinite(out), out, np.nan)

    user, users = _codes(txns["user_id"])
    t_ms = timestamps_ms(txns["timestamp"])
    return BatchColumns(
        user=user,
        users=users,
        keys={
            "city": optional("location"),
            "merchant": _codes(txns["merchant_id"]),
            "channel": optional("channel"),
            "hour": ((t_ms % 86_400_000) // HOUR_SLOT_MS, _SLOTS),
        },
        t_ms=t_ms,
        amount=(
            txns["amount"] if txns["amount"].dtype == np.float64 else pd.to_numeric(txns["amount"])
        ).to_numpy(dtype=np.float64),
        lat=coord("lat"),
        lon=coord("lon"),
        tid=txns["transaction_id"],
    )
