"""The feature list: names, order, and what each one means — written once, here.

This module is import-light (no NumPy) so that anything can read the feature order cheaply. The
order here is the order of the columns the kernel returns, of the enriched Parquet and of
``features.json`` in every model version. Each feature is one entry of a table below (name and
meaning); the lists are read off those tables, so a name cannot be in one and not the other.
"""

from __future__ import annotations

# Computed by the per-user kernel (rtfd.features.arithmetic.finish) from the user's own prior
# transactions.

# When, in the user's local time, and how usual that slot is for the user.
_TIME: dict[str, str] = {
    "hour_sin": "sin(2π · local minute of day / 1440); local = UTC + round(lon / 15) hours",
    "hour_cos": "cos(2π · local minute of day / 1440)",
    "day_of_week": "0 = Monday … 6 = Sunday, local (UTC without a longitude)",
    "is_night": "1 if the local hour is 0–5",
    "is_weekend": "1 on Saturday and Sunday, local",
    "hour_share": "share of the user's prior transactions in the same 3-hour UTC slot; 1 with none",
}

# The amount against the user's own amounts.
_AMOUNT: dict[str, str] = {
    "amount_log1p": "log(1 + amount)",
    "amount_zscore": "(amount − user mean) / max(user std, 1), clipped to ±50; 0 with < 2 prior",
    "amount_ratio": "amount / user mean; 1 with no prior transaction",
    "user_txn_count": "prior transactions of the user (since its history was last forgotten)",
}

# How many, how much and how new, in event-time windows before the transaction.
_VELOCITY: dict[str, str] = {
    "count_10m": "prior transactions of the user in the last 10 minutes (event time)",
    "count_1h": "prior transactions in the last hour",
    "count_24h": "prior transactions in the last 24 hours",
    "count_7d": "prior transactions in the last 7 days",
    "sum_10m": "amount of prior transactions in the last 10 minutes",
    "sum_1h": "amount of prior transactions in the last hour",
    "sum_24h": "amount of prior transactions in the last 24 hours",
    "sum_7d": "amount of prior transactions in the last 7 days",
    "seconds_since_prev": "seconds since the user's previous transaction; the TTL with none",
    "new_merchants_1h": "prior transactions in the last hour at a merchant new to the user",
    "new_merchants_24h": "prior transactions in the last 24 hours at a merchant new to the user",
    "new_cities_1h": "prior transactions in the last hour in a city new to the user",
    "new_cities_24h": "prior transactions in the last 24 hours in a city new to the user",
}

# Where, against where the user has been.
_LOCATION: dict[str, str] = {
    "city_share": "share of the user's prior transactions in this city; 1 with none",
    "first_time_city": "1 if the user has history but never transacted in this city",
    "distance_prev_km": "great-circle distance from the previous transaction; 0 if unknown",
    "travel_speed_kmh": "distance / time since the previous transaction (at least 60 s)",
}

# The merchant, against the user's merchants.
_MERCHANT: dict[str, str] = {
    "merchant_user_count": "prior transactions of the user at this merchant",
    "first_time_merchant": "1 if the user has history but never paid this merchant",
}

# The channel, against the user's channels.
_CHANNEL: dict[str, str] = {
    "channel_online": "1 if the channel is online",
    "channel_atm": "1 if the channel is atm",
    "channel_share": "share of the user's prior transactions in this channel; 1 with none",
}

# Looked up in the merchant risk table (rtfd.features.merchant_risk), built from matured labels.
_RISK: dict[str, str] = {
    "merchant_fraud_rate_7d": "fraud rate of the merchant's matured transactions, 7-day window",
    "merchant_volume_7d": "matured transactions of the merchant in that 7-day window",
    "merchant_fraud_rate_28d": "fraud rate of the merchant's matured transactions, 28-day window",
    "merchant_volume_28d": "matured transactions of the merchant in that 28-day window",
}

_USER_GROUPS = (_TIME, _AMOUNT, _VELOCITY, _LOCATION, _MERCHANT, _CHANNEL)

USER_FEATURES: list[str] = [name for group in _USER_GROUPS for name in group]
"""The per-user kernel's features, in order."""

RISK_FEATURES: list[str] = list(_RISK)
"""The merchant-risk join's features, in order."""

FEATURE_NAMES: list[str] = USER_FEATURES + RISK_FEATURES
"""Every feature, in the exact order models see them."""

FEATURE_DOCS: dict[str, str] = {k: v for group in (*_USER_GROUPS, _RISK) for k, v in group.items()}
"""What each feature means, in :data:`FEATURE_NAMES` order."""
