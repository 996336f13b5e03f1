"""Offline mode: a simulated history on a simulated clock, with ground truth, as a DataFrame or
Parquet file.

The history has every TRANSACTION field plus ``label`` (1 = fraud) and ``fraud_type`` (null for
legitimate transactions). The same seed and arguments give an identical frame and file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rtfd.generator.behaviour import DAY_S, Batch
from rtfd.generator.fraud import FRAUD_TYPES
from rtfd.generator.population import CAT_CHANNEL, CHANNELS, Population
from rtfd.generator.simulator import Simulator
from rtfd.schemas import LABEL, TRANSACTION

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from rtfd.progress import Progress

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_COLUMNS = [*TRANSACTION.names, "label", "fraud_type"]
GROUND_TRUTH = ("label", "fraud_type")
_ID_STREAM = 0x4944  # "ID"
_LABEL_STREAM = 0x4C4142  # "LAB"
ID_BYTES = 12


def new_transaction_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random transaction ids (``tx_`` + 24 hex digits), as an object array of str."""
    if n == 0:
        return np.empty(0, dtype=object)
    hexed = rng.bytes(ID_BYTES * n).hex().encode("ascii")
    arr = np.frombuffer(hexed, dtype=f"S{2 * ID_BYTES}").astype(f"U{2 * ID_BYTES}")
    return np.char.add("tx_", arr).astype(object)


def _fraud_type_names(codes: np.ndarray) -> np.ndarray:
    names = np.array([None, *FRAUD_TYPES], dtype=object)
    return names[codes.astype(np.int64)]


def batch_to_frame(pop: Population, batch: Batch, ids: np.ndarray) -> pd.DataFrame:
    """The batch as a history frame (TRANSACTION fields + ground truth), rows in batch order."""
    import pandas as pd

    ms = np.floor(batch.t * 1000.0).astype(np.int64)
    ts = pd.Series(ms.astype("datetime64[ms]")).dt.tz_localize("UTC")
    channels = np.array(CHANNELS, dtype=object)
    return pd.DataFrame(
        {
            "transaction_id": ids,
            "user_id": pop.user_ids[batch.user],
            "merchant_id": pop.merchant_ids[batch.merchant],
            "amount": batch.amount,
            "currency": pop.currency[batch.user],
            "location": pop.geo.names[batch.city],
            "lat": np.round(batch.lat, 5),
            "lon": np.round(batch.lon, 5),
            "channel": channels[CAT_CHANNEL[pop.merchant_cat[batch.merchant]]],
            "timestamp": ts,
            "label": (batch.fraud > 0).astype(np.int8),
            "fraud_type": _fraud_type_names(batch.fraud),
        }
    )


def simulate_history(
    days: float,
    *,
    seed: int = 42,
    users: int = 10_000,
    merchants: int = 2_000,
    fraud_rate: float = 0.01,
    start: datetime | None = None,
    time_scale: float = 1.0,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Simulate ``days`` of card traffic from ``start`` (default 2026-01-01 UTC; naive = UTC).

    Returns a frame sorted by timestamp with the TRANSACTION fields (timestamp as tz-aware UTC
    ``datetime64[ms]``), ``label`` (int8, 1 = fraud) and ``fraud_type`` (None for legitimate).
    ``time_scale`` > 1 compresses event time by that factor after ``start``, as the live
    generator's time-lapse does (``generator_time_scale``, see :mod:`rtfd.generator.live`): the same
    transactions, ``days / time_scale`` days apart. ``progress(message, fraction)`` (the one
    progress signature, :mod:`rtfd.progress`) is called after each simulated day.
    """
    if days <= 0:
        raise ValueError("days must be > 0")
    if not time_scale > 0:
        raise ValueError("time_scale must be > 0")
    first = start or DEFAULT_START
    if first.tzinfo is None:
        first = first.replace(tzinfo=UTC)  # naive means UTC, as everywhere in rtfd
    begin = first.timestamp()
    end = begin + days * DAY_S
    sim = Simulator.create(seed=seed, users=users, merchants=merchants, fraud_rate=fraud_rate)
    batches = []
    n_windows = int(np.ceil(days))
    for i in range(n_windows):
        t0 = begin + i * DAY_S
        batches.append(sim.window(t0, min(t0 + DAY_S, end), i))
        if progress is not None:
            progress(f"simulating {days:g} days of traffic", (i + 1) / n_windows)
    batch = Batch.concat(batches)
    batch = batch.take(np.flatnonzero(batch.t < end)).sorted()
    if time_scale != 1.0:
        batch.t = begin + (batch.t - begin) / time_scale
    rng = np.random.default_rng(np.random.SeedSequence([seed, _ID_STREAM]))
    return batch_to_frame(sim.pop, batch, new_transaction_ids(rng, len(batch)))


def history_arrow_schema() -> pa.Schema:
    """Arrow schema of a history file: TRANSACTION fields plus the ground-truth columns."""
    import pyarrow as pa

    schema = TRANSACTION.arrow_schema()
    return schema.append(pa.field("label", pa.int8(), nullable=False)).append(
        pa.field("fraud_type", pa.string(), nullable=True)
    )


def write_history(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a history frame to Parquet (zstd), atomically; returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(
        df[HISTORY_COLUMNS], schema=history_arrow_schema(), preserve_index=False
    )
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return path


def draw_label_delays(rng: np.random.Generator, n: int, mean_s: float) -> np.ndarray:
    """Chargeback delays (seconds): gamma with shape 2 and the given mean, so most reports come
    within a few mean delays and none instantly."""
    if mean_s <= 0:
        return np.zeros(n)
    return rng.gamma(2.0, mean_s / 2.0, n)


def label_records(
    history: pd.DataFrame, *, seed: int = 42, mean_delay_s: float = 3 * DAY_S
) -> pd.DataFrame:
    """The chargeback reports a history would produce: one LABEL record per fraudulent
    transaction, ``reported_at`` = event time + a drawn delay. Legitimate ones get no report."""
    import pandas as pd

    fraud = history[history["label"] == 1]
    rng = np.random.default_rng(np.random.SeedSequence([seed, _LABEL_STREAM]))
    delay_ms = np.round(draw_label_delays(rng, len(fraud), mean_delay_s) * 1000).astype(np.int64)
    reported = fraud["timestamp"] + pd.to_timedelta(delay_ms, unit="ms")
    return pd.DataFrame(
        {
            "transaction_id": fraud["transaction_id"].to_numpy(),
            "label": np.ones(len(fraud), dtype=np.int32),
            "fraud_type": fraud["fraud_type"].to_numpy(),
            "reported_at": reported.to_numpy(),
        },
        columns=LABEL.names,
    )
