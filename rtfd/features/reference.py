"""The reference step: one user, one transaction at a time. It defines every user feature.

:func:`step` is ``(state of one user, transaction) -> (state, features)`` in plain Python. It is
slow and exists to define what each feature means: the vectorised
:func:`rtfd.features.batch.step_batch` must give identical results, bit for bit, to folding
:func:`step` over each user's transactions in ``(timestamp, transaction_id)`` order
(hypothesis tests hold it to that).

State is bounded. A user's history is forgotten after ``ttl_s`` without a transaction (event
time), as is a (user, key) pair — key = city, merchant, channel or 3-hour slot of the day — not
seen for ``ttl_s``; the recent-event buffer behind the velocity windows keeps at most
``max_events`` events (default 200) from the last 7 days. The cap is part of the definition:
``count_7d`` of a user with more than 200 prior transactions in 7 days is 200, in both drivers.

Event time is clamped per user: a transaction older than the user's last one is processed as if
it happened at that last time (its own timestamp still drives the hour and weekday features), so
the state only moves forward and late events cannot reorder the buffer.

Risk features are not the kernel's: they come out as zeros and are joined afterwards from the
merchant risk table (:func:`rtfd.features.offline.join_merchant_risk`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rtfd.features.arithmetic import (
    CHANNEL_CODES,
    DEFAULT_CONFIG,
    HOUR_SLOT_MS,
    MAX_WINDOW_MS,
    PAIR_KINDS,
    WINDOWS_MS,
    KernelConfig,
    RawQuantities,
    amount_cents,
    finish,
    neutral_risk,
    square_limbs,
)
from rtfd.features.names import FEATURE_NAMES
from rtfd.features.timeutil import timestamp_ms

_I64 = np.int64


@dataclass
class UserState:
    """Everything the kernel remembers about one user (the reference representation)."""

    n: int = 0
    sum_c: int = 0
    sq_hi: int = 0
    sq_lo: int = 0
    last_te: int | None = None
    last_lat: float = math.nan
    last_lon: float = math.nan
    events: list[tuple[int, int, int]] = field(default_factory=list)
    """(event time ms, cents, flags) of recent transactions, oldest first; flags: 1 = first at
    its merchant, 2 = first in its city (the first_time_* features of that transaction)."""
    pairs: dict[str, dict[str, tuple[int, int]]] = field(
        default_factory=lambda: {kind: {} for kind in PAIR_KINDS}
    )
    """For each of :data:`PAIR_KINDS`: key -> (transactions, last event time ms)."""


def _text(value: Any) -> str | None:
    """A key (city) or None when missing: None, NaN and the empty string are missing."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    text = str(value)
    return text or None


def _coord(value: Any) -> float:
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return math.nan
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def step(
    state: UserState | None,
    txn: Mapping[str, Any],
    *,
    config: KernelConfig = DEFAULT_CONFIG,
) -> tuple[UserState, dict[str, float]]:
    """Fold one transaction into one user's state; return the new state and its features.

    ``txn`` holds the transaction fields (``timestamp``, ``amount``, ``merchant_id``, optional
    ``location``, ``lat``, ``lon``). The input state is not modified. Features describe the
    transaction against the user's *prior* history only; the risk features are zeros until the
    merchant-risk join.
    """
    s = state if state is not None else UserState()
    ttl = config.ttl_ms
    t = timestamp_ms(txn["timestamp"])
    amount = float(txn["amount"])
    cents = int(amount_cents(np.array([amount]))[0])
    te = t if s.last_te is None else max(t, s.last_te)
    if s.last_te is not None and te - s.last_te > ttl:
        s = UserState()

    counts, sums, new_m, new_c = [0] * 4, [0] * 4, [0] * 4, [0] * 4
    for e_te, e_c, e_f in s.events:
        for k, w in enumerate(WINDOWS_MS):
            if e_te > te - w:
                counts[k] += 1
                sums[k] += e_c
                new_m[k] += e_f & 1
                new_c[k] += (e_f >> 1) & 1

    def prior(table: dict[str, tuple[int, int]], key: str | None) -> int:
        entry = table.get(key) if key is not None else None
        return 0 if entry is None or te - entry[1] > ttl else entry[0]

    merchant = str(txn["merchant_id"])
    channel = _text(txn.get("channel"))
    keys = {
        "city": _text(txn.get("location")),
        "merchant": merchant,
        "channel": channel,
        "hour": str((t % 86_400_000) // HOUR_SLOT_MS),
    }
    lat, lon = _coord(txn.get("lat")), _coord(txn.get("lon"))

    def arr(v: Any, dtype: Any = _I64) -> np.ndarray:
        return np.array([v], dtype=dtype)

    raw = RawQuantities(
        t_ms=arr(t),
        amount=arr(amount, np.float64),
        n=arr(s.n),
        sum_c=arr(s.sum_c),
        sq_hi=arr(s.sq_hi),
        sq_lo=arr(s.sq_lo),
        counts=np.array(counts, dtype=_I64).reshape(4, 1),
        sums_c=np.array(sums, dtype=_I64).reshape(4, 1),
        new_merchants=np.array(new_m, dtype=_I64).reshape(4, 1),
        new_cities=np.array(new_c, dtype=_I64).reshape(4, 1),
        gap_ms=arr(te - s.last_te if s.last_te is not None else 0),
        prior={kind: arr(prior(s.pairs[kind], keys[kind])) for kind in PAIR_KINDS},
        has_key={kind: arr(keys[kind] is not None, bool) for kind in PAIR_KINDS},
        channel=arr(CHANNEL_CODES.get(channel or "", 0)),
        lat=arr(lat, np.float64),
        lon=arr(lon, np.float64),
        prev_lat=arr(s.last_lat, np.float64),
        prev_lon=arr(s.last_lon, np.float64),
    )
    feats = finish(raw, config)
    feats.update(neutral_risk(1))

    hi, lo = square_limbs(np.array([cents], dtype=_I64))
    flags = int(feats["first_time_merchant"][0] > 0) | (int(feats["first_time_city"][0] > 0) << 1)
    events = [e for e in s.events if e[0] > te - MAX_WINDOW_MS] + [(te, cents, flags)]

    def touched(table: dict[str, tuple[int, int]], key: str | None) -> dict[str, tuple[int, int]]:
        out = {k: v for k, v in table.items() if te - v[1] <= ttl}
        if key is not None:
            out[key] = (prior(table, key) + 1, te)
        return out

    new = UserState(
        n=s.n + 1,
        sum_c=s.sum_c + cents,
        sq_hi=s.sq_hi + int(hi[0]),
        sq_lo=s.sq_lo + int(lo[0]),
        last_te=te,
        last_lat=lat,
        last_lon=lon,
        events=events[-config.max_events :],
        pairs={kind: touched(s.pairs[kind], keys[kind]) for kind in PAIR_KINDS},
    )
    return new, {name: float(feats[name][0]) for name in FEATURE_NAMES}
