"""The offline simulator: determinism, fraud rate and types, no label leaks, realistic behaviour."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtfd.generator.fraud import FRAUD_TYPES, FraudParams
from rtfd.generator.geo import CITIES, haversine_km
from rtfd.generator.history import (
    DEFAULT_START,
    HISTORY_COLUMNS,
    label_records,
    simulate_history,
    write_history,
)
from rtfd.generator.population import build_population
from rtfd.generator.separability import artefact_aucs, column_aucs
from rtfd.schemas import TRANSACTION, format_timestamp

pytestmark = pytest.mark.unit

DAYS = 30


@pytest.fixture(scope="module")
def timed_history() -> tuple[pd.DataFrame, float]:
    started = time.perf_counter()
    df = simulate_history(DAYS)
    return df, time.perf_counter() - started


@pytest.fixture(scope="module")
def history(timed_history: tuple[pd.DataFrame, float]) -> pd.DataFrame:
    return timed_history[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_an_identical_file(history: pd.DataFrame, tmp_path: Path) -> None:
    """Acceptance: a 30-day history with the default seed hashes the same across runs."""
    a = write_history(history, tmp_path / "a.parquet")
    b = write_history(simulate_history(DAYS), tmp_path / "b.parquet")
    assert sha256(a) == sha256(b)


def test_another_seed_gives_another_history() -> None:
    a = simulate_history(1, seed=1, users=500, merchants=100)
    b = simulate_history(1, seed=2, users=500, merchants=100)
    assert not a["amount"].equals(b["amount"])


def test_offline_generation_is_fast(timed_history: tuple[pd.DataFrame, float]) -> None:
    """At least a million transactions per minute (measured ~10x that on 2 cores)."""
    df, seconds = timed_history
    assert len(df) / seconds * 60 >= 1_000_000


def test_shape_types_and_order(history: pd.DataFrame) -> None:
    assert list(history.columns) == HISTORY_COLUMNS
    assert str(history["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert history["label"].dtype == np.int8
    assert history["timestamp"].is_monotonic_increasing
    assert history["timestamp"].min() >= pd.Timestamp(DEFAULT_START)
    assert history["timestamp"].max() < pd.Timestamp(DEFAULT_START) + pd.Timedelta(days=DAYS)
    assert history["transaction_id"].is_unique
    legit = history[history["label"] == 0]
    assert legit["fraud_type"].isna().all()
    assert set(history.loc[history["label"] == 1, "fraud_type"]) == set(FRAUD_TYPES)
    # ~10k users x ~2.9 transactions a day
    assert 600_000 < len(history) < 1_200_000
    assert history["user_id"].nunique() > 9_500
    assert history["merchant_id"].nunique() > 1_800


def test_rows_are_valid_transactions(history: pd.DataFrame) -> None:
    sample = history.sample(3_000, random_state=0)
    for row in sample[TRANSACTION.names].to_dict("records"):
        row["timestamp"] = format_timestamp(row["timestamp"].to_pydatetime())
        TRANSACTION.validate(row)


def test_fraud_rate_is_within_20_percent_of_the_configured_rate(history: pd.DataFrame) -> None:
    assert abs(history["label"].mean() - 0.01) < 0.002


def test_each_fraud_type_gets_about_its_share(history: pd.DataFrame) -> None:
    shares = history["fraud_type"].value_counts(normalize=True)
    for name, want in zip(FRAUD_TYPES, FraudParams().mix, strict=True):
        assert shares[name] == pytest.approx(want, rel=0.4), name


def test_fraud_rate_is_configurable() -> None:
    df = simulate_history(7, users=3_000, merchants=600, fraud_rate=0.05)
    assert df["label"].mean() == pytest.approx(0.05, rel=0.2)
    assert simulate_history(2, users=500, merchants=100, fraud_rate=0.0)["label"].sum() == 0


# --- no leaks ---------------------------------------------------------------------------------


def test_no_single_column_separates_fraud_from_legit(history: pd.DataFrame) -> None:
    """Univariate AUC < 0.9 for every column, the behaviour column amount included."""
    aucs = column_aucs(history)
    assert max(aucs.values()) < 0.9, aucs


def test_no_generator_artefact_separates_fraud(history: pd.DataFrame) -> None:
    """Cents, round amounts, digits of coordinates, id characters and the hour of day say
    (almost) nothing about the label."""
    checks = artefact_aucs(history)
    assert max(checks.values()) < 0.7, checks


# --- legitimate behaviour ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def by_user(history: pd.DataFrame) -> pd.DataFrame:
    df = history.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    same = df["user_id"].eq(df["user_id"].shift())
    dt = (df["timestamp"] - df["timestamp"].shift()).dt.total_seconds()
    dist = haversine_km(df["lat"], df["lon"], df["lat"].shift(), df["lon"].shift())
    df["dt_prev"] = np.where(same, dt, np.nan)
    df["km_prev"] = np.where(same, dist, np.nan)
    pairs = df.groupby(["user_id", "location"]).size().rename("n").reset_index()
    pairs = pairs.sort_values(["user_id", "n"], ascending=[True, False], kind="stable")
    home = pairs.drop_duplicates("user_id").set_index("user_id")["location"]
    df["home"] = df["user_id"].map(home)
    return df


def test_legitimate_users_travel(by_user: pd.DataFrame) -> None:
    legit = by_user[by_user["label"] == 0]
    away = legit["location"] != legit["home"]
    assert away.mean() > 0.02
    travellers = legit.loc[away, "user_id"].nunique()
    assert travellers > 0.2 * legit["user_id"].nunique()


def test_legitimate_travel_is_possible_travel(by_user: pd.DataFrame) -> None:
    """Impossible travel (> 1,000 km/h between consecutive purchases) is rare for legitimate
    users (geolocation noise of online purchases) and the rule for account takeovers."""
    speed = by_user["km_prev"] / np.maximum(by_user["dt_prev"], 60) * 3600
    fast = (speed > 1000) & (by_user["km_prev"] > 500)
    legit = by_user["label"] == 0
    assert fast[legit].mean() < 0.005
    ato_first = (by_user["fraud_type"] == "account_takeover") & (
        by_user["fraud_type"].shift() != "account_takeover"
    )
    assert fast[ato_first].mean() > 0.9


def test_legitimate_users_buy_quickly_big_and_new(by_user: pd.DataFrame) -> None:
    legit = by_user[by_user["label"] == 0].copy()
    # several purchases within minutes
    assert (legit["dt_prev"] < 600).mean() > 0.03
    # some purchases far above the user's median
    med = legit.groupby("user_id")["amount"].transform("median")
    assert (legit["amount"] > 8 * med).sum() > 200
    # new merchants keep appearing after the first week
    first_seen = ~legit.duplicated(["user_id", "merchant_id"])
    late = legit["timestamp"] > legit["timestamp"].min() + pd.Timedelta(days=7)
    assert first_seen[late].mean() > 0.05


def test_daily_rhythm_is_quiet_at_night_and_busy_in_the_evening(history: pd.DataFrame) -> None:
    offsets = {c.name: c.utc_offset for c in CITIES}
    pop = build_population()
    home = pd.Series(pop.geo.names[pop.home], index=pop.user_ids)
    legit = history[history["label"] == 0]
    shift = legit["user_id"].map(home).map(offsets)
    local = legit["timestamp"] + pd.to_timedelta(shift, unit="h")
    hours = local.dt.hour.value_counts(normalize=True)
    night = hours.loc[[2, 3, 4]].sum()
    evening = hours.loc[[17, 18, 19]].sum()
    assert evening > 6 * night
    # weekends start later: a smaller share of the day's purchases before 9:00
    weekend = local.dt.dayofweek >= 5
    early = local.dt.hour.between(6, 8)
    assert early[weekend].mean() < 0.7 * early[~weekend].mean()


# --- fraud patterns ---------------------------------------------------------------------------


def test_card_testing_is_a_burst_of_small_amounts(by_user: pd.DataFrame) -> None:
    ct = by_user[by_user["fraud_type"] == "card_testing"]
    assert ct["amount"].median() < 5
    follows = ct["fraud_type"].eq(by_user["fraud_type"].shift().loc[ct.index])
    assert ct.loc[follows, "dt_prev"].median() < 120
    assert (ct["channel"] == "online").all()


def test_spree_and_takeover_are_high_value(by_user: pd.DataFrame) -> None:
    med = by_user[by_user["label"] == 0].groupby("user_id")["amount"].median()
    for kind, factor in (("stolen_card_spree", 2.0), ("amount_outlier", 5.0)):
        rows = by_user[by_user["fraud_type"] == kind]
        ratio = rows["amount"] / rows["user_id"].map(med)
        assert ratio.median() > factor, kind


def test_compromised_merchants_see_a_share_of_fraud(history: pd.DataFrame) -> None:
    cm = history[history["fraud_type"] == "compromised_merchant"]
    merchants = cm["merchant_id"].value_counts()
    assert 2 <= len(merchants) <= 100  # a few dozen of 2,000 merchants
    assert merchants.iloc[0] >= 20
    top = merchants.index[0]
    at = history[history["merchant_id"] == top]
    span = cm.loc[cm["merchant_id"] == top, "timestamp"]
    during = at[at["timestamp"].between(span.min(), span.max())]
    assert 0.1 < during["label"].mean() < 0.6
    # cloned cards of many different people
    assert cm["user_id"].nunique() / len(cm) > 0.8


# --- labels -----------------------------------------------------------------------------------


def test_label_records_follow_fraud_after_a_delay(history: pd.DataFrame) -> None:
    labels = label_records(history, mean_delay_s=3 * 86_400)
    fraud = history[history["label"] == 1].set_index("transaction_id")
    assert len(labels) == len(fraud)
    assert set(labels["fraud_type"]) == set(FRAUD_TYPES)
    delay = (
        labels["reported_at"] - labels["transaction_id"].map(fraud["timestamp"])
    ).dt.total_seconds()
    assert (delay > 0).all()
    assert delay.mean() == pytest.approx(3 * 86_400, rel=0.1)


# --- the population ---------------------------------------------------------------------------


def test_population_is_sized_and_located() -> None:
    pop = build_population(seed=7, users=1_234, merchants=321)
    assert pop.n_users == 1_234 and pop.n_merchants == 321
    assert len(set(pop.user_ids)) == 1_234 and len(set(pop.merchant_ids)) == 321
    homes = set(pop.geo.names[pop.home])
    assert homes <= {c.name for c in CITIES if c.currency}
    # users live near their home city's centre and their usual merchants exist
    d = haversine_km(pop.home_lat, pop.home_lon, pop.geo.lat[pop.home], pop.geo.lon[pop.home])
    assert d.max() < 50
    assert (pop.usual[:, :3] >= 0).all()


def test_tiny_populations_work() -> None:
    for users, merchants in ((20, 3), (1, 1), (5, 2)):
        df = simulate_history(5, users=users, merchants=merchants, fraud_rate=0.2)
        assert len(df) > 0
        assert df["transaction_id"].is_unique
        assert df["user_id"].nunique() <= users and df["merchant_id"].nunique() <= merchants


def test_a_naive_start_is_utc() -> None:
    from datetime import datetime

    df = simulate_history(0.5, users=200, merchants=40, start=datetime(2026, 2, 1))
    assert df["timestamp"].min() >= pd.Timestamp("2026-02-01", tz="UTC")
    assert df["timestamp"].max() < pd.Timestamp("2026-02-01 12:00", tz="UTC")


def test_time_scale_compresses_event_time_like_the_live_time_lapse() -> None:
    normal = simulate_history(4, users=500, merchants=100, seed=4)
    fast = simulate_history(4, users=500, merchants=100, seed=4, time_scale=96)
    assert list(fast["transaction_id"]) == list(normal["transaction_id"])
    span = fast["timestamp"].max() - fast["timestamp"].min()
    assert pd.Timedelta(minutes=50) < span <= pd.Timedelta(hours=1)
