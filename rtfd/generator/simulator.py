"""The simulator: a population, its behaviour and fraud models, and the state between windows.

Time is simulated in windows (a day offline, shorter in live mode). Each window draws its own
random stream from ``(seed, window index)``, so a run is reproducible, while trips and merchant
compromises that outlast a window are carried in :class:`Simulator` state.
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
from rtfd.generator.population import Population, PopulationParams, build_population

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
    ) -> None:
        self.pop = population
        self.seed = seed
        self.fraud_rate = fraud_rate
        self.behaviour = behaviour or BehaviourParams()
        self.fraud_params = fraud or FraudParams()
        self.fraud_model = FraudModel(population, self.fraud_params, self.behaviour, fraud_rate)
        self.trips = TripState.empty(population.n_users)
        self.compromises = CompromiseState()
        self._destinations = destination_cdfs(population, self.behaviour)
        self._warm = False

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
        """A simulator over a freshly drawn population."""
        pop = build_population(seed, users, merchants, population_params)
        return cls(pop, seed=seed, fraud_rate=fraud_rate, behaviour=behaviour, fraud=fraud)

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int | None = None) -> Simulator:
        """A simulator sized by the generator settings."""
        return cls.create(
            seed=settings.generator_seed if seed is None else seed,
            users=settings.generator_users,
            merchants=settings.generator_merchants,
            fraud_rate=settings.generator_fraud_rate,
        )

    def expected_tx_per_day(self) -> float:
        """All transactions (legitimate and fraudulent) per simulated day, on average."""
        legit = self.pop.expected_tx_per_day(self.behaviour.followups_per_event)
        return legit / (1.0 - self.fraud_rate)

    def window(self, t0: float, t1: float, index: int) -> Batch:
        """Every transaction with event time in [t0, t1) (bursts may run a little past t1),
        sorted by time. ``index`` names the window's random stream: use each index once."""
        if not self._warm:
            self._warm_up(t0)
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
