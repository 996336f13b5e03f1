"""Turning per-feature contributions into short human phrases for alerts.

The contributions come from the model (:meth:`rtfd.ml.models.Model.contributions`): path-wise
(Saabas) contributions for XGBoost, coefficient x value for logistic regression, deviation from the
training mean for IsolationForest. Only features that push the score *up* are explained; each phrase
shows the feature's raw value, as a person reading an alert would want it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WINDOWS = {"10m": "10 minutes", "1h": "hour", "24h": "24 hours", "7d": "7 days"}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} days"


def _flag(yes: str, no: str) -> Callable[[float], str]:
    return lambda v: yes if v >= 0.5 else no


def _count(window: str) -> Callable[[float], str]:
    return lambda v: f"{v:.0f} transaction{'' if round(v) == 1 else 's'} in the last {window}"


def _spent(window: str) -> Callable[[float], str]:
    return lambda v: f"{v:,.2f} spent in the last {window}"


def _template(text: str, d: object) -> Callable[[float], str]:
    return lambda v: text.format(v=v, d=d)


PHRASES: dict[str, Callable[[float], str]] = {
    "hour_sin": lambda v: "unusual time of day",
    "hour_cos": lambda v: "unusual time of day",
    "day_of_week": lambda v: f"on a {_DAYS[int(v) % 7]}",
    "is_night": _flag("at night", "during the day"),
    "is_weekend": _flag("at the weekend", "on a weekday"),
    "hour_share": lambda v: f"unusual hour for this card ({v:.0%} of its history)",
    "amount_log1p": lambda v: f"amount {math.expm1(v):,.2f}",
    "amount_zscore": lambda v: f"amount {v:+.1f} std from the card's mean",
    "amount_ratio": lambda v: f"amount {v:.1f}x the card's average",
    "user_txn_count": lambda v: f"card has {v:.0f} earlier transactions",
    "seconds_since_prev": lambda v: f"{_duration(v)} since the previous transaction",
    "city_share": lambda v: (
        "a city the card never used" if v == 0 else f"only {v:.0%} of the card's history here"
    ),
    "first_time_city": _flag("first transaction in this city", "a city the card knows"),
    "distance_prev_km": lambda v: f"{v:,.0f} km from the previous transaction",
    "travel_speed_kmh": lambda v: f"implied travel at {v:,.0f} km/h",
    "merchant_user_count": lambda v: (
        "never paid this merchant before" if v == 0 else f"{v:.0f} earlier payments here"
    ),
    "first_time_merchant": _flag("first payment at this merchant", "a merchant the card knows"),
    "channel_online": _flag("online payment", "not online"),
    "channel_atm": _flag("ATM withdrawal", "not at an ATM"),
    "channel_share": lambda v: f"channel used in {v:.0%} of the card's history",
}
for _suffix, _window in _WINDOWS.items():
    PHRASES[f"count_{_suffix}"] = _count(_window)
    PHRASES[f"sum_{_suffix}"] = _spent(_window)
    PHRASES[f"new_merchants_{_suffix}"] = _template(
        "{v:.0f} new merchants in the last {d}", _window
    )
    PHRASES[f"new_cities_{_suffix}"] = _template("{v:.0f} new cities in the last {d}", _window)
for _days in (7, 28):
    PHRASES[f"merchant_fraud_rate_{_days}d"] = _template(
        "merchant fraud rate {v:.1%} ({d}d)", _days
    )
    PHRASES[f"merchant_volume_{_days}d"] = _template("merchant volume {v:,.0f} ({d}d)", _days)


def phrase(feature: str, value: float) -> str:
    """One feature's value as a short phrase (``feature = value`` for unknown features)."""
    maker = PHRASES.get(feature)
    if maker is None or not math.isfinite(value):
        return f"{feature} = {value:g}"
    return maker(value)


def explain_rows(
    contributions: np.ndarray, values: np.ndarray, features: list[str], top: int = 3
) -> list[list[str]]:
    """For each row, phrases for its ``top`` largest positive contributions (strongest first).

    Two features that read the same (hour sin and cos) give one phrase.
    """
    n, f = contributions.shape
    if n == 0 or top <= 0:
        return [[] for _ in range(n)]
    k = min(f, top + 1)  # one spare for a duplicate phrase
    part = np.argpartition(-contributions, k - 1, axis=1)[:, :k]
    rows = np.arange(n)[:, None]
    order = np.argsort(-contributions[rows, part], axis=1, kind="stable")
    best = part[rows, order]
    out: list[list[str]] = []
    for i in range(n):
        phrases: list[str] = []
        for j in best[i]:
            if contributions[i, j] <= 0 or len(phrases) == top:
                break
            text = phrase(features[j], float(values[i, j]))
            if text not in phrases:
                phrases.append(text)
        out.append(phrases)
    return out
