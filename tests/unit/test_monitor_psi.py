"""PSI over the reference's quantile bins: known values, drift, empty bins, constants, NaNs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtfd.ml.psi import (
    EPSILON,
    Band,
    Bins,
    band,
    bin_counts,
    psi,
    psi_of,
    quantile_edges,
    reference_bins,
)

pytestmark = pytest.mark.unit


def normal(mean: float = 0.0, n: int = 100_000, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 1.0, n)


def test_a_hand_computed_psi() -> None:
    """Two bins, 50/50 against 25/75: (−0.25)·ln(0.5) + 0.25·ln(1.5)."""
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert psi([50, 50], [25, 75]) == pytest.approx(expected)  # counts are normalised
    assert psi([0.25, 0.75], [0.5, 0.5]) == pytest.approx(expected)  # symmetric


def test_identical_samples_have_a_psi_of_zero() -> None:
    x = normal()
    assert psi_of(reference_bins(x), x) == pytest.approx(0.0, abs=1e-12)


def test_two_samples_of_one_distribution_are_stable() -> None:
    value = psi_of(reference_bins(normal(seed=1)), normal(seed=2))
    assert value < 0.01
    assert band(value) is Band.STABLE


@pytest.mark.parametrize(
    ("shift", "expected"),
    [(0.05, Band.STABLE), (0.4, Band.MODERATE), (1.0, Band.SIGNIFICANT), (3.0, Band.SIGNIFICANT)],
)
def test_a_shifted_mean_lands_in_its_band(shift: float, expected: Band) -> None:
    value = psi_of(reference_bins(normal()), normal(shift, seed=2))
    assert band(value) is expected, value


def test_psi_grows_with_the_shift() -> None:
    ref = reference_bins(normal())
    values = [psi_of(ref, normal(s, seed=3)) for s in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert values == sorted(values)
    assert values[-1] > 0.25


def test_ten_quantile_bins_hold_a_tenth_each_and_the_outside_none() -> None:
    ref = reference_bins(normal())
    assert len(ref.edges) == 11  # 9 quantiles, just below the minimum, the maximum
    assert ref.shares[0] == 0.0 and ref.shares[-2] == 0.0  # below the minimum, above the maximum
    assert np.allclose(ref.shares[1:-2], 0.1, atol=1e-4)
    assert ref.shares[-1] == 0.0  # no missing values


def test_values_outside_the_training_range_are_drift() -> None:
    ref = reference_bins(np.random.default_rng(2).uniform(0, 1, 10_000))
    assert band(psi_of(ref, np.random.default_rng(3).uniform(1, 2, 1000))) is Band.SIGNIFICANT
    assert band(psi_of(ref, np.random.default_rng(3).uniform(-2, 0, 1000))) is Band.SIGNIFICANT


@pytest.mark.parametrize("live", [np.full(1000, 5.0), np.full(1000, -5.0), np.full(3, 0.0)])
def test_empty_bins_on_either_side_keep_the_psi_finite(live: np.ndarray) -> None:
    value = psi_of(reference_bins(normal()), live)
    assert math.isfinite(value) and value > 0.25


def test_a_bin_empty_on_both_sides_adds_nothing() -> None:
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert psi([0.5, 0.5, 0.0], [0.4, 0.6, 0.0]) == pytest.approx(psi([0.5, 0.5], [0.4, 0.6]))


def test_an_empty_bin_is_floored_at_epsilon() -> None:
    expected = (0.5 - EPSILON) * math.log(0.5 / EPSILON) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    assert psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(expected)


@pytest.mark.parametrize("value", [0.0, 3.5, -1e9])
def test_a_constant_feature_drifts_when_it_moves_either_way(value: float) -> None:
    ref = reference_bins(np.full(5000, value))
    assert ref.edges == (np.nextafter(value, -np.inf), value)  # below, at, above the value
    assert ref.shares == (0.0, 1.0, 0.0, 0.0)
    assert psi_of(ref, np.full(700, value)) == 0.0
    for moved in (value + 1.0, value - 1.0, value + abs(value) * 1e-6 + 1e-9):
        drift = psi_of(ref, np.full(700, moved))
        assert math.isfinite(drift) and band(drift) is Band.SIGNIFICANT, moved


def test_a_binary_feature_gets_a_bin_per_value() -> None:
    rng = np.random.default_rng(4)
    flags = (rng.random(50_000) < 0.2).astype(float)
    ref = reference_bins(flags)
    assert len(ref.edges) <= 4
    assert sum(s > 0 for s in ref.shares) == 2
    assert psi_of(ref, (rng.random(50_000) < 0.2).astype(float)) < 0.01
    assert band(psi_of(ref, (rng.random(50_000) < 0.6).astype(float))) is Band.SIGNIFICANT


def test_nans_have_their_own_bin() -> None:
    x = normal()
    x[:10_000] = np.nan  # 10 % missing in the reference
    ref = reference_bins(x)
    assert ref.shares[-1] == pytest.approx(0.1)
    assert len(ref.edges) == 11  # the quantiles ignore the NaNs
    live = normal(seed=9)
    live[:10_000] = np.nan
    assert psi_of(ref, live) < 0.01
    live[:60_000] = np.nan  # a feature that starts arriving empty is drift
    assert band(psi_of(ref, live)) is Band.SIGNIFICANT


def test_an_all_missing_reference_has_no_edges() -> None:
    ref = reference_bins(np.full(100, np.nan))
    assert ref.edges == () and ref.shares == (0.0, 1.0)
    assert psi_of(ref, np.full(10, np.nan)) == 0.0
    assert band(psi_of(ref, np.ones(10))) is Band.SIGNIFICANT


def test_bin_counts_follow_the_edge_rule() -> None:
    """edges[i-1] < x <= edges[i]: a value on an edge belongs to the bin below it."""
    counts = bin_counts(np.array([-1.0, 0.0, 0.5, 1.0, 1.5, np.inf, -np.inf, np.nan]), (0.0, 1.0))
    assert counts.tolist() == [3, 2, 2, 1]


def test_quantile_edges_need_two_bins() -> None:
    with pytest.raises(ValueError):
        quantile_edges(normal(), 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, Band.STABLE),
        (0.0999, Band.STABLE),
        (0.1, Band.MODERATE),
        (0.25, Band.MODERATE),
        (0.2501, Band.SIGNIFICANT),
        (9.0, Band.SIGNIFICANT),
    ],
)
def test_the_bands(value: float, expected: Band) -> None:
    assert band(value) is expected


def test_psi_refuses_bins_that_do_not_match() -> None:
    with pytest.raises(ValueError, match="bins"):
        psi([0.5, 0.5], [1.0, 0.0, 0.0])


def test_bins_round_trip_through_json() -> None:
    ref = reference_bins(normal())
    assert Bins.from_dict(ref.to_dict()) == ref


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"edges": [], "shares": [1.0]},  # one share short
        {"edges": [1.0, 0.0], "shares": [0.25, 0.25, 0.5, 0.0]},  # edges decrease
        {"edges": [1.0, 1.0], "shares": [0.25, 0.25, 0.5, 0.0]},  # repeated edge
        {"edges": [0.0], "shares": [0.5, 0.6, 0.0]},  # sums to 1.1
        {"edges": [0.0], "shares": [-0.5, 1.5, 0.0]},  # negative share
        {"edges": ["0"], "shares": [0.5, 0.5, 0.0]},  # a string
        {"edges": [True], "shares": [0.5, 0.5, 0.0]},  # a boolean
        {"edges": [0.0], "shares": [0.5, None, 0.5]},
        {"edges": {"0": 1}, "shares": [1.0, 0.0]},
        {"edges": [1e400], "shares": [0.5, 0.5, 0.0]},  # inf
    ],
)
def test_malformed_bins_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Bins.from_dict(doc)
