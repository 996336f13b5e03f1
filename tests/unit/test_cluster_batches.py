"""The cluster path's ``mapInArrow`` function, without Spark: Kafka record batches in, decoded
record batches out, whatever mix of valid records and dead letters a partition holds.

A Kafka partition's batch with no dead letter at all is the normal case on a healthy stream; the
first run on a real standalone cluster failed there (an empty column came out of pandas as
float64, which Arrow turned into a ChunkedArray that ``concat_arrays`` refused).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.unit.test_decode import CASES, KAFKA_MS, MAX_AMOUNT, MAX_FUTURE_S, decoded

pytestmark = pytest.mark.unit


def kafka_batch(values: list[bytes | None], *, partition: int = 0) -> Any:
    """A record batch shaped like Spark's Kafka source rows (value, partition, offset, time)."""
    import pyarrow as pa

    n = len(values)
    return pa.RecordBatch.from_pydict(
        {
            "value": pa.array(values, pa.binary()),
            "partition": pa.array(np.full(n, partition, np.int32)),
            "offset": pa.array(np.arange(n, dtype=np.int64)),
            "timestamp": pa.array(np.full(n, KAFKA_MS * 1000, np.int64)).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
    )


def verdicts() -> tuple[list[bytes | None], list[bytes | None]]:
    """CASES split into the records the decoder accepts and those it refuses."""
    out = decoded(CASES)
    dead = set(out.dead["kafka_offset"].tolist())
    return [v for i, v in enumerate(CASES) if i not in dead], [CASES[i] for i in sorted(dead)]


@pytest.mark.parametrize("mix", ["only valid", "only dead", "both", "one valid", "one dead"])
def test_a_partition_batch_decodes_whatever_its_mix(mix: str) -> None:
    from rtfd.stream.cluster import decode_batches, decoded_schema

    good, bad = verdicts()
    assert good and bad
    values = {
        "only valid": good,
        "only dead": bad,
        "both": CASES,
        "one valid": good[:1],
        "one dead": bad[:1],
    }[mix]
    fn = decode_batches(max_future_s=MAX_FUTURE_S, max_amount=MAX_AMOUNT, topic="t")
    (out,) = list(fn(iter([kafka_batch(values, partition=3)])))
    assert out.num_rows == len(values)
    assert out.schema.names == [f.name for f in decoded_schema().fields]
    reasons = out.column("reason").to_pylist()
    n_dead = sum(r is not None for r in reasons)
    want = {"only valid": 0, "only dead": len(bad), "both": len(bad), "one valid": 0}
    assert n_dead == want.get(mix, 1)
    assert set(out.column("kafka_partition").to_pylist()) == {3}
    assert sorted(out.column("kafka_offset").to_pylist()) == list(range(len(values)))
    assert out.column("transaction_id").null_count == n_dead


def test_an_empty_batch_yields_nothing() -> None:
    from rtfd.stream.cluster import decode_batches

    fn = decode_batches(max_future_s=MAX_FUTURE_S, max_amount=MAX_AMOUNT, topic="t")
    assert list(fn(iter([kafka_batch([])]))) == []
