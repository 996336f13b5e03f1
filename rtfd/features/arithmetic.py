"""The kernel's arithmetic: the parameters and the only floating-point formulas of the user
features, shared by both drivers (:mod:`rtfd.features.reference` and :mod:`rtfd.features.batch`).

Both drivers reduce a transaction and its user's prior history to the same integer quantities
(:class:`RawQuantities`); :func:`finish` turns them into features, on arrays, once. The reference
step calls it on arrays of length one, so the two drivers cannot drift apart in a formula.

* Everything that accumulates is an integer: amounts enter the state as integer cents
  (:func:`amount_cents`), counts and sums are ``int64``, and the sum of squares is kept as two
  integer limbs (:func:`square_limbs`) so it cannot overflow. Integer prefix sums are
  associative, so a vectorised ``cumsum`` equals a sequential loop exactly.
* Hour sin/cos come from a fixed table, not from ``sin`` of a computed angle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rtfd.features.names import RISK_FEATURES

# Velocity windows (milliseconds) and their feature suffixes.
WINDOWS_MS = (600_000, 3_600_000, 86_400_000, 604_800_000)
WINDOW_SUFFIXES = ("10m", "1h", "24h", "7d")
MAX_WINDOW_MS = WINDOWS_MS[-1]

# Amounts enter the state as integer cents clipped to [0, 2^27): a square then fits in 54 bits,
# and splitting it into 26-bit limbs keeps the sums of squares exact for 2^36 transactions.
MAX_CENTS = (1 << 27) - 1
_SQ_SHIFT = 26
_SQ_MASK = (1 << _SQ_SHIFT) - 1

MIN_GAP_S = 60.0  # travel speed divides by at least one minute, so two taps do not read as warp
STD_FLOOR = 1.0  # z-scores of users who always pay the same amount stay finite
Z_CLIP = 50.0
EARTH_RADIUS_KM = 6371.0088

# The (user, key) histories the kernel keeps: key = city, merchant, channel, 3-hour UTC slot.
PAIR_KINDS = ("city", "merchant", "channel", "hour")
HOUR_SLOT_MS = 3 * 3_600_000

_MINUTES = np.arange(1440, dtype=np.float64)
_SIN_TABLE = np.sin(2.0 * np.pi * _MINUTES / 1440.0)
_COS_TABLE = np.cos(2.0 * np.pi * _MINUTES / 1440.0)
_I64 = np.int64


@dataclass(frozen=True)
class KernelConfig:
    """The parameters that are part of the features' definition (recorded in each model's
    manifest)."""

    ttl_s: float = 8 * 86_400.0
    """History not touched for this long (event time) is forgotten; at least 7 days."""
    max_events: int = 200
    """Recent events kept per user for the velocity windows."""

    def __post_init__(self) -> None:
        if not self.ttl_s * 1000 >= MAX_WINDOW_MS:
            raise ValueError("KernelConfig.ttl_s must be at least 7 days (the longest window)")
        if self.max_events < 1:
            raise ValueError("KernelConfig.max_events must be at least 1")

    @property
    def ttl_ms(self) -> int:
        return round(self.ttl_s * 1000)

    def to_dict(self) -> dict[str, Any]:
        return {"ttl_s": self.ttl_s, "max_events": self.max_events}


DEFAULT_CONFIG = KernelConfig()


def amount_cents(amount: np.ndarray) -> np.ndarray:
    """Integer cents of amounts as they enter the state (rounded half to even, clipped)."""
    return np.clip(np.rint(amount * 100.0), 0, MAX_CENTS).astype(_I64)


def square_limbs(cents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The squares of integer cents as (high, low) 26-bit limbs: ``sq = hi * 2**26 + lo``.
    Summing the limbs apart keeps a sum of squares exact where one int64 would overflow."""
    sq = cents * cents
    return sq >> _SQ_SHIFT, sq & _SQ_MASK


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km between two arrays of points (degrees)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2 - lon1)
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass
class RawQuantities:
    """The integer (and raw float) quantities both drivers produce, one entry per transaction."""

    t_ms: np.ndarray
    amount: np.ndarray
    n: np.ndarray
    sum_c: np.ndarray
    sq_hi: np.ndarray
    sq_lo: np.ndarray
    counts: np.ndarray  # (4, N) per window
    sums_c: np.ndarray  # (4, N)
    new_merchants: np.ndarray  # (4, N) prior events in the window that were first at a merchant
    new_cities: np.ndarray  # (4, N) ... first in a city
    gap_ms: np.ndarray
    prior: dict[str, np.ndarray]  # prior count of the row's (user, key) pair, per PAIR_KINDS
    has_key: dict[str, np.ndarray]  # the row has a key of that kind (city, channel are optional)
    channel: np.ndarray  # 0 = other or missing, 1 = online, 2 = atm
    lat: np.ndarray
    lon: np.ndarray
    prev_lat: np.ndarray
    prev_lon: np.ndarray


def finish(raw: RawQuantities, config: KernelConfig) -> dict[str, np.ndarray]:
    """Every user feature from the raw quantities: the only floating-point formulas."""
    # Local solar time: the longitude's time zone, whole hours (UTC without a longitude).
    shift = np.where(np.isfinite(raw.lon), np.rint(np.nan_to_num(raw.lon) / 15.0), 0.0)
    local_ms = raw.t_ms + shift.astype(_I64) * 3_600_000
    minute = (local_ms // 60_000) % 1440
    dow = (local_ms // 86_400_000 + 3) % 7  # 1970-01-01 was a Thursday
    has = raw.n > 0
    nf = raw.n.astype(np.float64)
    n_safe = np.maximum(nf, 1.0)
    mean_c = raw.sum_c.astype(np.float64) / n_safe
    mean = mean_c / 100.0
    sumsq = raw.sq_hi.astype(np.float64) * float(1 << _SQ_SHIFT) + raw.sq_lo.astype(np.float64)
    var_c = (sumsq - raw.sum_c.astype(np.float64) * mean_c) / np.maximum(nf - 1.0, 1.0)
    std = np.sqrt(np.maximum(var_c, 0.0)) / 100.0
    z = np.clip((raw.amount - mean) / np.maximum(std, STD_FLOOR), -Z_CLIP, Z_CLIP)
    gap_s = raw.gap_ms.astype(np.float64) / 1000.0
    located = (
        has
        & np.isfinite(raw.lat)
        & np.isfinite(raw.lon)
        & np.isfinite(raw.prev_lat)
        & np.isfinite(raw.prev_lon)
    )
    dist = np.where(
        located,
        haversine_km(
            np.where(located, raw.prev_lat, 0.0),
            np.where(located, raw.prev_lon, 0.0),
            np.where(located, raw.lat, 0.0),
            np.where(located, raw.lon, 0.0),
        ),
        0.0,
    )
    out: dict[str, np.ndarray] = {
        "hour_sin": _SIN_TABLE[minute],
        "hour_cos": _COS_TABLE[minute],
        "day_of_week": dow.astype(np.float64),
        "is_night": (minute < 360).astype(np.float64),
        "is_weekend": (dow >= 5).astype(np.float64),
        "hour_share": np.where(has, raw.prior["hour"].astype(np.float64) / n_safe, 1.0),
        "amount_log1p": np.log1p(raw.amount),
        "amount_zscore": np.where(raw.n >= 2, z, 0.0),
        "amount_ratio": np.where(has, raw.amount / np.maximum(mean, 0.01), 1.0),
        "user_txn_count": nf,
    }
    for k, suffix in enumerate(WINDOW_SUFFIXES):
        out[f"count_{suffix}"] = raw.counts[k].astype(np.float64)
    for k, suffix in enumerate(WINDOW_SUFFIXES):
        out[f"sum_{suffix}"] = raw.sums_c[k].astype(np.float64) / 100.0
    out["seconds_since_prev"] = np.where(has, gap_s, float(config.ttl_s))
    for k in (1, 2):  # 1 h and 24 h
        out[f"new_merchants_{WINDOW_SUFFIXES[k]}"] = raw.new_merchants[k].astype(np.float64)
        out[f"new_cities_{WINDOW_SUFFIXES[k]}"] = raw.new_cities[k].astype(np.float64)
    city_c = raw.prior["city"]
    city_known = has & raw.has_key["city"]
    out["city_share"] = np.where(city_known, city_c.astype(np.float64) / n_safe, 1.0)
    out["first_time_city"] = (city_known & (city_c == 0)).astype(np.float64)
    out["distance_prev_km"] = dist
    out["travel_speed_kmh"] = dist / np.maximum(gap_s, MIN_GAP_S) * 3600.0
    out["merchant_user_count"] = raw.prior["merchant"].astype(np.float64)
    out["first_time_merchant"] = (has & (raw.prior["merchant"] == 0)).astype(np.float64)
    out["channel_online"] = (raw.channel == 1).astype(np.float64)
    out["channel_atm"] = (raw.channel == 2).astype(np.float64)
    channel_known = has & raw.has_key["channel"]
    out["channel_share"] = np.where(
        channel_known, raw.prior["channel"].astype(np.float64) / n_safe, 1.0
    )
    return out


# Channel codes in RawQuantities.channel (anything else, or none, is 0).
CHANNEL_CODES = {"online": 1, "atm": 2}


def neutral_risk(n: int) -> dict[str, np.ndarray]:
    """The risk columns of ``n`` rows before the merchant-risk join (zeros: no merchant known).

    The per-user kernel returns every feature column so that its frame has the model's column
    order; :func:`rtfd.features.offline.join_merchant_risk` (offline) or the stream's scoring step
    fills them afterwards.
    """
    return {name: np.zeros(n) for name in RISK_FEATURES}
