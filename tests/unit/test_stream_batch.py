"""The stream's pure batch step on plain frames: no Spark, no Kafka, no file.

What is held: risk features come from the risk table and user features from the caller, the score
is the model's over exactly those features, a row is flagged at or above the threshold (not just
above), every flagged row and only those becomes an ALERT with a deterministic id, bad records
become DEAD_LETTERs, an empty batch is an empty output, and the same inputs give the same output.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from rtfd.features.names import FEATURE_NAMES, RISK_FEATURES, USER_FEATURES
from rtfd.schemas import ALERT, DEAD_LETTER, TRANSACTION
from rtfd.stream import batch
from rtfd.stream.sinks import enriched_arrow_schema

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
T0 = pd.Timestamp("2026-03-01T12:00:00Z")


@dataclass
class Model:
    """Scores a row by its ``count_1h`` user feature plus its merchant's 7-day fraud rate, so a
    wrong or missing feature of either kind changes the score."""

    version: str = "v0007"
    threshold: float = 0.5

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        assert list(frame.columns) == FEATURE_NAMES
        return np.clip(
            frame["count_1h"].to_numpy() / 10 + frame["merchant_fraud_rate_7d"].to_numpy(), 0, 1
        )

    def explain(self, frame: pd.DataFrame, top: int = 3) -> list[list[str]]:
        return [[f"count_1h={c:g}"] for c in frame["count_1h"]]


class Risk:
    """A merchant-risk table: merchant ``m<k>`` has a 7-day fraud rate of k/10."""

    def __init__(self) -> None:
        self.asked: list[tuple[list[str], list[int]]] = []

    def lookup_ms(self, merchants: np.ndarray, t_ms: np.ndarray) -> dict[str, np.ndarray]:
        self.asked.append((list(merchants), [int(t) for t in t_ms]))
        rate = np.array([int(m[1:]) / 10 for m in merchants], dtype=np.float64)
        out = {name: np.zeros(len(merchants)) for name in RISK_FEATURES}
        out["merchant_fraud_rate_7d"] = rate
        return out


def rows(counts: list[float], merchants: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decoded transactions (with their Kafka columns) and their user features."""
    n = len(counts)
    frame = pd.DataFrame(
        {
            "transaction_id": [f"tx{i}" for i in range(n)],
            "user_id": [f"u{i % 3}" for i in range(n)],
            "merchant_id": merchants,
            "amount": [10.0 + i for i in range(n)],
            "currency": "EUR",
            "location": "Berlin",
            "lat": 52.5,
            "lon": 13.4,
            "channel": "pos",
            "timestamp": pd.Series(
                [T0 + pd.Timedelta(minutes=i) for i in range(n)], dtype="datetime64[ms, UTC]"
            ),
            "kafka_topic": "transactions",
            "kafka_partition": np.zeros(n, np.int32),
            "kafka_offset": np.arange(100, 100 + n, dtype=np.int64),
            "kafka_ts": pd.Series(
                [T0 + pd.Timedelta(minutes=i, seconds=1) for i in range(n)],
                dtype="datetime64[ms, UTC]",
            ),
        }
    )
    feats = pd.DataFrame(0.0, index=range(n), columns=list(USER_FEATURES))
    feats["count_1h"] = counts
    return frame, feats


def dead_rows(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "reason": ["type:amount"] * n,
            "raw_b64": [base64.b64encode(b'{"amount": "x"}').decode()] * n,
            "raw_preview": ['{"amount": "x"}'] * n,
            "kafka_topic": ["transactions"] * n,
            "kafka_partition": [1] * n,
            "kafka_offset": list(range(7, 7 + n)),
        }
    )


def run(
    counts: list[float], merchants: list[str], dead: int = 0, model: Model | None = None
) -> tuple[batch.BatchOutput, pd.DataFrame]:
    frame, feats = rows(counts, merchants)
    model = model or Model()
    out = batch.score_batch(
        frame,
        feats,
        dead_rows(dead),
        model=model,
        risk=Risk(),
        model_version=model.version,
        at=AT,
        schema=enriched_arrow_schema(),
    )
    return out, frame


def test_rows_are_enriched_with_risk_and_user_features_and_scored() -> None:
    out, _ = run([1, 2, 3], ["m0", "m1", "m2"])
    table = out.table
    assert table.schema == enriched_arrow_schema()
    assert table.column("transaction_id").to_pylist() == ["tx0", "tx1", "tx2"]
    assert table.column("merchant_fraud_rate_7d").to_pylist() == [0.0, 0.1, 0.2]
    assert table.column("count_1h").to_pylist() == [1.0, 2.0, 3.0]
    assert np.allclose(table.column("fraud_score").to_numpy(), [0.1, 0.3, 0.5])
    assert table.column("model_version").to_pylist() == ["v0007"] * 3
    assert table.column("kafka_offset").to_pylist() == [100, 101, 102]
    assert set(table.column("processed_at").to_pylist()) == {AT}
    for name in TRANSACTION.names:
        assert name in table.column_names


def test_the_risk_table_is_asked_at_each_row_event_time() -> None:
    frame, feats = rows([0, 0], ["m3", "m4"])
    risk = Risk()
    batch.score_rows(
        frame,
        feats,
        model=Model(),
        risk=risk,
        processed_at=AT,
        schema=enriched_arrow_schema(),
    )
    merchants, times = risk.asked[0]
    assert merchants == ["m3", "m4"]
    assert times == [int(T0.timestamp() * 1000), int(T0.timestamp() * 1000) + 60_000]


@pytest.mark.parametrize(
    ("threshold", "flagged"),
    [
        (0.5, ["tx2", "tx3"]),  # a score equal to the threshold is an alert
        (0.3, ["tx1", "tx2", "tx3"]),
        (0.51, ["tx3"]),
        (0.0, ["tx0", "tx1", "tx2", "tx3"]),
        (1.01, []),
    ],
)
def test_rows_at_or_above_the_threshold_and_only_those_become_alerts(
    threshold: float, flagged: list[str]
) -> None:
    out, _ = run([1, 3, 5, 9], ["m0"] * 4, model=Model(threshold=threshold))
    assert [a["transaction_id"] for a in out.records.alerts] == flagged
    flags = out.table.column("is_fraud").to_pylist()
    assert [f"tx{i}" for i, f in enumerate(flags) if f] == flagged


def test_alerts_are_alert_records_with_ids_that_name_transaction_and_model() -> None:
    out, frame = run([9, 1, 8], ["m1", "m0", "m2"])
    alerts = out.records.alerts
    assert [a["transaction_id"] for a in alerts] == ["tx0", "tx2"]
    for a in alerts:
        assert list(a) == ALERT.names
        ALERT.validate(a, now=datetime(2030, 1, 1, tzinfo=UTC))
        assert a["alert_id"] == batch.alert_id(a["transaction_id"], "v0007")
        assert a["model_version"] == "v0007" and a["threshold"] == 0.5
        assert a["scored_at"] == "2026-03-01T15:00:00.000Z"
    assert alerts[0]["reasons"] == ["count_1h=9"] and alerts[1]["reasons"] == ["count_1h=8"]
    assert alerts[0]["amount"] == 10.0 and alerts[1]["merchant_id"] == "m2"
    assert alerts[0]["fraud_score"] == pytest.approx(1.0)
    other = batch.score_batch(
        frame,
        rows([9, 1, 8], ["m1", "m0", "m2"])[1],
        dead_rows(0),
        model=Model(version="v0008"),
        risk=Risk(),
        model_version="v0008",
        at=AT,
        schema=enriched_arrow_schema(),
    )
    assert {a["alert_id"] for a in other.records.alerts}.isdisjoint(a["alert_id"] for a in alerts)


def test_the_same_batch_gives_the_same_output() -> None:
    first, _ = run([9, 1, 8, 4], ["m1", "m0", "m2", "m9"], dead=2)
    again, _ = run([9, 1, 8, 4], ["m1", "m0", "m2", "m9"], dead=2)
    assert first.table.equals(again.table)
    assert first.records == again.records


def test_bad_records_become_dead_letters_with_their_coordinates() -> None:
    out, _ = run([1], ["m0"], dead=3)
    dead = out.records.dead_letters
    assert [d["offset"] for d in dead] == [7, 8, 9]
    for d in dead:
        assert list(d) == DEAD_LETTER.names
        DEAD_LETTER.validate(d, now=datetime(2030, 1, 1, tzinfo=UTC))
        assert (d["topic"], d["partition"], d["reason"]) == ("transactions", 1, "type:amount")
        assert base64.b64decode(d["raw_b64"]) == b'{"amount": "x"}'


def test_an_oversized_dead_letter_keeps_the_first_mebibyte() -> None:
    raw = bytes(range(256)) * (5 * 1024)  # 1.25 MiB
    dead = dead_rows(1).assign(raw_b64=base64.b64encode(raw).decode())
    (d,) = batch.dead_letter_records(dead, seen_at=AT)
    assert base64.b64decode(d["raw_b64"]) == raw[: batch.MAX_DEAD_RAW_BYTES]


def test_an_empty_batch_is_an_empty_output() -> None:
    out, _ = run([], [], dead=0)
    assert out.table.num_rows == 0 and out.table.schema == enriched_arrow_schema()
    assert out.records == batch.BatchRecords([], [])
    only_dead, _ = run([], [], dead=2)
    assert only_dead.table.num_rows == 0 and len(only_dead.records.dead_letters) == 2


def test_an_alert_flood_explains_the_highest_scores_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "MAX_EXPLAINED_ALERTS", 2)
    out, _ = run([6, 9, 7, 8], ["m0"] * 4)
    reasons = [a["reasons"] for a in out.records.alerts]
    assert reasons == [[batch.UNEXPLAINED], ["count_1h=9"], [batch.UNEXPLAINED], ["count_1h=8"]]


def test_latency_percentiles_measure_from_kafka_and_from_the_event() -> None:
    frame, _ = rows([0, 0, 0], ["m0"] * 3)
    committed = T0.timestamp() * 1000 + 122_000  # 1 s after the last row reached Kafka
    lat50, lat99, ev50, ev99 = batch.latency_percentiles(frame, committed)
    from_kafka = [121_000, 61_000, 1_000]
    assert lat50 == 61_000 and lat99 == pytest.approx(np.percentile(from_kafka, 99))
    assert lat99 is not None and ev50 == lat50 + 1_000 and ev99 == pytest.approx(lat99 + 1_000)
    assert batch.latency_percentiles(frame.iloc[:0], committed) == (None, None, None, None)


def test_the_step_imports_neither_spark_nor_kafka() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rtfd.stream.batch, rtfd.stream.sinks;"
        "bad = {'pyspark', 'confluent_kafka'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
