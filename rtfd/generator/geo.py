"""Real cities with coordinates, time zones and weights, and great-circle distances.

Home cities are where simulated card holders live (Europe and North America, currencies of similar
magnitude so that amounts are comparable across users). Every city, including the travel-only ones,
can be a destination of a legitimate trip or the place a fraudster operates from; both draw with
the same ``visit`` weights so that a city name alone says nothing about the label.

UTC offsets are standard time rounded to whole hours (no daylight saving time): they only shape the
daily rhythm of the people who live there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class City:
    """One city: name (the ``location`` field), position, and how it is used by the simulator."""

    name: str
    country: str
    lat: float
    lon: float
    utc_offset: int
    population_m: float  # metro population (millions): weight as a home city
    visit: float  # relative weight as a travel destination (and as a fraudster's location)
    currency: str | None  # card currency of the people who live here; None = not a home city


# fmt: off
CITIES: tuple[City, ...] = (
    # Europe (home cities)
    City("Paris", "FR", 48.8566, 2.3522, 1, 11.0, 10.0, "EUR"),
    City("Berlin", "DE", 52.5200, 13.4050, 1, 3.6, 5.0, "EUR"),
    City("Madrid", "ES", 40.4168, -3.7038, 1, 6.6, 5.0, "EUR"),
    City("Rome", "IT", 41.9028, 12.4964, 1, 4.3, 7.0, "EUR"),
    City("Milan", "IT", 45.4642, 9.1900, 1, 3.1, 4.0, "EUR"),
    City("Barcelona", "ES", 41.3874, 2.1686, 1, 5.6, 7.0, "EUR"),
    City("Amsterdam", "NL", 52.3676, 4.9041, 1, 2.4, 6.0, "EUR"),
    City("Brussels", "BE", 50.8503, 4.3517, 1, 2.1, 3.0, "EUR"),
    City("Vienna", "AT", 48.2082, 16.3738, 1, 1.9, 4.0, "EUR"),
    City("Munich", "DE", 48.1351, 11.5820, 1, 2.6, 3.0, "EUR"),
    City("Hamburg", "DE", 53.5511, 9.9937, 1, 1.8, 2.0, "EUR"),
    City("Frankfurt", "DE", 50.1109, 8.6821, 1, 2.3, 3.0, "EUR"),
    City("Lyon", "FR", 45.7640, 4.8357, 1, 1.7, 2.0, "EUR"),
    City("Marseille", "FR", 43.2965, 5.3698, 1, 1.6, 2.0, "EUR"),
    City("Lisbon", "PT", 38.7223, -9.1393, 0, 2.9, 5.0, "EUR"),
    City("Dublin", "IE", 53.3498, -6.2603, 0, 1.4, 3.0, "EUR"),
    City("Helsinki", "FI", 60.1699, 24.9384, 2, 1.3, 1.5, "EUR"),
    City("Athens", "GR", 37.9838, 23.7275, 2, 3.2, 4.0, "EUR"),
    City("London", "GB", 51.5074, -0.1278, 0, 9.5, 10.0, "GBP"),
    City("Manchester", "GB", 53.4808, -2.2426, 0, 2.8, 2.0, "GBP"),
    City("Zurich", "CH", 47.3769, 8.5417, 1, 1.4, 2.5, "CHF"),
    # North America (home cities)
    City("New York", "US", 40.7128, -74.0060, -5, 19.0, 10.0, "USD"),
    City("Los Angeles", "US", 34.0522, -118.2437, -8, 12.5, 6.0, "USD"),
    City("Chicago", "US", 41.8781, -87.6298, -6, 9.5, 4.0, "USD"),
    City("Houston", "US", 29.7604, -95.3698, -6, 7.1, 2.0, "USD"),
    City("Phoenix", "US", 33.4484, -112.0740, -7, 4.9, 1.5, "USD"),
    City("Philadelphia", "US", 39.9526, -75.1652, -5, 6.2, 1.5, "USD"),
    City("San Francisco", "US", 37.7749, -122.4194, -8, 4.7, 5.0, "USD"),
    City("Seattle", "US", 47.6062, -122.3321, -8, 4.0, 2.0, "USD"),
    City("Miami", "US", 25.7617, -80.1918, -5, 6.1, 5.0, "USD"),
    City("Atlanta", "US", 33.7490, -84.3880, -5, 6.1, 1.5, "USD"),
    City("Boston", "US", 42.3601, -71.0589, -5, 4.9, 2.5, "USD"),
    City("Denver", "US", 39.7392, -104.9903, -7, 3.0, 1.5, "USD"),
    City("Dallas", "US", 32.7767, -96.7970, -6, 7.6, 1.5, "USD"),
    City("Toronto", "CA", 43.6532, -79.3832, -5, 6.2, 3.0, "CAD"),
    City("Montreal", "CA", 45.5017, -73.5673, -5, 4.3, 2.5, "CAD"),
    City("Vancouver", "CA", 49.2827, -123.1207, -8, 2.6, 2.5, "CAD"),
    # Travel destinations only
    City("Stockholm", "SE", 59.3293, 18.0686, 1, 2.4, 2.5, None),
    City("Copenhagen", "DK", 55.6761, 12.5683, 1, 2.1, 2.5, None),
    City("Oslo", "NO", 59.9139, 10.7522, 1, 1.1, 1.5, None),
    City("Warsaw", "PL", 52.2297, 21.0122, 1, 3.1, 2.0, None),
    City("Prague", "CZ", 50.0755, 14.4378, 1, 2.7, 4.0, None),
    City("Budapest", "HU", 47.4979, 19.0402, 1, 1.8, 3.0, None),
    City("Istanbul", "TR", 41.0082, 28.9784, 3, 15.5, 5.0, None),
    City("Moscow", "RU", 55.7558, 37.6173, 3, 12.5, 1.5, None),
    City("Dubai", "AE", 25.2048, 55.2708, 4, 3.5, 4.0, None),
    City("Cairo", "EG", 30.0444, 31.2357, 2, 21.3, 1.5, None),
    City("Marrakesh", "MA", 31.6295, -7.9811, 0, 1.0, 2.0, None),
    City("Cape Town", "ZA", -33.9249, 18.4241, 2, 4.6, 1.5, None),
    City("Lagos", "NG", 6.5244, 3.3792, 1, 15.4, 0.8, None),
    City("Mumbai", "IN", 19.0760, 72.8777, 5, 20.7, 1.5, None),
    City("Bangkok", "TH", 13.7563, 100.5018, 7, 10.7, 3.5, None),
    City("Singapore", "SG", 1.3521, 103.8198, 8, 5.9, 2.5, None),
    City("Hong Kong", "HK", 22.3193, 114.1694, 8, 7.5, 2.5, None),
    City("Tokyo", "JP", 35.6762, 139.6503, 9, 37.0, 4.0, None),
    City("Seoul", "KR", 37.5665, 126.9780, 9, 9.9, 2.0, None),
    City("Sydney", "AU", -33.8688, 151.2093, 10, 5.3, 2.5, None),
    City("Mexico City", "MX", 19.4326, -99.1332, -6, 21.8, 2.0, None),
    City("Cancun", "MX", 21.1619, -86.8515, -5, 0.9, 3.0, None),
    City("Sao Paulo", "BR", -23.5505, -46.6333, -3, 22.4, 1.5, None),
    City("Buenos Aires", "AR", -34.6037, -58.3816, -3, 15.2, 1.5, None),
)
# fmt: on


@dataclass(frozen=True)
class Geography:
    """The city table as arrays, with the pairwise distance matrix."""

    names: np.ndarray  # object array of str
    lat: np.ndarray
    lon: np.ndarray
    utc_offset: np.ndarray  # int
    population: np.ndarray
    visit: np.ndarray
    currency: np.ndarray  # object array; None for travel-only cities
    distance_km: np.ndarray  # (C, C)

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def home_cities(self) -> np.ndarray:
        """Indices of cities where simulated users may live."""
        return np.flatnonzero(np.array([c is not None for c in self.currency]))


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km (vectorised)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def geography(cities: tuple[City, ...] = CITIES) -> Geography:
    """The city table as arrays."""
    lat = np.array([c.lat for c in cities])
    lon = np.array([c.lon for c in cities])
    dist = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    return Geography(
        names=np.array([c.name for c in cities], dtype=object),
        lat=lat,
        lon=lon,
        utc_offset=np.array([c.utc_offset for c in cities], dtype=np.int64),
        population=np.array([c.population_m for c in cities]),
        visit=np.array([c.visit for c in cities]),
        currency=np.array([c.currency for c in cities], dtype=object),
        distance_km=dist,
    )
