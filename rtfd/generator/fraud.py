"""Fraud patterns: each a documented rule that injects labelled transactions into a window.

Fraudulent transactions are drawn with the same machinery as legitimate ones (the victim's own
card, currency and amount distribution, popularity-weighted merchants, the same rounding rule,
jittered coordinates, random ids assigned after sorting), so that nothing but behaviour separates
them: an amount relative to the user's history, a burst, a far place, new merchants.

Patterns (``fraud_type``):

``card_testing``
    A burst of small amounts (median ~2) at online merchants the victim never used, seconds to
    minutes apart, from wherever the fraudster is, at any hour.
``account_takeover``
    Shortly after one of the victim's genuine purchases, activity from a city at least
    ``ato_min_km`` away (impossible travel), then a few rapid high-value online purchases.
``compromised_merchant``
    For a few days one merchant (a skimmer, a breached terminal) sees cloned cards of people from
    anywhere: a share of its transactions in that period are fraud, at amounts above the victims'
    usual.
``stolen_card_spree``
    Someone holding the victim's physical card makes several high purchases and withdrawals
    across categories within an hour or two, where the victim is.
``amount_outlier``
    A single purchase far above the victim's profile, near where they are, sometimes at one of
    their usual merchants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rtfd.generator.behaviour import (
    DAY_S,
    Batch,
    BehaviourParams,
    TripState,
    draw_amounts,
    finish_amounts,
    grouped_offsets,
)
from rtfd.generator.population import (
    CAT_CHANNEL,
    CATEGORY_INDEX,
    ONLINE,
    Population,
    inverse_cdf_rows,
)

FRAUD_TYPES = (
    "card_testing",
    "account_takeover",
    "compromised_merchant",
    "stolen_card_spree",
    "amount_outlier",
)
CARD_TESTING, ACCOUNT_TAKEOVER, COMPROMISED_MERCHANT, STOLEN_CARD_SPREE, AMOUNT_OUTLIER = range(
    1, 6
)


@dataclass(frozen=True)
class FraudParams:
    """Parameters of every fraud rule (documented in docs/simulator.md)."""

    # Share of fraudulent transactions per type, in FRAUD_TYPES order.
    mix: tuple[float, ...] = (0.25, 0.20, 0.20, 0.20, 0.15)
    # card testing
    ct_min_tx: int = 3
    ct_extra_mean: float = 4.0
    ct_max_tx: int = 15
    ct_gap_mean_s: float = 40.0
    ct_gap_min_s: float = 3.0
    ct_amount_median: float = 1.75
    ct_amount_sigma: float = 0.6
    ct_categories: dict[str, float] = field(
        default_factory=lambda: {"digital": 0.6, "online_retail": 0.4}
    )
    # account takeover
    ato_min_km: float = 2500.0
    ato_first_delay_s: tuple[float, float] = (300.0, 5400.0)
    ato_min_purchases: int = 2
    ato_extra_mean: float = 1.5
    ato_max_purchases: int = 6
    ato_gap_mean_s: float = 480.0
    ato_gap_min_s: float = 30.0
    ato_amount_median: float = 3.5  # times the user's usual amount for the category
    ato_amount_sigma: float = 0.5
    ato_categories: dict[str, float] = field(
        default_factory=lambda: {
            "online_electronics": 0.35,
            "online_retail": 0.30,
            "online_travel": 0.20,
            "digital": 0.15,
        }
    )
    # compromised merchant
    cm_days: tuple[float, float] = (2.0, 7.0)
    cm_share: tuple[float, float] = (0.15, 0.40)  # share of the merchant's transactions
    cm_amount_median: float = 2.2
    cm_amount_sigma: float = 0.5
    cm_time_jitter_s: float = 1200.0
    # stolen-card spree
    sp_min_tx: int = 3
    sp_extra_mean: float = 2.5
    sp_max_tx: int = 10
    sp_gap_mean_s: float = 480.0
    sp_gap_min_s: float = 60.0
    sp_start_delay_s: float = 3600.0
    sp_amount_median: float = 3.0
    sp_amount_sigma: float = 0.5
    sp_categories: dict[str, float] = field(
        default_factory=lambda: {
            "electronics": 0.25,
            "retail": 0.25,
            "cash": 0.20,
            "jewelry": 0.12,
            "fuel": 0.08,
            "entertainment": 0.10,
        }
    )
    # amount outlier
    out_amount_median: float = 15.0
    out_amount_sigma: float = 0.4
    out_usual_share: float = 0.35
    out_delay_mean_s: float = 2700.0
    out_categories: dict[str, float] = field(
        default_factory=lambda: {
            "electronics": 0.30,
            "jewelry": 0.20,
            "online_electronics": 0.20,
            "online_travel": 0.15,
            "retail": 0.15,
        }
    )

    def mean_sizes(self) -> np.ndarray:
        """Expected transactions per episode of each type (compromised merchant: per day)."""
        return np.array(
            [
                _mean_burst_size(self.ct_min_tx, self.ct_extra_mean, self.ct_max_tx),
                1
                + _mean_burst_size(
                    self.ato_min_purchases, self.ato_extra_mean, self.ato_max_purchases
                ),
                1.0,
                _mean_burst_size(self.sp_min_tx, self.sp_extra_mean, self.sp_max_tx),
                1.0,
            ]
        )


def _clipped_poisson_mean(lam: float, cap: int) -> float:
    """E[min(Poisson(lam), cap)]."""
    pmf = [math.exp(-lam) * lam**k / math.factorial(k) for k in range(cap)]
    return sum(k * p for k, p in enumerate(pmf)) + cap * (1.0 - sum(pmf))


# Three patterns are bursts: ``lo`` transactions plus a Poisson number more, at most ``hi`` in all,
# spaced by exponential gaps above a floor. These helpers hold that rule once, drawing from
# ``rng`` in the same order as the patterns always did (the output for a seed must not change).
def _mean_burst_size(lo: int, extra_mean: float, hi: int) -> float:
    """Expected size of a burst drawn by :func:`_burst_sizes`."""
    return lo + _clipped_poisson_mean(extra_mean, hi - lo)


def _burst_sizes(
    rng: np.random.Generator, n_ep: int, lo: int, extra_mean: float, hi: int
) -> np.ndarray:
    """Transactions in each of ``n_ep`` bursts: ``lo`` plus Poisson(``extra_mean``), capped."""
    return lo + np.minimum(rng.poisson(extra_mean, n_ep), hi - lo)


def _burst_gaps(rng: np.random.Generator, n: int, mean_s: float, min_s: float) -> np.ndarray:
    """Seconds before each of ``n`` burst transactions: exponential above a floor."""
    return rng.exponential(mean_s, n) + min_s


def _lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    """``n`` log-normal draws with the given median."""
    return rng.lognormal(np.log(median), sigma, n)


def _cat_table(weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    cats = np.array([CATEGORY_INDEX[k] for k in weights])
    w = np.array(list(weights.values()), dtype=float)
    return cats, np.cumsum(w) / w.sum()


def _pick(table: tuple[np.ndarray, np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray:
    cats, cdf = table
    return cats[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cats) - 1)]


@dataclass
class CompromiseState:
    """Merchants currently compromised, with their period and fraud share."""

    merchant: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    start: np.ndarray = field(default_factory=lambda: np.empty(0))
    end: np.ndarray = field(default_factory=lambda: np.empty(0))
    share: np.ndarray = field(default_factory=lambda: np.empty(0))

    def add(
        self, merchant: np.ndarray, start: np.ndarray, end: np.ndarray, share: np.ndarray
    ) -> None:
        self.merchant = np.concatenate([self.merchant, merchant])
        self.start = np.concatenate([self.start, start])
        self.end = np.concatenate([self.end, end])
        self.share = np.concatenate([self.share, share])

    def expire(self, before: float) -> None:
        keep = self.end > before
        self.merchant, self.start, self.end, self.share = (
            a[keep] for a in (self.merchant, self.start, self.end, self.share)
        )


class FraudModel:
    """The fraud rules bound to a population, with the tables they sample from."""

    def __init__(
        self,
        pop: Population,
        params: FraudParams,
        behaviour: BehaviourParams,
        fraud_rate: float,
    ) -> None:
        if not 0.0 <= fraud_rate < 1.0:
            raise ValueError("fraud_rate must be in [0, 1)")
        self.pop = pop
        self.p = params
        self.fraud_rate = fraud_rate
        mix = np.asarray(params.mix, dtype=float)
        self.mix = mix / mix.sum() if mix.sum() > 0 else mix
        self.sizes = params.mean_sizes()
        geo = pop.geo
        # Victims: a card is exposed in proportion to how much it is used.
        self.victim_cdf = np.cumsum(pop.rate) / pop.rate.sum()
        self.visit_cdf = np.cumsum(geo.visit) / geo.visit.sum()
        far = (geo.distance_km >= params.ato_min_km) * geo.visit[None, :]
        far = np.where(far.sum(axis=1, keepdims=True) > 0, far, geo.visit[None, :])
        self.far_cdf = np.cumsum(far, axis=1) / far.sum(axis=1, keepdims=True)
        self.ct_cats = _cat_table(params.ct_categories)
        self.ato_cats = _cat_table(params.ato_categories)
        self.sp_cats = _cat_table(params.sp_categories)
        self.out_cats = _cat_table(params.out_categories)
        # Card testers favour small, obscure online shops: uniform over them, not by popularity.
        ct_set = set(self.ct_cats[0].tolist())
        self.ct_pool = np.flatnonzero(np.isin(pop.merchant_cat, list(ct_set)))
        if len(self.ct_pool) == 0:
            self.ct_pool = np.arange(pop.n_merchants)
        # Compromised merchants are card-present ones, chosen by expected volume; the start rate is
        # calibrated so that the type gets its share of the fraud budget on average.
        self.cm_vol = self._expected_volume(behaviour)
        pos_vol = np.where(CAT_CHANNEL[pop.merchant_cat] != ONLINE, self.cm_vol, 0.0)
        self.cm_rate_per_day = 0.0
        if pos_vol.sum() > 0 and fraud_rate > 0 and self.mix[COMPROMISED_MERCHANT - 1] > 0:
            self.cm_cdf = np.cumsum(pos_vol) / pos_vol.sum()
            vol_sel = float((pos_vol**2).sum() / pos_vol.sum())
            lo, hi = params.cm_share
            shares = np.linspace(lo, hi, 101)
            ratio = float(np.mean(shares / (1 - shares)))
            per_episode = np.mean(params.cm_days) * vol_sel * ratio
            legit_per_day = pop.expected_tx_per_day(behaviour.followups_per_event)
            budget = (
                fraud_rate / (1 - fraud_rate) * legit_per_day * self.mix[COMPROMISED_MERCHANT - 1]
            )
            self.cm_rate_per_day = budget / per_episode if per_episode > 0 else 0.0

    def _expected_volume(self, behaviour: BehaviourParams) -> np.ndarray:
        """Expected legitimate transactions per day at each merchant from users' usual lists."""
        pop = self.pop
        pref = np.diff(np.concatenate([np.zeros((pop.n_users, 1)), pop.usual_cum], axis=1), axis=1)
        per_user = pop.rate * (1 + behaviour.followups_per_event) * pop.usual_share
        contrib = pref * per_user[:, None]
        ok = pop.usual >= 0
        vol = np.zeros(pop.n_merchants)
        np.add.at(vol, pop.usual[ok], contrib[ok])
        return vol

    # -- helpers ----------------------------------------------------------------------------
    def _victims(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.minimum(
            np.searchsorted(self.victim_cdf, rng.random(n), side="right"), self.pop.n_users - 1
        )

    def _cities(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.minimum(
            np.searchsorted(self.visit_cdf, rng.random(n), side="right"), self.pop.geo.n - 1
        )

    def _coords(
        self, pop: Population, merchant: np.ndarray, city: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Merchant coordinates for card-present, a jittered point in ``city`` for online."""
        online = CAT_CHANNEL[pop.merchant_cat[merchant]] == ONLINE
        # A fraudster's device is placed like a resident's (home spread plus device noise).
        jit = float(np.hypot(pop.params.home_jitter_deg, 0.01))
        lat = np.where(
            online, pop.geo.lat[city] + rng.normal(0, jit, len(city)), pop.merchant_lat[merchant]
        )
        lon = np.where(
            online, pop.geo.lon[city] + rng.normal(0, jit, len(city)), pop.merchant_lon[merchant]
        )
        return lat, lon

    def _located(self, merchant: np.ndarray, city: np.ndarray) -> np.ndarray:
        """The location city: the merchant's for card-present, the device's for online."""
        pop = self.pop
        online = CAT_CHANNEL[pop.merchant_cat[merchant]] == ONLINE
        return np.where(online, city, pop.merchant_city[merchant])

    def _relative_amounts(
        self,
        rng: np.random.Generator,
        victim: np.ndarray,
        merchant: np.ndarray,
        factor: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The merchants' categories, and amounts ``factor`` times the victims' usual there."""
        pop = self.pop
        mcat = pop.merchant_cat[merchant]
        return mcat, finish_amounts(draw_amounts(pop, victim, mcat, rng, factor), mcat)

    def _labelled(
        self,
        fraud_type: int,
        t: np.ndarray,
        victim: np.ndarray,
        merchant: np.ndarray,
        amount: np.ndarray,
        city: np.ndarray,
        lat: np.ndarray,
        lon: np.ndarray,
    ) -> Batch:
        """A batch of ``fraud_type`` transactions, located by :meth:`_located`."""
        return Batch(
            t,
            victim,
            merchant,
            amount,
            self._located(merchant, city),
            lat,
            lon,
            np.full(len(t), fraud_type, dtype=np.int8),
        )

    # -- the window -------------------------------------------------------------------------
    def start_compromises(
        self, comp: CompromiseState, rng: np.random.Generator, t0: float, t1: float
    ) -> None:
        """Begin new merchant compromises in [t0, t1)."""
        if self.cm_rate_per_day <= 0:
            return
        n = rng.poisson(self.cm_rate_per_day * (t1 - t0) / DAY_S)
        if n == 0:
            return
        m = np.minimum(
            np.searchsorted(self.cm_cdf, rng.random(n), side="right"), self.pop.n_merchants - 1
        )
        start = t0 + rng.random(n) * (t1 - t0)
        end = start + rng.uniform(*self.p.cm_days, n) * DAY_S
        comp.add(m, start, end, rng.uniform(*self.p.cm_share, n))

    def window(
        self,
        legit: Batch,
        trips: TripState,
        comp: CompromiseState,
        rng: np.random.Generator,
        t0: float,
        t1: float,
    ) -> Batch:
        """Every fraudulent transaction of [t0, t1), given the window's legitimate ones."""
        if self.fraud_rate <= 0 or len(legit) == 0:
            return Batch.empty()
        target = self.fraud_rate / (1 - self.fraud_rate) * len(legit)
        episodes = rng.poisson(target * self.mix / self.sizes)
        parts = [
            self.card_testing(rng, t0, t1, int(episodes[CARD_TESTING - 1])),
            self.account_takeover(legit, rng, int(episodes[ACCOUNT_TAKEOVER - 1])),
            self.compromised_merchant(legit, comp, rng, t0, t1),
            self.stolen_card_spree(legit, trips, rng, int(episodes[STOLEN_CARD_SPREE - 1])),
            self.amount_outlier(legit, rng, int(episodes[AMOUNT_OUTLIER - 1])),
        ]
        return Batch.concat([b for b in parts if len(b)])

    def card_testing(self, rng: np.random.Generator, t0: float, t1: float, n_ep: int) -> Batch:
        p, pop = self.p, self.pop
        if n_ep == 0:
            return Batch.empty()
        size = _burst_sizes(rng, n_ep, p.ct_min_tx, p.ct_extra_mean, p.ct_max_tx)
        victim = np.repeat(self._victims(rng, n_ep), size)
        city = np.repeat(self._cities(rng, n_ep), size)
        n = len(victim)
        gaps = _burst_gaps(rng, n, p.ct_gap_mean_s, p.ct_gap_min_s)
        t = np.repeat(t0 + rng.random(n_ep) * (t1 - t0), size) + grouped_offsets(size, gaps)
        merchant = self.ct_pool[rng.integers(0, len(self.ct_pool), n)]
        cat = pop.merchant_cat[merchant]
        raw = _lognormal(rng, p.ct_amount_median, p.ct_amount_sigma, n)
        lat, lon = self._coords(pop, merchant, city, rng)
        return self._labelled(
            CARD_TESTING, t, victim, merchant, finish_amounts(raw, cat), city, lat, lon
        )

    def account_takeover(self, legit: Batch, rng: np.random.Generator, n_ep: int) -> Batch:
        p, pop = self.p, self.pop
        if n_ep == 0:
            return Batch.empty()
        anchor = rng.integers(0, len(legit), n_ep)
        victim_ep = legit.user[anchor]
        far_city = inverse_cdf_rows(self.far_cdf[legit.city[anchor]], rng.random(n_ep))
        first_t = legit.t[anchor] + rng.uniform(*p.ato_first_delay_s, n_ep)
        n_hv = _burst_sizes(rng, n_ep, p.ato_min_purchases, p.ato_extra_mean, p.ato_max_purchases)
        size = 1 + n_hv
        victim = np.repeat(victim_ep, size)
        city = np.repeat(far_city, size)
        n = len(victim)
        gaps = _burst_gaps(rng, n, p.ato_gap_mean_s, p.ato_gap_min_s)
        first = np.zeros(n, dtype=bool)
        first[np.cumsum(size) - size] = True
        gaps[first] = 0.0  # the first transaction is the one at first_t
        t = np.repeat(first_t, size) + grouped_offsets(size, gaps)
        # The first transaction is an ordinary-looking one; then high-value purchases.
        cat = np.where(first, CATEGORY_INDEX["digital"], _pick(self.ato_cats, rng, n))
        merchant = pop.sample_merchants(city, cat, rng.random(n))
        factor = np.where(first, 1.0, _lognormal(rng, p.ato_amount_median, p.ato_amount_sigma, n))
        _, amount = self._relative_amounts(rng, victim, merchant, factor)
        lat, lon = self._coords(pop, merchant, city, rng)
        return self._labelled(ACCOUNT_TAKEOVER, t, victim, merchant, amount, city, lat, lon)

    def compromised_merchant(
        self, legit: Batch, comp: CompromiseState, rng: np.random.Generator, t0: float, t1: float
    ) -> Batch:
        p, pop = self.p, self.pop
        parts: list[Batch] = []
        for m, s, e, share in zip(comp.merchant, comp.start, comp.end, comp.share, strict=True):
            o0, o1 = max(s, t0), min(e, t1)
            if o1 <= o0:
                continue
            at = np.flatnonzero((legit.merchant == m) & (legit.t >= o0) & (legit.t < o1))
            n = rng.poisson(share / (1 - share) * len(at)) if len(at) else 0
            if n == 0:
                continue
            # Fraud follows the merchant's own opening hours: near its genuine transactions.
            t = legit.t[rng.choice(at, n)] + rng.normal(0, p.cm_time_jitter_s, n)
            t = np.clip(t, o0, np.nextafter(o1, o0))
            victim = self._victims(rng, n)
            merchant = np.full(n, m, dtype=np.int64)
            factor = _lognormal(rng, p.cm_amount_median, p.cm_amount_sigma, n)
            _, amount = self._relative_amounts(rng, victim, merchant, factor)
            city = np.full(n, pop.merchant_city[m], dtype=np.int64)
            parts.append(
                Batch(
                    t,
                    victim,
                    merchant,
                    amount,
                    city,
                    pop.merchant_lat[merchant],
                    pop.merchant_lon[merchant],
                    np.full(n, COMPROMISED_MERCHANT, dtype=np.int8),
                )
            )
        return Batch.concat(parts)

    def stolen_card_spree(
        self, legit: Batch, trips: TripState, rng: np.random.Generator, n_ep: int
    ) -> Batch:
        p, pop = self.p, self.pop
        if n_ep == 0:
            return Batch.empty()
        # Thieves shop when shops are open: start near a random genuine purchase's time.
        start = legit.t[rng.integers(0, len(legit), n_ep)] + rng.random(n_ep) * p.sp_start_delay_s
        victim_ep = self._victims(rng, n_ep)
        city_ep = trips.city_at(pop, victim_ep, start)
        size = _burst_sizes(rng, n_ep, p.sp_min_tx, p.sp_extra_mean, p.sp_max_tx)
        victim = np.repeat(victim_ep, size)
        city = np.repeat(city_ep, size)
        n = len(victim)
        gaps = _burst_gaps(rng, n, p.sp_gap_mean_s, p.sp_gap_min_s)
        t = np.repeat(start, size) + grouped_offsets(size, gaps)
        cat = _pick(self.sp_cats, rng, n)
        merchant = pop.sample_merchants(city, cat, rng.random(n))
        factor = _lognormal(rng, p.sp_amount_median, p.sp_amount_sigma, n)
        _, amount = self._relative_amounts(rng, victim, merchant, factor)
        lat, lon = self._coords(pop, merchant, city, rng)
        return self._labelled(STOLEN_CARD_SPREE, t, victim, merchant, amount, city, lat, lon)

    def amount_outlier(self, legit: Batch, rng: np.random.Generator, n: int) -> Batch:
        p, pop = self.p, self.pop
        if n == 0:
            return Batch.empty()
        anchor = rng.integers(0, len(legit), n)
        victim = legit.user[anchor]
        city = legit.city[anchor]
        t = legit.t[anchor] + rng.exponential(p.out_delay_mean_s, n)
        cat = _pick(self.out_cats, rng, n)
        merchant = pop.sample_merchants(city, cat, rng.random(n))
        at_home = city == pop.home[victim]
        usual = at_home & (rng.random(n) < p.out_usual_share)
        merchant[usual] = pop.sample_usual(victim[usual], rng.random(int(usual.sum())))
        factor = _lognormal(rng, p.out_amount_median, p.out_amount_sigma, n)
        mcat, amount = self._relative_amounts(rng, victim, merchant, factor)
        lat, lon = self._coords(pop, merchant, city, rng)
        # Online from home: the device is the victim's (the fraud rides the victim's session).
        online_home = at_home & (CAT_CHANNEL[mcat] == ONLINE)
        lat[online_home] = pop.home_lat[victim[online_home]] + rng.normal(
            0, 0.01, int(online_home.sum())
        )
        lon[online_home] = pop.home_lon[victim[online_home]] + rng.normal(
            0, 0.01, int(online_home.sum())
        )
        return self._labelled(AMOUNT_OUTLIER, t, victim, merchant, amount, city, lat, lon)
