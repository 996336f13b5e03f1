"""The simulated world: card holders and merchants, drawn once from a seed.

A user has a home (a real city, and a point near its centre), a card currency, an activity rate
(transactions per day, shaped over the week by :mod:`rtfd.generator.behaviour`), a chronotype (an
hour earlier or later than their neighbours), a spending profile (a median amount and a spread, and
a category mix), a short list of usual merchants near home with a preference order, a share of
purchases that go to those usual merchants, and a travel rate.

A merchant has a category (which fixes the channel: point of sale, ATM or online), a location
(a city and a point in it; online merchants are grouped under a virtual "online" city) and a
popularity that weights how often people pick it.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtfd.generator.geo import Geography, geography

CHANNELS = ("pos", "online", "atm")
POS, ONLINE, ATM = 0, 1, 2


@dataclass(frozen=True)
class Category:
    """A merchant category: its channel, its amount multiplier and how common it is."""

    name: str
    channel: int
    amount_mult: float  # typical amount relative to the user's median amount
    spend_weight: float  # share of a typical user's purchases
    merchant_weight: float  # share of merchants (within their channel group)


# fmt: off
CATEGORIES: tuple[Category, ...] = (
    Category("grocery", POS, 1.0, 0.24, 0.20),
    Category("restaurant", POS, 0.9, 0.17, 0.22),
    Category("fuel", POS, 1.4, 0.08, 0.08),
    Category("retail", POS, 1.6, 0.10, 0.18),
    Category("electronics", POS, 4.0, 0.02, 0.05),
    Category("health", POS, 1.1, 0.05, 0.07),
    Category("entertainment", POS, 0.9, 0.06, 0.08),
    Category("travel", POS, 5.0, 0.015, 0.05),
    Category("jewelry", POS, 5.0, 0.005, 0.02),
    Category("cash", ATM, 2.5, 0.06, 0.05),
    Category("online_retail", ONLINE, 1.3, 0.10, 0.50),
    Category("digital", ONLINE, 0.35, 0.06, 0.30),
    Category("online_travel", ONLINE, 7.0, 0.01, 0.10),
    Category("online_electronics", ONLINE, 4.0, 0.015, 0.10),
)
# fmt: on
CATEGORY_INDEX = {c.name: i for i, c in enumerate(CATEGORIES)}
CAT_CHANNEL = np.array([c.channel for c in CATEGORIES], dtype=np.int8)
CAT_MULT = np.array([c.amount_mult for c in CATEGORIES])
N_CAT = len(CATEGORIES)
MAX_USUAL = 15
RATE_CLIP = (0.1, 30.0)  # base purchases per day, a card's bounds
ONLINE_SHARE_OF_MERCHANTS = 0.12


@dataclass(frozen=True)
class PopulationParams:
    """Distributions the population is drawn from (documented in docs/simulator.md)."""

    rate_median_per_day: float = 2.0  # base purchases per day (lognormal median)
    rate_sigma: float = 0.6
    amount_median: float = 28.0  # user's median amount (lognormal median across users)
    amount_median_sigma: float = 0.45
    amount_sigma_range: tuple[float, float] = (0.35, 0.8)  # per-user spread of log amounts
    category_concentration: float = 8.0  # Dirichlet concentration around the typical mix
    usual_merchants_mean: float = 8.0
    usual_share_range: tuple[float, float] = (0.7, 0.92)  # share of at-home purchases at usuals
    trips_per_day_median: float = 1 / 60
    trips_sigma: float = 0.8
    home_jitter_deg: float = 0.05
    merchant_jitter_deg: float = 0.04


@dataclass(frozen=True)
class Population:
    """Users and merchants as column arrays (index = internal id)."""

    geo: Geography
    params: PopulationParams
    # users
    user_ids: np.ndarray  # object str
    home: np.ndarray  # int city index
    home_lat: np.ndarray
    home_lon: np.ndarray
    currency: np.ndarray  # object str
    rate: np.ndarray  # base purchases per day
    local_shift: np.ndarray  # int hours: UTC offset of home + chronotype
    amount_scale: np.ndarray  # median amount
    amount_sigma: np.ndarray
    cat_cum: np.ndarray  # (U, N_CAT) cumulative category probabilities
    usual: np.ndarray  # (U, MAX_USUAL) merchant index, -1 = none
    usual_cum: np.ndarray  # (U, MAX_USUAL) cumulative preference
    usual_share: np.ndarray
    trip_rate: np.ndarray  # trips per day
    # merchants
    merchant_ids: np.ndarray  # object str
    merchant_city: np.ndarray  # int city index; geo.n = online
    merchant_lat: np.ndarray
    merchant_lon: np.ndarray
    merchant_cat: np.ndarray  # int
    merchant_pop: np.ndarray  # popularity weight
    # samplers
    by_city_cat: GroupSampler
    by_city: GroupSampler

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def cards(self, start: int, stop: int) -> Population:
        """Users ``start`` to ``stop`` with every merchant (views of the same arrays)."""
        return dataclasses.replace(
            self, **{name: getattr(self, name)[start:stop] for name in _USER_COLUMNS}
        )

    @property
    def n_merchants(self) -> int:
        return len(self.merchant_ids)

    @property
    def online_city(self) -> int:
        """The virtual city index that groups online merchants."""
        return self.geo.n

    def sample_merchants(self, city: np.ndarray, cat: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A merchant of category ``cat`` in ``city`` (online categories: an online merchant),
        weighted by popularity; falls back to any merchant in the city, then to any online one,
        then to any merchant."""
        return _sample_merchants(self.by_city_cat, self.by_city, self.online_city, city, cat, u)

    def sample_categories(self, users: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A category from each user's own mix."""
        return inverse_cdf_rows(self.cat_cum[users], u)

    def sample_usual(self, users: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One of each user's usual merchants, by preference."""
        k = inverse_cdf_rows(self.usual_cum[users], u)
        return self.usual[users, k]

    def expected_tx_per_day(self, followups_per_event: float) -> float:
        """Legitimate transactions per day the population makes on average."""
        return float(self.rate.sum() * (1.0 + followups_per_event))


class GroupSampler:
    """Popularity-weighted choice of a merchant within a group (e.g. city x category), vectorised.

    Merchants are sorted by group; a group is a slice of the cumulative weights, so a uniform draw
    scaled into the slice and a binary search picks a merchant with probability proportional to its
    weight.
    """

    def __init__(self, keys: np.ndarray, weights: np.ndarray, n_keys: int) -> None:
        self.order = np.argsort(keys, kind="stable")
        sorted_keys = keys[self.order]
        self.cum = np.concatenate([[0.0], np.cumsum(weights[self.order])])
        self.start = np.searchsorted(sorted_keys, np.arange(n_keys), side="left")
        self.end = np.searchsorted(sorted_keys, np.arange(n_keys), side="right")

    def sample(self, keys: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A merchant index per key (-1 where the group is empty)."""
        s, e = self.start[keys], self.end[keys]
        lo, hi = self.cum[s], self.cum[e]
        j = np.searchsorted(self.cum, lo + u * (hi - lo), side="right") - 1
        j = np.clip(j, s, np.maximum(e - 1, s))
        out = self.order[np.minimum(j, len(self.order) - 1)].astype(np.int64)
        out[e <= s] = -1
        return out


def _sample_merchants(
    by_city_cat: GroupSampler,
    by_city: GroupSampler,
    online_city: int,
    city: np.ndarray,
    cat: np.ndarray,
    u: np.ndarray,
) -> np.ndarray:
    city = np.where(CAT_CHANNEL[cat] == ONLINE, online_city, city)
    out = by_city_cat.sample(city * N_CAT + cat, u)
    miss = out < 0
    if miss.any():
        out[miss] = by_city.sample(city[miss], u[miss])
        miss = out < 0
        if miss.any():
            out[miss] = by_city.sample(np.full(int(miss.sum()), online_city), u[miss])
            miss = out < 0
            if miss.any():
                # A tiny world (fewer merchants than cities): any merchant at all.
                n = len(by_city.order)
                out[miss] = by_city.order[np.minimum((u[miss] * n).astype(np.int64), n - 1)]
    return out


def inverse_cdf_rows(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise inverse CDF: the first column whose cumulative probability exceeds ``u``."""
    k = (cum < u[:, None]).sum(axis=1)
    return np.minimum(k, cum.shape[1] - 1)


def _ids(prefix: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Ids in a random order, so that an id's number says nothing about the entity."""
    width = max(6, len(str(n)))
    numbers = (rng.permutation(n) + 1).astype(str)
    return np.char.add(prefix, np.char.zfill(numbers, width)).astype(object)


CARD_CHUNK = 16384
"""Cards are drawn in chunks of this many, each from its own random stream: the first n cards of
a world are the same whatever its size, so a world grows (the live rate goes up) without
changing a card that exists."""
_CARD_ID_WIDTH = 7
_USER_COLUMNS = (
    "user_ids",
    "home",
    "home_lat",
    "home_lon",
    "currency",
    "rate",
    "local_shift",
    "amount_scale",
    "amount_sigma",
    "cat_cum",
    "usual",
    "usual_cum",
    "usual_share",
    "trip_rate",
)


class World:
    """The merchants, drawn once from a seed, and the card holders, drawn lazily in chunks.

    :meth:`population` gives the first ``n`` cards with every merchant. Building 500,000 cards
    takes a few seconds; a world only builds the chunks it is asked for, and keeps them, so a
    smaller population afterwards is a view of the same arrays. Thread-safe.
    """

    def __init__(
        self, seed: int = 42, merchants: int = 2_000, params: PopulationParams | None = None
    ) -> None:
        if merchants < 1:
            raise ValueError("need at least one merchant")
        self.seed = seed
        self.params = params or PopulationParams()
        self.geo = geography()
        self._merchants = _draw_merchants(self.geo, self.params, seed, merchants)
        self._cards: dict[str, np.ndarray] = {}
        self._built = 0
        self._lock = threading.Lock()

    @property
    def built(self) -> int:
        """Cards drawn so far."""
        return self._built

    def population(self, users: int) -> Population:
        """The first ``users`` cards of this world and all its merchants."""
        if users < 1:
            raise ValueError("need at least one user and one merchant")
        with self._lock:
            if users > self._built:
                self._grow(users)
            cards: dict[str, Any] = {name: col[:users] for name, col in self._cards.items()}
        return Population(geo=self.geo, params=self.params, **cards, **self._merchants)

    def _grow(self, users: int) -> None:
        first, last = self._built // CARD_CHUNK, (users - 1) // CARD_CHUNK
        chunks = [
            _draw_cards(self.geo, self.params, self.seed, c, self._merchants)
            for c in range(first, last + 1)
        ]
        if self._built % CARD_CHUNK:
            # The last chunk was cut short: it is drawn again whole (same stream, same cards).
            self._cards = {k: v[: first * CARD_CHUNK] for k, v in self._cards.items()}
        parts = [self._cards, *chunks] if self._cards else chunks
        self._cards = {k: np.concatenate([p[k] for p in parts]) for k in _USER_COLUMNS}
        self._built = len(self._cards["user_ids"])


def _draw_merchants(
    geo: Geography, p: PopulationParams, seed: int, merchants: int
) -> dict[str, Any]:
    """Merchant columns and the samplers over them."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x504F50]))  # "POP"
    n_online = max(1, round(merchants * ONLINE_SHARE_OF_MERCHANTS)) if merchants > 1 else 0
    n_pos = merchants - n_online
    # Point-of-sale merchants are spread over every city (travellers shop too), weighted by how
    # many people live there or visit.
    city_w = np.where(geo.currency != None, geo.population, 0.0) + geo.visit  # noqa: E711
    m_city = rng.choice(geo.n, size=n_pos, p=city_w / city_w.sum())
    pos_cats = np.flatnonzero(CAT_CHANNEL != ONLINE)
    onl_cats = np.flatnonzero(CAT_CHANNEL == ONLINE)
    pos_w = np.array([CATEGORIES[c].merchant_weight for c in pos_cats])
    onl_w = np.array([CATEGORIES[c].merchant_weight for c in onl_cats])
    m_cat_pos = rng.choice(pos_cats, size=n_pos, p=pos_w / pos_w.sum())
    m_cat_onl = rng.choice(onl_cats, size=n_online, p=onl_w / onl_w.sum())
    hq = rng.choice(geo.home_cities, size=n_online)
    m_city_all = np.concatenate([m_city, np.full(n_online, geo.n)])
    m_cat = np.concatenate([m_cat_pos, m_cat_onl])
    coord_city = np.concatenate([m_city, hq])
    m_lat = geo.lat[coord_city] + rng.normal(0, p.merchant_jitter_deg, merchants)
    m_lon = geo.lon[coord_city] + rng.normal(0, p.merchant_jitter_deg, merchants) / np.cos(
        np.radians(geo.lat[coord_city])
    )
    m_pop = rng.lognormal(0.0, 1.0, merchants)
    # Shuffle so that a merchant's position (and id) says nothing about its kind.
    perm = rng.permutation(merchants)
    m_city_all, m_cat, m_lat, m_lon, m_pop = (
        a[perm] for a in (m_city_all, m_cat, m_lat, m_lon, m_pop)
    )
    return {
        "merchant_ids": _ids("m", merchants, rng),
        "merchant_city": m_city_all,
        "merchant_lat": m_lat,
        "merchant_lon": m_lon,
        "merchant_cat": m_cat,
        "merchant_pop": m_pop,
        "by_city_cat": GroupSampler(m_city_all * N_CAT + m_cat, m_pop, (geo.n + 1) * N_CAT),
        "by_city": GroupSampler(m_city_all, m_pop, geo.n + 1),
    }


def _draw_cards(
    geo: Geography, p: PopulationParams, seed: int, chunk: int, merchants: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Chunk ``chunk`` of the card holders: :data:`CARD_CHUNK` users from their own stream."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x504F50, 0x43415244, chunk]))
    users = CARD_CHUNK
    homes = geo.home_cities
    hw = geo.population[homes]
    home = rng.choice(homes, size=users, p=hw / hw.sum())
    home_lat = geo.lat[home] + rng.normal(0, p.home_jitter_deg, users)
    home_lon = geo.lon[home] + rng.normal(0, p.home_jitter_deg, users) / np.cos(
        np.radians(geo.lat[home])
    )
    rate = np.clip(rng.lognormal(np.log(p.rate_median_per_day), p.rate_sigma, users), *RATE_CLIP)
    chrono = rng.choice([-1, 0, 1], size=users, p=[0.25, 0.5, 0.25])
    local_shift = geo.utc_offset[home] + chrono
    amount_scale = rng.lognormal(np.log(p.amount_median), p.amount_median_sigma, users)
    amount_sigma = rng.uniform(*p.amount_sigma_range, users)
    base_mix = np.array([c.spend_weight for c in CATEGORIES])
    base_mix = base_mix / base_mix.sum()
    mix = rng.gamma(base_mix * p.category_concentration, 1.0, size=(users, N_CAT))
    mix = np.maximum(mix, 1e-9)
    mix /= mix.sum(axis=1, keepdims=True)
    cat_cum = np.cumsum(mix, axis=1)
    cat_cum[:, -1] = 1.0

    # Usual merchants: a handful near home (or online), drawn like ordinary purchases, with a
    # Zipf-like preference over them.
    k_u = np.clip(rng.poisson(p.usual_merchants_mean - 3, users) + 3, 3, MAX_USUAL)
    usual = np.full((users, MAX_USUAL), -1, dtype=np.int64)
    by_city_cat, by_city = merchants["by_city_cat"], merchants["by_city"]
    for k in range(MAX_USUAL):
        cat = inverse_cdf_rows(cat_cum, rng.random(users))
        m = _sample_merchants(by_city_cat, by_city, geo.n, home, cat, rng.random(users))
        usual[:, k] = np.where(k < k_u, m, -1)
    pref = np.where(usual >= 0, 1.0 / (np.arange(MAX_USUAL) + 1.0) ** 0.9, 0.0)
    usual_cum = np.cumsum(pref, axis=1) / pref.sum(axis=1, keepdims=True)
    usual_cum[np.arange(users), k_u - 1] = 1.0
    usual_cum[usual < 0] = 1.0
    usual_share = rng.uniform(*p.usual_share_range, users)
    trip_rate = rng.lognormal(np.log(p.trips_per_day_median), p.trips_sigma, users)
    # Ids in a random order within the chunk, so that an id's number says little about the card.
    numbers = (chunk * CARD_CHUNK + rng.permutation(users) + 1).astype(str)
    return {
        "user_ids": np.char.add("u", np.char.zfill(numbers, _CARD_ID_WIDTH)).astype(object),
        "home": home,
        "home_lat": home_lat,
        "home_lon": home_lon,
        "currency": geo.currency[home],
        "rate": rate,
        "local_shift": local_shift,
        "amount_scale": amount_scale,
        "amount_sigma": amount_sigma,
        "cat_cum": cat_cum,
        "usual": usual,
        "usual_cum": usual_cum,
        "usual_share": usual_share,
        "trip_rate": trip_rate,
    }


def build_population(
    seed: int = 42,
    users: int = 10_000,
    merchants: int = 2_000,
    params: PopulationParams | None = None,
) -> Population:
    """Draw the users and merchants from ``seed`` (same seed and sizes -> same population; the
    first n users are the same for any size >= n)."""
    if users < 1 or merchants < 1:
        raise ValueError("need at least one user and one merchant")
    return World(seed, merchants, params).population(users)


def mean_base_rate(params: PopulationParams | None = None) -> float:
    """Expected base purchases per day of one card: the mean of the clipped lognormal."""
    p = params or PopulationParams()
    mu, sigma = math.log(p.rate_median_per_day), p.rate_sigma
    lo, hi = RATE_CLIP

    def cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2.0))))

    def partial(x: float) -> float:  # E[X; X < x]
        z = (math.log(x) - mu - sigma**2) / (sigma * math.sqrt(2.0))
        return math.exp(mu + sigma**2 / 2.0) * 0.5 * (1.0 + math.erf(z))

    return lo * cdf(lo) + (partial(hi) - partial(lo)) + hi * (1.0 - cdf(hi))
