"""Merchant risk from labels: a slowly changing table, looked up point in time.

A merchant's risk at time ``t`` is its fraud rate and volume over recent windows (7 and 28 days),
counting only transactions whose labels would already be known. With a label delay ``D`` and
snapshots every ``period`` (default one hour), a transaction at ``t`` sees the snapshot
``R = floor(t / period) * period`` and the transactions with timestamps in ``[R - D - W, R - D)``
for a window ``W``: those are old enough for their labels (chargebacks) to have arrived, and a
matured transaction without a fraud label counts as legitimate.

One table serves both drivers:

* **offline** (training, backtest): :func:`point_in_time` builds it from a labelled history with
  no ``as_of``; every lookup then picks its own snapshot — the as-of join, with no future label
  ever used;
* **stream**: :func:`rtfd.query.lake_reads.refresh_from_parquet` builds it periodically with
  DuckDB from the labels Parquet and the enriched Parquet as of ``now`` (over the
  :func:`refresh_window`, with :meth:`MerchantRiskTable.from_aggregates`); lookups after
  ``as_of`` use the ``as_of`` snapshot. With the refresh aligned to the period, the stream sees
  what the offline join sees.

This module is pure computation on arrays and frames: it reads no file (the DuckDB reads are in
:mod:`rtfd.query.lake_reads`).

The table holds per (merchant, period bucket) counts, so its size is bounded by merchants times
buckets in ``D + 28 days``, whatever the transaction rate.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from rtfd.features.names import RISK_FEATURES
from rtfd.features.timeutil import timestamp_ms, timestamps_ms

DEFAULT_PERIOD_S = 3600.0
RISK_WINDOWS_DAYS = (7, 28)
_DAY_MS = 86_400_000
_I64 = np.int64


@dataclass
class MerchantRiskTable:
    """Matured (merchant, period bucket) volumes and fraud counts, with prefix sums."""

    period_ms: int
    delay_ms: int
    as_of_ms: int | None
    merchants: np.ndarray  # object, unique ids; code = position
    m: np.ndarray  # merchant code per row, rows sorted by (m, bucket)
    bucket: np.ndarray  # timestamp // period_ms
    vol_cum: np.ndarray  # exclusive prefix sums, len(rows) + 1
    fraud_cum: np.ndarray

    @classmethod
    def from_aggregates(
        cls,
        merchant_ids: np.ndarray,
        buckets: np.ndarray,
        volumes: np.ndarray,
        frauds: np.ndarray,
        *,
        label_delay_s: float,
        period_s: float = DEFAULT_PERIOD_S,
        as_of: datetime | None = None,
    ) -> MerchantRiskTable:
        """Build from per (merchant, bucket) counts; rows need not be unique or sorted."""
        period_ms = round(period_s * 1000)
        if period_ms <= 0 or (RISK_WINDOWS_DAYS[0] * _DAY_MS) % period_ms:
            raise ValueError("period_s must be positive and divide one day")
        # The delay is rounded up to whole periods so that windows align with buckets.
        delay_ms = -(-round(label_delay_s * 1000) // period_ms) * period_ms
        codes, uniq = pd.factorize(np.asarray(merchant_ids, dtype=object))
        key_m = codes.astype(_I64)
        key_b = np.asarray(buckets, dtype=_I64)
        order = np.lexsort((key_b, key_m))
        key_m, key_b = key_m[order], key_b[order]
        vol = np.asarray(volumes, dtype=_I64)[order]
        fraud = np.asarray(frauds, dtype=_I64)[order]
        if len(key_m):
            start = np.r_[True, (key_m[1:] != key_m[:-1]) | (key_b[1:] != key_b[:-1])]
            grp = np.cumsum(start) - 1
            vol = np.bincount(grp, weights=vol).astype(_I64)
            fraud = np.bincount(grp, weights=fraud).astype(_I64)
            key_m, key_b = key_m[start], key_b[start]
        return cls(
            period_ms=period_ms,
            delay_ms=delay_ms,
            as_of_ms=None if as_of is None else timestamp_ms(as_of),
            merchants=np.asarray(uniq, dtype=object),
            m=key_m,
            bucket=key_b,
            vol_cum=np.concatenate([[0], np.cumsum(vol)]).astype(_I64),
            fraud_cum=np.concatenate([[0], np.cumsum(fraud)]).astype(_I64),
        )

    @classmethod
    def empty(
        cls,
        *,
        label_delay_s: float,
        period_s: float = DEFAULT_PERIOD_S,
        as_of: datetime | None = None,
    ) -> MerchantRiskTable:
        """A table that knows no merchant: every lookup is neutral (zeros)."""
        none = np.zeros(0, dtype=_I64)
        return cls.from_aggregates(
            np.zeros(0, dtype=object), none, none, none,
            label_delay_s=label_delay_s, period_s=period_s, as_of=as_of,
        )  # fmt: skip

    @classmethod
    def from_labelled(
        cls,
        merchant_ids: np.ndarray,
        t_ms: np.ndarray,
        labels: np.ndarray,
        *,
        label_delay_s: float,
        period_s: float = DEFAULT_PERIOD_S,
        as_of: datetime | None = None,
    ) -> MerchantRiskTable:
        """Build from transactions and their labels (1 = fraud; missing = legitimate).

        With ``as_of``, only transactions already matured at the ``as_of`` snapshot count.
        """
        period_ms = round(period_s * 1000)
        t = np.asarray(t_ms, dtype=_I64)
        lab = np.nan_to_num(np.asarray(labels, dtype=np.float64), nan=0.0) > 0
        merchants = np.asarray(merchant_ids, dtype=object)
        if as_of is not None:
            delay_ms = -(-round(label_delay_s * 1000) // period_ms) * period_ms
            cutoff = (timestamp_ms(as_of) // period_ms) * period_ms - delay_ms
            keep = t < cutoff
            t, lab, merchants = t[keep], lab[keep], merchants[keep]
        return cls.from_aggregates(
            merchants,
            t // period_ms,
            np.ones(len(t), dtype=_I64),
            lab.astype(_I64),
            label_delay_s=label_delay_s,
            period_s=period_s,
            as_of=as_of,
        )

    def __len__(self) -> int:
        return len(self.merchants)

    def to_bytes(self) -> bytes:
        """A pickle-free blob (NumPy ``.npz``) to ship the table to stream workers."""
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.array(
                [self.period_ms, self.delay_ms, -1 if self.as_of_ms is None else self.as_of_ms],
                dtype=_I64,
            ),
            merchants=np.asarray(self.merchants, dtype=str),
            m=self.m,
            bucket=self.bucket,
            vol_cum=self.vol_cum,
            fraud_cum=self.fraud_cum,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> MerchantRiskTable:
        """Inverse of :meth:`to_bytes` (never unpickles); ValueError on a bad blob."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                period_ms, delay_ms, as_of_ms = (int(v) for v in z["meta"])
                return cls(
                    period_ms=period_ms,
                    delay_ms=delay_ms,
                    as_of_ms=None if as_of_ms < 0 else as_of_ms,
                    merchants=z["merchants"].astype(object),
                    m=z["m"],
                    bucket=z["bucket"],
                    vol_cum=z["vol_cum"],
                    fraud_cum=z["fraud_cum"],
                )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"not a merchant risk table blob: {e}") from e

    def lookup_ms(self, merchant_ids: np.ndarray, t_ms: np.ndarray) -> dict[str, np.ndarray]:
        """Risk features (:data:`RISK_FEATURES`) for merchants at event times (ms)."""
        codes, uniques = pd.factorize(np.asarray(merchant_ids, dtype=object))
        return self.lookup_coded(codes, np.asarray(uniques, dtype=object), t_ms)

    def lookup_coded(
        self, codes: np.ndarray, uniques: np.ndarray, t_ms: np.ndarray
    ) -> dict[str, np.ndarray]:
        """:meth:`lookup_ms` with merchants given as codes into ``uniques`` (text ids)."""
        t = np.asarray(t_ms, dtype=_I64)
        n = len(t)
        out = {name: np.zeros(n) for name in RISK_FEATURES}
        if n == 0 or len(self.m) == 0:
            return out
        table_code = np.append(pd.Index(self.merchants).get_indexer(uniques), -1)
        code = table_code[np.asarray(codes, dtype=_I64)]
        known = code >= 0
        snap = t // self.period_ms
        if self.as_of_ms is not None:
            snap = np.minimum(snap, self.as_of_ms // self.period_ms)
        bmin = int(self.bucket.min())
        span = int(self.bucket.max()) - bmin + 1
        key = self.m * span + (self.bucket - bmin)
        c = np.maximum(code, 0).astype(_I64)
        upper = snap - self.delay_ms // self.period_ms
        for days in RISK_WINDOWS_DAYS:
            lower = upper - days * (_DAY_MS // self.period_ms)
            lo = np.searchsorted(key, c * span + np.clip(lower - bmin, 0, span), side="left")
            hi = np.searchsorted(key, c * span + np.clip(upper - bmin, 0, span), side="left")
            vol = np.where(known, self.vol_cum[hi] - self.vol_cum[lo], 0)
            fraud = np.where(known, self.fraud_cum[hi] - self.fraud_cum[lo], 0)
            out[f"merchant_fraud_rate_{days}d"] = np.where(vol > 0, fraud / np.maximum(vol, 1), 0.0)
            out[f"merchant_volume_{days}d"] = vol.astype(np.float64)
        return out

    def lookup(self, merchant_ids: Any, timestamps: Any) -> pd.DataFrame:
        """Risk features for merchants at timestamps (datetimes, pandas Series, ISO strings)."""
        ts = pd.Series(timestamps) if not isinstance(timestamps, pd.Series) else timestamps
        ids = np.asarray(pd.Series(merchant_ids).astype(str), dtype=object)
        cols = self.lookup_ms(ids, timestamps_ms(ts.reset_index(drop=True)))
        index = ts.index if isinstance(timestamps, pd.Series) else None
        return pd.DataFrame(cols, columns=RISK_FEATURES, index=index)


def point_in_time(
    history: pd.DataFrame,
    *,
    label_delay_s: float,
    period_s: float = DEFAULT_PERIOD_S,
) -> MerchantRiskTable:
    """The offline table of a labelled history (columns merchant_id, timestamp, label).

    Its lookups are the point-in-time-correct as-of join: a transaction only ever sees labels of
    transactions at least ``label_delay_s`` older than its snapshot.
    """
    return MerchantRiskTable.from_labelled(
        np.asarray(history["merchant_id"].astype(str), dtype=object),
        timestamps_ms(history["timestamp"]),
        history["label"].to_numpy(dtype=np.float64),
        label_delay_s=label_delay_s,
        period_s=period_s,
    )


@dataclass(frozen=True)
class RefreshWindow:
    """What a stream refresh of the table at ``now`` reads: transactions with event times in
    ``[lo_ms, hi_ms)`` (matured at the ``as_of_ms`` snapshot, within the longest risk window),
    and labels reported by ``as_of_ms``."""

    period_ms: int
    delay_s: float
    as_of_ms: int
    lo_ms: int
    hi_ms: int

    @property
    def as_of(self) -> datetime:
        return datetime.fromtimestamp(self.as_of_ms / 1000, tz=UTC)


def refresh_window(now: datetime, *, label_delay_s: float, period_s: float) -> RefreshWindow:
    """The window of a refresh at ``now``: ``now`` aligned down to the period, the delay
    rounded up to whole periods (as :meth:`MerchantRiskTable.from_aggregates` rounds it)."""
    period_ms = round(period_s * 1000)
    as_of_ms = (timestamp_ms(now) // period_ms) * period_ms
    delay_ms = -(-round(label_delay_s * 1000) // period_ms) * period_ms
    hi_ms = as_of_ms - delay_ms
    return RefreshWindow(
        period_ms=period_ms,
        delay_s=label_delay_s,
        as_of_ms=as_of_ms,
        lo_ms=hi_ms - max(RISK_WINDOWS_DAYS) * _DAY_MS,
        hi_ms=hi_ms,
    )
