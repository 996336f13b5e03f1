"""Analysts' labels: the record, the precedence rule training reads, the publisher, the book."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rtfd.broker.labels import LabelPublisher
from rtfd.config import Settings, load_settings
from rtfd.errors import BrokerError, BrokerUnavailable, ValidationError
from rtfd.features.names import FEATURE_NAMES
from rtfd.query.labels import AnalystDecision
from rtfd.query.lake_reads import read_training_table
from rtfd.schemas import LABEL
from rtfd.tui.triage import CaseBook, recent_sql, risk_sql, sql_text

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=2)  # matured at label_maturity_days = 1
YOUNG = NOW - timedelta(minutes=5)  # not matured


@pytest.fixture
def settings() -> Settings:
    s = load_settings({"label_maturity_days": 1.0})
    s.ensure_dirs()
    return s


def write_enriched(settings: Settings, times: dict[str, datetime]) -> None:
    frame = pd.DataFrame(
        {
            "transaction_id": list(times),
            "user_id": [f"u{i}" for i in range(len(times))],
            "merchant_id": "m1",
            "amount": 12.5,
            "location": "Lyon",
            "timestamp": pd.to_datetime(list(times.values()), utc=True),
            "fraud_score": 0.5,
            "is_fraud": True,
            **{f: np.zeros(len(times)) for f in FEATURE_NAMES},
        }
    )
    out = settings.enriched_dir / "event_date=2026-12-05"
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "part-0.parquet", index=False)


def write_labels(settings: Settings, name: str, rows: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(rows)
    frame["reported_at"] = pd.to_datetime(frame["reported_at"], utc=True)
    frame["label"] = frame["label"].astype("int32")
    settings.labels_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(settings.labels_dir / f"{name}.parquet", index=False)


def chargeback(tx: str, label: int = 1, at: datetime = NOW) -> dict[str, Any]:
    """A chargeback as the generator writes it: no source, no withdrawn (the old shape)."""
    return {"transaction_id": tx, "label": label, "fraud_type": "x", "reported_at": at}


def analyst(tx: str, label: int, at: datetime, withdrawn: bool | None = None) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "label": label,
        "fraud_type": None,
        "reported_at": at,
        "source": "analyst",
        "withdrawn": withdrawn,
    }


def labels_of(settings: Settings) -> dict[str, int]:
    table = read_training_table(settings, now=NOW)
    return dict(zip(table["transaction_id"], table["label"].astype(int), strict=True))


# -- the precedence rule -----------------------------------------------------------------------
def test_an_analyst_label_counts_at_once_without_waiting_for_maturity(settings: Settings) -> None:
    write_enriched(settings, {"old": OLD, "fraud": YOUNG, "legit": YOUNG, "unlabelled": YOUNG})
    write_labels(
        settings,
        "a",
        [analyst("fraud", 1, YOUNG + timedelta(minutes=1)), analyst("legit", 0, YOUNG)],
    )
    assert labels_of(settings) == {"old": 0, "fraud": 1, "legit": 0}


@pytest.mark.parametrize(
    ("analyst_label", "chargeback_label", "chargeback_at"),
    [
        (0, 1, YOUNG + timedelta(minutes=3)),  # cleared, then the holder disputes: fraud
        (1, 0, YOUNG + timedelta(minutes=3)),  # confirmed, then the bank says legitimate
        (0, 1, YOUNG - timedelta(minutes=1)),  # a chargeback already there outranks too
        (1, 1, YOUNG + timedelta(minutes=3)),  # they agree
    ],
)
def test_a_chargeback_wins_over_the_analyst(
    settings: Settings, analyst_label: int, chargeback_label: int, chargeback_at: datetime
) -> None:
    write_enriched(settings, {"t": YOUNG, "m": OLD})
    write_labels(settings, "analyst", [analyst("t", analyst_label, YOUNG + timedelta(minutes=1))])
    write_labels(
        settings, "chargebacks", [chargeback("t", chargeback_label, chargeback_at), chargeback("m")]
    )
    assert labels_of(settings) == {"t": chargeback_label, "m": 1}


def test_undo_withdraws_the_analyst_label(settings: Settings) -> None:
    at = YOUNG + timedelta(minutes=1)
    write_enriched(settings, {"young": YOUNG, "matured": OLD, "again": YOUNG, "tie": YOUNG})
    write_labels(
        settings,
        "a",
        [
            analyst("young", 1, at),
            analyst("young", 1, at + timedelta(seconds=4), withdrawn=True),
            # withdrawn on a matured transaction: back to "no report means legitimate"
            analyst("matured", 1, at),
            analyst("matured", 1, at + timedelta(seconds=4), withdrawn=True),
            # confirmed, undone, cleared: the latest verdict counts
            analyst("again", 1, at),
            analyst("again", 1, at + timedelta(seconds=1), withdrawn=True),
            analyst("again", 0, at + timedelta(seconds=2)),
            # a verdict and its withdrawal in the same millisecond: the withdrawal wins
            analyst("tie", 1, at),
            analyst("tie", 1, at, withdrawn=True),
        ],
    )
    assert labels_of(settings) == {"matured": 0, "again": 0}


def test_labels_written_before_analysts_existed_still_read(settings: Settings) -> None:
    """A lake of old-shape files only (no source, no withdrawn column) reads as chargebacks."""
    write_enriched(settings, {"a": OLD, "b": OLD, "young": YOUNG})
    write_labels(settings, "old", [chargeback("a"), chargeback("young")])
    assert labels_of(settings) == {"a": 1, "b": 0}


def test_replayed_analyst_records_count_once(settings: Settings) -> None:
    write_enriched(settings, {"t": YOUNG})
    record = analyst("t", 1, YOUNG + timedelta(minutes=1))
    write_labels(settings, "batch-1", [record])
    write_labels(settings, "batch-1-replay", [record])
    table = read_training_table(settings, now=NOW)
    assert table["label"].tolist() == [1]


def test_merchant_risk_counts_chargebacks_only(settings: Settings) -> None:
    import duckdb

    from rtfd.lake import visible_files
    from rtfd.query.labels import chargeback_labels_sql, label_columns

    write_labels(settings, "old", [chargeback("c")])
    write_labels(settings, "new", [analyst("a", 1, YOUNG), analyst("c", 0, YOUNG)])
    files = visible_files(settings.labels_dir)
    assert files
    con = duckdb.connect()
    rows = con.execute(chargeback_labels_sql(label_columns(con, files)), {"l": files}).fetchall()
    assert rows == [("c", 1)]


# -- the record --------------------------------------------------------------------------------
def test_an_analyst_decision_is_a_valid_label_record() -> None:
    record = AnalystDecision("tx_1", "fraud", NOW).record()
    assert record == {
        "transaction_id": "tx_1",
        "label": 1,
        "reported_at": "2026-12-05T12:00:00.000Z",
        "source": "analyst",
    }
    undo = AnalystDecision("tx_1", "legit", NOW, withdrawn=True).record()
    assert undo["withdrawn"] is True and undo["label"] == 0
    assert LABEL.validate(json.loads(json.dumps(undo)), now=NOW)["withdrawn"] is True


def test_old_label_records_stay_valid_and_a_missing_source_means_chargeback() -> None:
    old = {"transaction_id": "t", "label": 1, "reported_at": "2026-12-05T11:00:00.000Z"}
    out = LABEL.validate(old, now=NOW)
    assert out["source"] is None and out["withdrawn"] is None


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"source": "bank"}, "value:source"),
        ({"source": "ANALYST"}, "value:source"),
        ({"source": 1}, "type:source"),
        ({"withdrawn": "yes"}, "type:withdrawn"),
        ({"withdrawn": 1}, "type:withdrawn"),
    ],
)
def test_bad_sources_and_withdrawals_are_refused(record: dict[str, Any], reason: str) -> None:
    base = {"transaction_id": "t", "label": 1, "reported_at": "2026-12-05T11:00:00.000Z"}
    with pytest.raises(ValidationError) as e:
        LABEL.validate({**base, **record}, now=NOW)
    assert e.value.reason == reason


def test_the_stream_decodes_analyst_records_like_check_record() -> None:
    from tests.unit.test_decode import assert_agrees, enc

    base = {"transaction_id": "t", "label": 1, "reported_at": "2026-11-30T11:00:00.000Z"}
    assert_agrees(
        [
            enc(base),
            enc({**base, "source": "analyst"}),
            enc({**base, "source": "analyst", "withdrawn": True}),
            enc({**base, "source": "chargeback", "withdrawn": False}),
            enc({**base, "source": "bank"}),
            enc({**base, "withdrawn": "true"}),
        ],
        LABEL,
    )


def test_the_cli_verdicts_are_the_label_values() -> None:
    from rtfd.cli.label import VERDICT_WORDS
    from rtfd.query.labels import VERDICTS

    assert set(VERDICT_WORDS) == set(VERDICTS) and VERDICTS == {"fraud": 1, "legit": 0}


@pytest.mark.parametrize("tx", ["", "   ", "x" * 129])
def test_impossible_transaction_ids_are_refused(tx: str) -> None:
    with pytest.raises(ValidationError):
        AnalystDecision(tx, "fraud", NOW).record()


# -- the publisher -----------------------------------------------------------------------------
class FakeProducer:
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.config: dict[str, Any] = {}
        self._callbacks: list[Callable[[Any, Any], None]] = []

    def produce(
        self, topic: str, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> None:
        if self.outcome == "full":
            raise BufferError("Local: Queue full")
        self.sent.append((topic, value, key))
        self._callbacks.append(on_delivery)

    def flush(self, timeout: float) -> int:
        if self.outcome == "silent":
            return len(self._callbacks)
        err = {"ack": None, "timeout": "Local: Message timed out", "acl": "Broker: Topic "
               "authorization failed"}[self.outcome]  # fmt: skip
        for cb in self._callbacks:
            cb(err, None)
        return 0


def publisher(outcome: str) -> tuple[LabelPublisher, FakeProducer]:
    fake = FakeProducer(outcome)

    def factory(config: dict[str, Any]) -> FakeProducer:
        fake.config = config
        return fake

    return LabelPublisher({"bootstrap.servers": "h:1"}, producer_factory=factory), fake


def test_a_decision_is_sent_keyed_by_transaction_and_acknowledged() -> None:
    pub, fake = publisher("ack")
    record = pub.publish(AnalystDecision("tx_9", "legit", NOW))
    assert fake.sent == [("fraud_labels", json.dumps(record, separators=(",", ":")).encode(),
                          b"tx_9")]  # fmt: skip
    assert fake.config["acks"] == "all" and fake.config["enable.idempotence"] is True
    assert fake.config["message.timeout.ms"] == 10_000  # not librdkafka's five minutes


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        ("silent", BrokerUnavailable),
        ("timeout", BrokerUnavailable),
        ("acl", BrokerError),
        ("full", BrokerError),
    ],
)
def test_an_unacknowledged_decision_is_a_one_line_error(outcome: str, error: type) -> None:
    pub, _ = publisher(outcome)
    with pytest.raises(error) as e:
        pub.publish(AnalystDecision("tx_9", "fraud", NOW))
    assert "\n" not in e.value.message
    if error is BrokerUnavailable:
        assert "h:1" in e.value.message and "not recorded" in e.value.message


# -- the case book -----------------------------------------------------------------------------
def test_the_book_tracks_confirm_clear_and_undo() -> None:
    book = CaseBook(clock=lambda: NOW)
    assert book.state("t") == "open" and book.undo("t") is None
    confirm = book.decide("t", "fraud")
    assert confirm is not None and book.state("t") == "open"  # not until published
    assert book.apply(confirm) == "confirmed"
    assert book.decide("t", "fraud") is None  # already so
    clear = book.decide("t", "legit")
    assert clear is not None and clear.decided_at > confirm.decided_at  # same clock: +1 ms
    assert book.apply(clear) == "cleared"
    undo = book.undo("t")
    assert undo is not None and undo.withdrawn and undo.verdict == "legit"
    assert undo.decided_at > clear.decided_at
    assert book.apply(undo) == "open"
    assert book.state("other") == "open"


@pytest.mark.parametrize("value", ["u1", "o'brien", "'; DROP TABLE x; --", "a''b", "\\'"])
def test_case_queries_quote_ids(value: str) -> None:
    import duckdb

    assert duckdb.connect().execute(f"SELECT {sql_text(value)}").fetchone() == (value,)
    assert sql_text(value) in recent_sql(value) and sql_text(value) in risk_sql(value)


def test_the_case_reads_the_lake_through_the_query_service(tmp_path: Path) -> None:
    from rtfd.query.service import QueryService
    from rtfd.tui.triage import load_case

    s = load_settings()
    s.ensure_dirs()
    times = {f"t{i}": YOUNG + timedelta(seconds=i) for i in range(30)}
    write_enriched(s, times)
    service = QueryService(s)
    try:
        case = load_case(service, {"user_id": "u3", "transaction_id": "t3"})
        missing = load_case(service, {"user_id": "nobody", "transaction_id": "nope"})
    finally:
        service.close()
    assert [r["transaction_id"] for r in case.recent] == ["t3"]
    assert case.risk["merchant_fraud_rate_7d"] == 0.0 and case.problem is None
    assert missing.recent == [] and missing.problem and "not in the Parquet" in missing.problem


def test_earlier_verdicts_come_back_from_the_labels_table(settings: Settings) -> None:
    """A restarted console shows the alerts decided before as confirmed or cleared."""
    from rtfd.query.service import QueryService
    from rtfd.tui.triage import load_decisions

    at = YOUNG
    write_labels(settings, "old", [chargeback("cb")])
    service = QueryService(settings)
    try:
        assert load_decisions(service) == []  # a lake from before analysts: no source column
    finally:
        service.close()
    write_labels(
        settings,
        "analysts",
        [
            analyst("conf", 1, at),
            analyst("clear", 1, at),
            analyst("clear", 0, at + timedelta(seconds=1)),
            analyst("undone", 1, at),
            analyst("undone", 1, at, withdrawn=True),  # same millisecond: the undo is later
            analyst("mine", 1, at),
        ],
    )
    service = QueryService(settings)
    try:
        rows = load_decisions(service)
    finally:
        service.close()
    book = CaseBook(clock=lambda: NOW)
    mine = book.decide("mine", "legit")
    assert mine is not None
    book.apply(mine)  # decided in this session: the lake's older record does not override it
    assert book.restore(rows) == 2
    states = {tx: book.state(tx) for tx in ("conf", "clear", "undone", "mine", "cb")}
    assert states == {
        "conf": "confirmed",
        "clear": "cleared",
        "undone": "open",
        "mine": "cleared",
        "cb": "open",
    }


def test_the_labels_parquet_keeps_source_and_withdrawn() -> None:
    """What the stream's label sink writes: the decoded batch in the labels Arrow schema."""
    import time

    import pyarrow as pa

    from rtfd.stream.decode import decode
    from rtfd.stream.sinks import labels_arrow_schema
    from tests.unit.test_decode import coords, enc

    base = {"transaction_id": "t", "label": 1, "reported_at": "2026-11-30T11:00:00.000Z"}
    values = [
        enc(base),
        enc({**base, "source": "analyst"}),
        enc({**base, "label": 0, "source": "analyst", "withdrawn": True}),
    ]
    out = decode(
        values,
        np.full(3, int(time.time() * 1000)),
        coords(3),
        LABEL,
        max_future_s=300,
        max_amount=1e6,
    )
    schema = labels_arrow_schema()
    table = pa.Table.from_pandas(
        out.valid[schema.names], schema=schema, preserve_index=False, safe=False
    )
    assert table.column("source").to_pylist() == [None, "analyst", "analyst"]
    assert table.column("withdrawn").to_pylist() == [None, None, True]
    assert table.column("label").to_pylist() == [1, 1, 0]


def test_merchant_risk_ignores_analysts_verdicts(tmp_path: Path) -> None:
    """The stream's merchant risk equals the offline point-in-time one (chargebacks only), with
    analysts' verdicts, withdrawn or not, in the labels Parquet beside them."""
    from rtfd.features.merchant_risk import point_in_time
    from rtfd.query.lake_reads import refresh_from_parquet
    from tests.unit.test_features_kernel import T0, _labelled

    s = load_settings({"home": str(tmp_path)})
    history = _labelled().assign(transaction_id=lambda d: [f"t{i}" for i in range(len(d))])
    day = history["timestamp"].dt.strftime("%Y-%m-%d")
    for date, part in history.groupby(day):
        out = s.enriched_dir / f"event_date={date}"
        out.mkdir(parents=True)
        part[["transaction_id", "merchant_id", "timestamp"]].to_parquet(out / "part-0.parquet")
    fraud = history[history["label"] == 1]
    legit = history[history["label"] == 0].head(40)
    write_labels(
        s,
        "chargebacks",
        [chargeback(t, 1, ts + timedelta(hours=1)) for t, ts in
         zip(fraud["transaction_id"], fraud["timestamp"], strict=True)],
    )  # fmt: skip
    write_labels(
        s,
        "analysts",
        [analyst(t, 1, ts + timedelta(minutes=5)) for t, ts in
         zip(legit["transaction_id"], legit["timestamp"], strict=True)]
        + [analyst(t, 0, ts + timedelta(minutes=5), withdrawn=True) for t, ts in
           zip(fraud["transaction_id"], fraud["timestamp"], strict=True)],
    )  # fmt: skip
    now = T0 + timedelta(days=30, minutes=10)
    table = refresh_from_parquet(s, now=now, label_delay_s=86_400)
    expected = point_in_time(history, label_delay_s=86_400)
    at = pd.Series([now] * 2)
    pd.testing.assert_frame_equal(table.lookup(["m1", "m2"], at), expected.lookup(["m1", "m2"], at))
