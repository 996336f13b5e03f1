"""Legitimate card use: when people buy, where they are, where they shop and how much they spend.

Everything is drawn for a whole window of simulated time at once (numpy, no loop per
transaction):

* **When.** Each user's purchases are an inhomogeneous Poisson process: their daily rate times a
  weekly rhythm (quiet nights, a lunch bump, busy evenings; weekends start later and Saturday is
  the busiest day), evaluated in the user's local time (home time zone plus a personal chronotype).
  Some purchases start a short burst: a few more purchases minutes later (a shopping trip).
* **Where.** Users travel: trips start at a per-user rate, go mostly to nearby cities, sometimes
  far, last days, and take a realistic transit time during which the card is idle (so legitimate
  travel is never impossible travel). Away from home they shop at local merchants they have never
  used. A small share of online purchases is geolocated to a wrong city (VPNs, carrier NAT).
* **Which merchant.** At home most purchases go to the user's usual merchants; the rest go to a
  merchant of a category from the user's mix, weighted by popularity (often a new one).
* **How much.** The user's median amount times the category's multiplier times a lognormal spread
  of the user's own width; now and then a legitimate big purchase several times the usual amount.
  ATM withdrawals are rounded to tens (for everybody, fraud included).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from rtfd.generator.population import (
    ATM,
    CAT_CHANNEL,
    CAT_MULT,
    CATEGORY_INDEX,
    ONLINE,
    Population,
    inverse_cdf_rows,
)

DAY_S = 86_400.0
HOUR_S = 3_600.0

# Relative purchase intensity by local hour, Monday-Friday and weekend. Normalised below.
# fmt: off
_WEEKDAY = np.array([0.15, 0.08, 0.05, 0.04, 0.05, 0.12, 0.35, 0.70, 1.00, 1.05, 1.10, 1.25,
                     1.55, 1.35, 1.10, 1.10, 1.25, 1.55, 1.80, 1.75, 1.45, 1.05, 0.65, 0.30])
_WEEKEND = np.array([0.30, 0.18, 0.10, 0.06, 0.05, 0.07, 0.15, 0.30, 0.55, 0.85, 1.15, 1.40,
                     1.60, 1.60, 1.50, 1.45, 1.45, 1.55, 1.65, 1.60, 1.40, 1.10, 0.75, 0.45])
# fmt: on
_DAY_FACTOR = np.array([0.95, 0.95, 0.97, 1.00, 1.10, 1.15, 0.88])  # Monday .. Sunday


def _rhythm() -> np.ndarray:
    table = np.array([_WEEKDAY if d < 5 else _WEEKEND for d in range(7)])
    table = table / table.mean(axis=1, keepdims=True) * _DAY_FACTOR[:, None]
    return table / table.mean()


RHYTHM = _rhythm()  # (7, 24): weekday (Monday = 0) x local hour; mean 1


@dataclass(frozen=True)
class BehaviourParams:
    """Parameters of legitimate behaviour (documented in docs/simulator.md)."""

    followup_prob: float = 0.12  # a purchase starts a burst of more purchases
    followup_extra_mean: float = 0.6  # extra purchases in a burst beyond the first (Poisson)
    followup_gap_mean_s: float = 360.0
    followup_gap_min_s: float = 20.0
    big_purchase_prob: float = 0.002  # a legitimate purchase several times the usual amount
    big_purchase_median: float = 4.0
    big_purchase_sigma: float = 0.5
    trip_near_share: float = 0.6  # trips to a city within near_km
    near_km: float = 1500.0
    trip_days_median: float = 3.0
    trip_days_sigma: float = 0.6
    trip_days_range: tuple[float, float] = (0.5, 21.0)
    transit_kmh: float = 800.0
    transit_overhead_h: float = 1.5
    away_restaurant: float = 0.25  # extra category weight while travelling
    away_hotel: float = 0.10
    geoip_noise: float = 0.003  # online purchases geolocated to a random city
    online_jitter_deg: float = 0.01
    away_jitter_deg: float = 0.05

    @property
    def followups_per_event(self) -> float:
        return self.followup_prob * (1.0 + self.followup_extra_mean)


@dataclass
class Batch:
    """Simulated transactions as column arrays (internal indices, not yet strings)."""

    t: np.ndarray  # event time, epoch seconds (float64)
    user: np.ndarray  # int64 user index
    merchant: np.ndarray  # int64 merchant index
    amount: np.ndarray  # float64, already rounded
    city: np.ndarray  # int64 city index of the location field
    lat: np.ndarray
    lon: np.ndarray
    fraud: np.ndarray  # int8: 0 = legitimate, k = FRAUD_TYPES[k - 1]

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls) -> Batch:
        f, i = np.empty(0), np.empty(0, dtype=np.int64)
        return cls(f, i, i, f, i, f, f, np.empty(0, dtype=np.int8))

    @classmethod
    def concat(cls, batches: list[Batch]) -> Batch:
        if not batches:
            return cls.empty()
        return cls(*(np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)))

    def take(self, idx: np.ndarray) -> Batch:
        return Batch(*(getattr(self, f.name)[idx] for f in fields(self)))

    def sorted(self) -> Batch:
        """Ordered by event time (stable, so equal times keep their draw order)."""
        return self.take(np.argsort(self.t, kind="stable"))


def finish_amounts(raw: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Round amounts the way card networks see them, with one rule for every class.

    ATM withdrawals are multiples of 10 (at least 20); everything else is in cents with a small
    floor (no purchase costs a fraction of a cent).
    """
    cash = CAT_CHANNEL[cat] == ATM
    cents = np.round(0.25 + raw, 2)
    tens = np.maximum(20.0, np.round(raw / 10.0) * 10.0)
    return np.where(cash, tens, cents)


def draw_amounts(
    pop: Population,
    users: np.ndarray,
    cat: np.ndarray,
    rng: np.random.Generator,
    factor: np.ndarray | float = 1.0,
) -> np.ndarray:
    """The user's own amount distribution for the category, times ``factor``, unrounded."""
    z = rng.standard_normal(len(users))
    return pop.amount_scale[users] * CAT_MULT[cat] * np.exp(pop.amount_sigma[users] * z) * factor


def grouped_offsets(counts: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``gaps`` restarted at every group of ``counts`` consecutive values."""
    cs = np.cumsum(gaps)
    starts = np.cumsum(counts) - counts
    before = np.concatenate([[0.0], cs])[starts]
    return cs - np.repeat(before, counts)


@dataclass
class TripState:
    """Each user's current or last trip (one at a time); -1 city = never travelled."""

    city: np.ndarray
    start: np.ndarray
    end: np.ndarray
    transit: np.ndarray

    @classmethod
    def empty(cls, n_users: int) -> TripState:
        return cls(
            np.full(n_users, -1, dtype=np.int64),
            np.zeros(n_users),
            np.zeros(n_users),
            np.zeros(n_users),
        )

    @property
    def n_users(self) -> int:
        return len(self.city)

    def extended(self, n_users: int) -> TripState:
        """A copy with room for ``n_users`` (the new users have never travelled)."""
        more = TripState.empty(n_users - self.n_users)
        return TripState(
            *(np.concatenate([getattr(self, f.name), getattr(more, f.name)]) for f in fields(self))
        )

    def view(self, start: int, stop: int | None = None) -> TripState:
        """Users ``start`` to ``stop`` (or the first ``start`` users), sharing the arrays: a
        trip started through the view is the user's trip."""
        lo, hi = (0, start) if stop is None else (start, stop)
        return TripState(*(getattr(self, f.name)[lo:hi] for f in fields(self)))

    def phase(self, users: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(away, in_transit) masks for each (user, time)."""
        c, s, e, tr = self.city[users], self.start[users], self.end[users], self.transit[users]
        on = c >= 0
        transit = on & (((t >= s) & (t < s + tr)) | ((t >= e) & (t < e + tr)))
        away = on & (t >= s + tr) & (t < e)
        return away, transit

    def city_at(self, pop: Population, users: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Where each user is at time t (home while in transit)."""
        away, _ = self.phase(users, t)
        return np.where(away, self.city[users], pop.home[users])


def destination_cdfs(pop: Population, params: BehaviourParams) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative destination weights from every city: (near cities, any other city)."""
    geo = pop.geo
    other = 1.0 - np.eye(geo.n)
    any_w = other * geo.visit[None, :]
    near_w = any_w * (geo.distance_km < params.near_km)
    near_w = np.where(near_w.sum(axis=1, keepdims=True) > 0, near_w, any_w)
    return (
        np.cumsum(near_w, axis=1) / near_w.sum(axis=1, keepdims=True),
        np.cumsum(any_w, axis=1) / any_w.sum(axis=1, keepdims=True),
    )


def start_trips(
    pop: Population,
    trips: TripState,
    params: BehaviourParams,
    cdfs: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    t0: float,
    t1: float,
) -> None:
    """Start new trips in [t0, t1) for users who are home and idle (mutates ``trips``)."""
    free = (trips.city < 0) | (trips.end + trips.transit <= t0)
    p_start = 1.0 - np.exp(-pop.trip_rate * (t1 - t0) / DAY_S)
    go = np.flatnonzero(free & (rng.random(pop.n_users) < p_start))
    if len(go) == 0:
        return
    home = pop.home[go]
    near_cdf, any_cdf = cdfs
    near = rng.random(len(go)) < params.trip_near_share
    u = rng.random(len(go))
    dest = np.where(near, inverse_cdf_rows(near_cdf[home], u), inverse_cdf_rows(any_cdf[home], u))
    days = np.clip(
        rng.lognormal(np.log(params.trip_days_median), params.trip_days_sigma, len(go)),
        *params.trip_days_range,
    )
    start = t0 + rng.random(len(go)) * (t1 - t0)
    dist = pop.geo.distance_km[home, dest]
    trips.city[go] = dest
    trips.start[go] = start
    trips.end[go] = start + days * DAY_S
    trips.transit[go] = (dist / params.transit_kmh + params.transit_overhead_h) * HOUR_S


def event_times(
    pop: Population, rng: np.random.Generator, t0: float, t1: float
) -> tuple[np.ndarray, np.ndarray]:
    """Base purchase times in [t0, t1): (user index, time), unsorted.

    The intensity is piecewise constant over UTC hours; users with the same local shift share one
    cumulative intensity curve, so a draw is a Poisson count per user and an inverse-CDF lookup
    per event.
    """
    first = np.floor(t0 / HOUR_S) * HOUR_S + HOUR_S
    inner = np.arange(first, t1, HOUR_S)
    edges = np.concatenate([[t0], inner[inner < t1], [t1]])
    lengths = np.diff(edges)
    hour_abs = np.floor(edges[:-1] / HOUR_S).astype(np.int64)
    shifts, group = np.unique(pop.local_shift, return_inverse=True)
    local = hour_abs[None, :] + shifts[:, None]
    weekday = (np.floor_divide(local, 24) + 3) % 7  # 1970-01-01 was a Thursday
    intensity = RHYTHM[weekday, local % 24]  # (G, K)
    cum = np.concatenate(
        [np.zeros((len(shifts), 1)), np.cumsum(intensity * lengths / DAY_S, axis=1)], axis=1
    )
    total = cum[:, -1]
    counts = rng.poisson(pop.rate * total[group])
    users = np.repeat(np.arange(pop.n_users), counts)
    g = group[users]
    v = rng.random(len(users)) * total[g]
    k_bins = len(lengths)
    stride = total.max() + 1.0
    flat = (cum + stride * np.arange(len(shifts))[:, None]).ravel()
    idx = np.searchsorted(flat, v + stride * g, side="right") - 1
    k = np.clip(idx - g * (k_bins + 1), 0, k_bins - 1)
    lo, hi = cum[g, k], cum[g, k + 1]
    frac = np.where(hi > lo, (v - lo) / np.where(hi > lo, hi - lo, 1.0), 0.5)
    t = edges[k] + np.clip(frac, 0.0, 1.0) * lengths[k]
    return users, t


def legit_window(
    pop: Population,
    trips: TripState,
    params: BehaviourParams,
    rng: np.random.Generator,
    t0: float,
    t1: float,
) -> Batch:
    """Every legitimate transaction of the population in [t0, t1) (follow-ups may spill over)."""
    users, t = event_times(pop, rng, t0, t1)
    # Bursts: a purchase followed by a few more minutes apart.
    has_f = rng.random(len(users)) < params.followup_prob
    n_f = np.where(has_f, 1 + rng.poisson(params.followup_extra_mean, len(users)), 0)
    base = np.repeat(np.arange(len(users)), n_f)
    gaps = rng.exponential(params.followup_gap_mean_s, len(base)) + params.followup_gap_min_s
    f_t = t[base] + grouped_offsets(n_f[n_f > 0], gaps)
    users = np.concatenate([users, users[base]])
    t = np.concatenate([t, f_t])

    away, transit = trips.phase(users, t)
    keep = ~transit
    users, t, away = users[keep], t[keep], away[keep]
    n = len(users)
    city = np.where(away, trips.city[users], pop.home[users])

    # Merchant: a usual one at home, else a category from the user's mix (restaurants and hotels
    # more often while travelling) and a merchant of it where the user is.
    cat = pop.sample_categories(users, rng.random(n))
    r = rng.random(n)
    cat = np.where(
        away & (r < params.away_restaurant),
        CATEGORY_INDEX["restaurant"],
        np.where(away & (r >= 1 - params.away_hotel), CATEGORY_INDEX["travel"], cat),
    )
    merchant = pop.sample_merchants(city, cat, rng.random(n))
    usual = ~away & (rng.random(n) < pop.usual_share[users])
    merchant[usual] = pop.sample_usual(users[usual], rng.random(int(usual.sum())))
    mcat = pop.merchant_cat[merchant]

    big = rng.random(n) < params.big_purchase_prob
    factor = np.where(
        big,
        rng.lognormal(np.log(params.big_purchase_median), params.big_purchase_sigma, n),
        1.0,
    )
    amount = finish_amounts(draw_amounts(pop, users, mcat, rng, factor), mcat)

    # Location: the merchant's for card-present purchases; the user's device for online ones.
    online = CAT_CHANNEL[mcat] == ONLINE
    lat = pop.merchant_lat[merchant].copy()
    lon = pop.merchant_lon[merchant].copy()
    jit = np.where(away, params.away_jitter_deg, params.online_jitter_deg)
    dev_lat = np.where(away, pop.geo.lat[city], pop.home_lat[users]) + rng.normal(0, 1, n) * jit
    dev_lon = np.where(away, pop.geo.lon[city], pop.home_lon[users]) + rng.normal(0, 1, n) * jit
    noisy = online & (rng.random(n) < params.geoip_noise)
    if noisy.any():
        w = pop.geo.visit / pop.geo.visit.sum()
        nc = rng.choice(pop.geo.n, size=int(noisy.sum()), p=w)
        city[noisy] = nc
        dev_lat[noisy] = pop.geo.lat[nc] + rng.normal(0, params.away_jitter_deg, len(nc))
        dev_lon[noisy] = pop.geo.lon[nc] + rng.normal(0, params.away_jitter_deg, len(nc))
    lat[online] = dev_lat[online]
    lon[online] = dev_lon[online]
    # A card-present purchase happens in the merchant's city (a fallback merchant may be online).
    city = np.where(online, city, pop.merchant_city[merchant])
    return Batch(t, users, merchant, amount, city, lat, lon, np.zeros(n, dtype=np.int8))
