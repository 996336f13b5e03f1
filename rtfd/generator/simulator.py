"""The simulator: a population, its behaviour and fraud models, and the state between windows.

Time is simulated in windows (a day offline, shorter in live mode). Each window draws its own
random stream from ``(seed, window index)``, so a run is reproducible, while trips and merchant
compromises that outlast a window are carried in :class:`Simulator` state.

A simulator over a :class:`~rtfd.generator.population.World` can change how many cards are
active between windows (:meth:`Simulator.set_cards`): the live generator brings cards in when
its rate goes up and lets them go idle when it goes down. A card's own behaviour (its rate, its
merchants, its trips) never depends on how many others are active.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rtfd.generator.behaviour import (
    DAY_S,
    Batch,
    BehaviourParams,
    TripState,
    destination_cdfs,
    legit_window,
    start_trips,
)
from rtfd.generator.fraud import CompromiseState, FraudModel, FraudParams
from rtfd.generator.population import Population, PopulationParams, World, mean_base_rate

if TYPE_CHECKING:
    from rtfd.config import Settings

_WINDOW_STREAM = 0x57494E  # "WIN": keeps window streams apart from the population's
_WARM_UP_STREAM = 0x57524D  # "WRM"
_WARM_UP_DAYS = 28.0  # longer than any trip (21 days + transit) or compromise


class Simulator:
    """Draws transactions window by window; deterministic for a seed and a window sequence."""

    def __init__(
        self,
        population: Population,
        *,
        seed: int = 42,
        fraud_rate: float = 0.01,
        behaviour: BehaviourParams | None = None,
        fraud: FraudParams | None = None,
        world: World | None = None,
    ) -> None:
        self.pop = population
        self.world = world
        self.seed = seed
        self.fraud_rate = fraud_rate
        self.behaviour = behaviour or BehaviourParams()
        self.fraud_params = fraud or FraudParams()
        self.fraud_model = FraudModel(population, self.fraud_params, self.behaviour, fraud_rate)
        self._all_trips = TripState.empty(population.n_users)
        self.trips = self._all_trips
        self.compromises = CompromiseState()
        self._destinations = destination_cdfs(population, self.behaviour)
        self._warm = False
        self._warm_cards = 0  # cards whose trips were started in their steady state

    @classmethod
    def create(
        cls,
        *,
        seed: int = 42,
        users: int = 10_000,
        merchants: int = 2_000,
        fraud_rate: float = 0.01,
        population_params: PopulationParams | None = None,
        behaviour: BehaviourParams | None = None,
        fraud: FraudParams | None = None,
    ) -> Simulator:
        """A simulator over the first ``users`` cards of a freshly drawn world."""
        world = World(seed, merchants, population_params)
        return cls(
            world.population(users),
            seed=seed,
            fraud_rate=fraud_rate,
            behaviour=behaviour,
            fraud=fraud,
            world=world,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, seed: int | None = None, users: int | None = None
    ) -> Simulator:
        """A simulator sized by the generator settings (``users`` cards active, default
        ``generator_users``)."""
        return cls.create(
            seed=settings.generator_seed if seed is None else seed,
            users=settings.generator_users if users is None else users,
            merchants=settings.generator_merchants,
            fraud_rate=settings.generator_fraud_rate,
        )

    @property
    def cards(self) -> int:
        """Cards active now."""
        return self.pop.n_users

    def expected_tx_per_day(self) -> float:
        """All transactions (legitimate and fraudulent) per simulated day, on average."""
        legit = self.pop.expected_tx_per_day(self.behaviour.followups_per_event)
        return legit / (1.0 - self.fraud_rate)

    def set_cards(self, n: int) -> None:
        """Make the first ``n`` cards of the world the active ones (from the next window on).

        Cards beyond ``n`` go idle and keep their state (a trip goes on while idle); cards that
        come back, or join for the first time, are drawn by the world. Costs a few seconds for
        hundreds of thousands of new cards (``World.population`` can be called beforehand, from
        another thread, to build them).
        """
        if self.world is None:
            raise ValueError("this simulator has a fixed population (no world to draw from)")
        if n == self.cards:
            return
        pop = self.world.population(n)
        if n > self._all_trips.n_users:
            self._all_trips = self._all_trips.extended(n)
        self.trips = self._all_trips.view(n)
        self.pop = pop
        self.fraud_model = FraudModel(pop, self.fraud_params, self.behaviour, self.fraud_rate)

    def window(self, t0: float, t1: float, index: int) -> Batch:
        """Every transaction with event time in [t0, t1) (bursts may run a little past t1),
        sorted by time. ``index`` names the window's random stream: use each index once."""
        if not self._warm:
            self._warm_up(t0)
        if self._warm_cards < self.cards:
            self._warm_up_cards(t0)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _WINDOW_STREAM, index]))
        start_trips(self.pop, self.trips, self.behaviour, self._destinations, rng, t0, t1)
        self.fraud_model.start_compromises(self.compromises, rng, t0, t1)
        legit = legit_window(self.pop, self.trips, self.behaviour, rng, t0, t1)
        fraud = self.fraud_model.window(legit, self.trips, self.compromises, rng, t0, t1)
        self.compromises.expire(t1)
        return Batch.concat([legit, fraud]).sorted()

    def _warm_up(self, t0: float) -> None:
        """Start the world in its steady state: some users are already travelling and some
        merchants already compromised when the first window opens, instead of everybody at home
        and every merchant clean for the first days."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _WARM_UP_STREAM]))
        before = t0 - _WARM_UP_DAYS * DAY_S
        start_trips(self.pop, self.trips, self.behaviour, self._destinations, rng, before, t0)
        self.fraud_model.start_compromises(self.compromises, rng, before, t0)
        self.compromises.expire(t0)
        self._warm = True
        self._warm_cards = self.cards

    def _warm_up_cards(self, t0: float) -> None:
        """Cards that join later start in their steady state too (some already away)."""
        a, b = self._warm_cards, self.cards
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _WARM_UP_STREAM, a, b]))
        start_trips(
            self.pop.cards(a, b),
            self._all_trips.view(a, b),
            self.behaviour,
            self._destinations,
            rng,
            t0 - _WARM_UP_DAYS * DAY_S,
            t0,
        )
        self._warm_cards = b


def expected_card_tx_per_day(
    fraud_rate: float = 0.01,
    behaviour: BehaviourParams | None = None,
    population: PopulationParams | None = None,
) -> float:
    """Transactions one card makes per simulated day on average (fraud on it included): the
    pace that the live time-lapse multiplies, whatever the number of cards."""
    b = behaviour or BehaviourParams()
    return mean_base_rate(population) * (1.0 + b.followups_per_event) / (1.0 - fraud_rate)
