"""The label rule: analyst labels count at once, a chargeback wins, an undo withdraws.

Training reads the labels Parquet the stream writes (``rtfd.stream.sinks.labels_arrow_schema``);
these tests lay out such files by hand, old ones (before ``source`` existed) included, and check
:func:`rtfd.ml.data.read_training_table`, the merchant risk and the Python twin of the rule.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rtfd.config import Settings, load_settings
from rtfd.features.names import FEATURE_NAMES
from rtfd.labels import analyst_decision, effective_label, effective_labels_sql
from rtfd.ml.data import read_training_table
from rtfd.schemas import LABEL
from rtfd.stream.sinks import labels_arrow_schema

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 20, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=10)  # matured (label_maturity_days = 7)
YOUNG = NOW - timedelta(hours=2)  # not matured


@pytest.fixture
def settings() -> Settings:
    s = load_settings({"label_maturity_days": 7})
    s.ensure_dirs()
    return s


def write_enriched(settings: Settings, rows: list[tuple[str, datetime]]) -> None:
    frame = pd.DataFrame(
        {
            "transaction_id": [t for t, _ in rows],
            "user_id": "u1",
            "merchant_id": "m1",
            "amount": 10.0,
            "timestamp": pd.to_datetime([ts for _, ts in rows], utc=True),
            **{f: 0.0 for f in FEATURE_NAMES},
        }
    )
    part = settings.enriched_dir / "event_date=2025-06-20"
    part.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(part / "part-0.parquet", index=False)


_files = 0


def write_labels(settings: Settings, records: list[dict[str, Any]], *, old: bool = False) -> None:
    """One labels file as the stream writes it; ``old`` = without source and retracted."""
    global _files
    _files += 1
    schema = labels_arrow_schema()
    if old:
        schema = pa.schema([f for f in schema if f.name not in ("source", "retracted")])
    rows = [
        {
            "fraud_type": None,
            "source": None,
            "retracted": None,
            "kafka_partition": 0,
            "kafka_offset": i + 100 * _files,
            **r,
        }
        for i, r in enumerate(records)
    ]
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema)
    part = settings.labels_dir / "report_date=2025-06-20"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, part / f"part-{_files}.parquet")


def analyst(tid: str, label: int, at: datetime, *, undo: bool = False) -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "label": label,
        "reported_at": at,
        "source": "analyst",
        "retracted": undo,
    }


def chargeback(tid: str, at: datetime, *, label: int = 1) -> dict[str, Any]:
    return {"transaction_id": tid, "label": label, "reported_at": at, "source": "chargeback"}


def labels_of(settings: Settings) -> dict[str, int]:
    table = read_training_table(settings, now=NOW)
    return dict(zip(table["transaction_id"], table["label"].astype(int), strict=True))


def test_an_analyst_label_counts_at_once_without_the_maturity_wait(settings: Settings) -> None:
    write_enriched(settings, [("old", OLD), ("fraud", YOUNG), ("legit", YOUNG), ("open", YOUNG)])
    write_labels(
        settings,
        [analyst("fraud", 1, NOW - timedelta(hours=1)), analyst("legit", 0, NOW)],
    )
    assert labels_of(settings) == {"old": 0, "fraud": 1, "legit": 0}


def test_a_later_chargeback_wins_over_the_analyst(settings: Settings) -> None:
    write_enriched(settings, [("cleared", YOUNG), ("agreed", YOUNG)])
    write_labels(settings, [analyst("cleared", 0, YOUNG), analyst("agreed", 1, YOUNG)])
    write_labels(settings, [chargeback("cleared", NOW), chargeback("agreed", NOW)])
    assert labels_of(settings) == {"cleared": 1, "agreed": 1}


def test_a_chargeback_wins_whatever_the_order(settings: Settings) -> None:
    """An analyst clearing a transaction already charged back does not make it legitimate."""
    write_enriched(settings, [("t", YOUNG)])
    write_labels(settings, [chargeback("t", YOUNG), analyst("t", 0, NOW)])
    assert labels_of(settings) == {"t": 1}


def test_undo_withdraws_the_analyst_label(settings: Settings) -> None:
    write_enriched(settings, [("young", YOUNG), ("matured", OLD), ("redo", YOUNG)])
    t = NOW - timedelta(minutes=30)
    write_labels(
        settings,
        [
            analyst("young", 1, t),
            analyst("young", 1, t + timedelta(seconds=5), undo=True),
            analyst("matured", 1, t),
            analyst("matured", 1, t + timedelta(seconds=5), undo=True),
            analyst("redo", 1, t),
            analyst("redo", 1, t + timedelta(seconds=5), undo=True),
            analyst("redo", 0, t + timedelta(seconds=9)),
        ],
    )
    # Undone: the young one waits for maturity again; the matured one is legitimate by default.
    assert labels_of(settings) == {"matured": 0, "redo": 0}


def test_the_latest_analyst_decision_stands(settings: Settings) -> None:
    write_enriched(settings, [("a", YOUNG), ("b", YOUNG)])
    t = NOW - timedelta(minutes=30)
    # Written out of order across two files: reported_at decides, not file order.
    write_labels(settings, [analyst("a", 0, t + timedelta(seconds=1)), analyst("b", 0, t)])
    write_labels(settings, [analyst("a", 1, t), analyst("b", 1, t + timedelta(seconds=1))])
    assert labels_of(settings) == {"a": 0, "b": 1}


def test_labels_written_before_the_source_field_are_chargebacks(settings: Settings) -> None:
    write_enriched(settings, [("old-cb", OLD), ("young-cb", YOUNG), ("young-an", YOUNG)])
    write_labels(settings, [chargeback("old-cb", OLD), chargeback("young-cb", YOUNG)], old=True)
    assert labels_of(settings) == {"old-cb": 1}  # the young chargeback still waits
    write_labels(settings, [analyst("young-an", 1, NOW)])
    assert labels_of(settings) == {"old-cb": 1, "young-an": 1}


def test_merchant_risk_counts_chargebacks_only(settings: Settings) -> None:
    from rtfd.features.merchant_risk import refresh_from_parquet

    rows = [(f"t{i}", OLD + timedelta(minutes=i)) for i in range(10)]
    write_enriched(settings, rows)
    write_labels(settings, [chargeback("t0", OLD + timedelta(hours=1))])
    before = refresh_from_parquet(settings, now=NOW, label_delay_s=86_400)
    write_labels(settings, [analyst(f"t{i}", 1, OLD + timedelta(hours=1)) for i in range(1, 9)])
    after = refresh_from_parquet(settings, now=NOW, label_delay_s=86_400)
    assert int(before.fraud_cum[-1]) == int(after.fraud_cum[-1]) == 1
    assert int(after.vol_cum[-1]) == 10


def test_every_label_record_the_console_writes_is_a_valid_label() -> None:
    for record in (analyst("t", 1, NOW), analyst("t", 0, NOW, undo=True)):
        wire = {**record, "reported_at": record["reported_at"].isoformat()}
        assert LABEL.validate(wire, now=NOW)["source"] == "analyst"
    old = {"transaction_id": "t", "label": 1, "reported_at": "2025-06-20T11:00:00.000Z"}
    assert LABEL.validate(old, now=NOW)["source"] is None


def random_history(rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(rng.randrange(0, 6)):
        at = NOW + timedelta(seconds=rng.randrange(4))  # ties on reported_at happen
        kind = rng.choice(["analyst", "analyst", "chargeback", None])
        rec: dict[str, Any] = {"transaction_id": "t", "label": rng.randrange(2), "reported_at": at}
        if kind == "analyst":
            rec.update(source="analyst", retracted=rng.random() < 0.4)
        elif kind == "chargeback":
            rec["source"] = "chargeback"
        out.append(rec)
    return out


def test_the_sql_rule_and_its_python_twin_agree_on_400_random_histories() -> None:
    rng = random.Random(11)
    con = duckdb.connect()
    columns = ["transaction_id", "label", "reported_at", "source", "retracted", "kafka_offset"]
    try:
        for case in range(400):
            records = [
                {**r, "kafka_offset": i, "transaction_id": f"c{case}"}
                for i, r in enumerate(random_history(rng))
            ]
            frame = pd.DataFrame(
                [{c: r.get(c) for c in columns} for r in records], columns=columns
            ).astype({"label": "Int64", "kafka_offset": "Int64", "retracted": "boolean"})
            frame["reported_at"] = pd.to_datetime(frame["reported_at"], utc=True)
            frame["source"] = frame["source"].astype("string")
            con.register("labels_frame", frame)
            got = con.execute(effective_labels_sql(columns, "labels_frame")).fetchall()
            sql_label = got[0][1] if got else None
            assert sql_label == effective_label(records), records
            if got:
                assert got[0][3] == analyst_decision(records), records
    finally:
        con.close()
