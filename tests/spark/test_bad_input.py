"""The bad-input catalogue: every kind of bad message has a defined outcome on a running stream.

One stream runs for the module. Each case of :data:`CASES` is sent as raw bytes to the
transactions topic; afterwards every case must have exactly its defined outcome — a dead letter
with the expected reason code, or a Parquet row under a documented rule (extra fields ignored,
well-formed unknown currencies accepted ...) — the progress counts must add up, nothing may be
lost or scored as NaN, and the query must still be running and process what comes next.

The same table is in ``docs/bad-input.md``; a test here checks that the two agree.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtfd.config import Settings
from rtfd.schemas import format_timestamp
from rtfd.stream.batch import MAX_DEAD_RAW_BYTES
from tests.spark.conftest import spark_settings
from tests.spark.helpers import consume_all, read_enriched, wait_for

pytestmark = pytest.mark.spark

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
CATCH_UP_S = 180.0
DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"
ONE_MIB = 1024 * 1024
# Size limits: librdkafka clients refuse messages over message.max.bytes (default 1,000,000
# bytes) at produce time; the embedded broker accepts up to 2 MiB per message (Redpanda's and
# Kafka's own default is about 1 MiB). The catalogue's producer allows more than the broker, so
# the broker's limit is the one that applies to it.
CLIENT_DEFAULT_MAX = 1_000_000
BROKER_MAX = 2 * ONE_MIB


@dataclass(frozen=True)
class Case:
    """One message of the catalogue and the outcome it must have."""

    name: str
    value: bytes | None
    expect: str  # a DLQ reason code, ACCEPTED or DUPLICATE
    tx_id: str | None = None  # the transaction_id a Parquet row would carry
    key: bytes | None = b"k"


def _tx(tx_id: str, when: datetime, **over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "transaction_id": tx_id,
        "user_id": f"user-{tx_id}",
        "merchant_id": "merchant-bad-input",
        "amount": 42.5,
        "currency": "EUR",
        "location": "Berlin",
        "lat": 52.52,
        "lon": 13.40,
        "channel": "pos",
        "timestamp": format_timestamp(when),
    }
    for k, v in over.items():
        if v is _DROP:
            record.pop(k, None)
        else:
            record[k] = v
    return record


_DROP = object()


def build_cases(
    run: str, now: datetime, *, same_bucket: str = "user-a", other_bucket: str = "user-b"
) -> list[Case]:
    """The catalogue. ``run`` makes transaction ids unique per test run; ``now`` dates them;
    ``same_bucket`` and ``other_bucket`` are user ids whose state bucket is (is not) the one of
    the duplicated transaction's user (:func:`dup_user`)."""
    when = now - timedelta(seconds=5)
    cases: list[Case] = []

    def js(
        name: str, expect: str, *, edit: Callable[[str], str] | None = None, **over: Any
    ) -> None:
        """A transaction (fields changed by ``over``), its JSON text changed by ``edit``."""
        tx_id = f"{run}-{name}"
        text = json.dumps(_tx(tx_id, when, **over))
        cases.append(Case(name, (edit(text) if edit else text).encode(), expect, tx_id))

    def raw(name: str, value: bytes | None, expect: str, tx_id: str | None = None) -> None:
        cases.append(Case(name, value, expect, tx_id))

    valid = json.dumps(_tx(f"{run}-VALID", when))
    # -- the envelope: bytes, JSON, object
    raw("invalid UTF-8 bytes", b"\xff\xfe\xfa garbage \x80\x81", "malformed_json")
    raw(
        "invalid UTF-8 inside a JSON string",
        valid.replace("Berlin", "Ber\udcfflin").encode("utf-8", "surrogateescape"),
        "malformed_json",
    )
    raw(
        "UTF-8 byte-order mark before the object",
        b"\xef\xbb\xbf" + valid.encode(),
        "malformed_json",
    )
    raw("empty value", b"", "malformed_json")
    raw("null value (tombstone)", None, "malformed_json")
    raw("truncated JSON", valid[: len(valid) // 2].encode(), "malformed_json")
    raw("trailing garbage after the object", (valid + " trailing").encode(), "malformed_json")
    raw("JSON array [1]", b"[1]", "not_an_object")
    raw('JSON string "x"', b'"x"', "not_an_object")
    raw("JSON number 7", b"7", "not_an_object")
    raw("JSON null", b"null", "not_an_object")
    raw("two objects back to back", (valid + valid).encode(), "malformed_json")
    raw("empty object {}", b"{}", "missing:transaction_id")
    raw("deeply nested JSON (100,000 levels)", b"[" * 100_000 + b"]" * 100_000, "malformed_json")
    js(
        "duplicate key",
        "malformed_json",
        edit=lambda t: t.replace('"amount": 42.5', '"amount": 1, "amount": 2'),
    )
    # -- wrong types
    js("amount as a string", "type:amount", amount="42.50")
    js("amount as true", "type:amount", amount=True)
    js("user_id as a number", "type:user_id", user_id=12345)
    js("timestamp as a number", "type:timestamp", timestamp=int(now.timestamp()))
    js("lat as a string", "type:lat", lat="52.5")
    # -- missing fields
    js("missing transaction_id", "missing:transaction_id", transaction_id=_DROP)
    js("missing amount", "missing:amount", amount=_DROP)
    js("null amount", "missing:amount", amount=None)
    js("missing timestamp", "missing:timestamp", timestamp=_DROP)
    js("missing optional lat, lon, channel", ACCEPTED, lat=_DROP, lon=_DROP, channel=_DROP)
    js("empty user_id", "empty:user_id", user_id="")
    # -- extra fields
    js("extra unknown fields", ACCEPTED, note="hello", nested={"a": [1, 2]}, is_fraud=True)
    # -- amounts
    js("negative amount", "range:amount", amount=-10.0)
    js("zero amount", "range:amount", amount=0)
    js("tiny positive amount 0.01", ACCEPTED, amount=0.01)
    js("amount NaN (not JSON)", "malformed_json", edit=lambda t: t.replace("42.5", "NaN"))
    js("amount Infinity (not JSON)", "malformed_json", edit=lambda t: t.replace("42.5", "Infinity"))
    js(
        "amount 1e400 (overflows a double)",
        "range:amount",
        edit=lambda t: t.replace("42.5", "1e400"),
    )
    js("amount 1e300", "range:amount", amount=1e300)
    js("amount just above stream_max_amount", "range:amount", amount=1_000_000.01)
    js("amount equal to stream_max_amount", ACCEPTED, amount=1_000_000)
    # -- timestamps
    js("timestamp in 1970", "range:timestamp", timestamp="1970-01-01T00:00:00.000Z")
    js("timestamp in 2100", "future:timestamp", timestamp="2100-01-01T00:00:00.000Z")
    js("timestamp not ISO-8601", "format:timestamp", timestamp="yesterday")
    js("timestamp without a zone (UTC)", ACCEPTED, timestamp=when.strftime("%Y-%m-%dT%H:%M:%S"))
    js("timestamp in 2001 (old but valid)", ACCEPTED, timestamp="2001-06-01T12:00:00.000Z")
    # -- currencies and text
    js("unknown well-formed currency XYZ", ACCEPTED, currency="XYZ")
    js("lower-case currency usd", "format:currency", currency="usd")
    js("transaction_id of 500 characters", "too_long:transaction_id", transaction_id="t" * 500)
    # -- size: under the client's default limit, and up to the broker's
    small, big = "x" * (CLIENT_DEFAULT_MAX - 10_000), "x" * (BROKER_MAX - 100_000)
    js("990 kB valid message (padding in an extra field)", ACCEPTED, padding=small)
    js("990 kB invalid message (location too long)", "too_long:location", location=small)
    js("1.9 MiB valid message (padding in an extra field)", ACCEPTED, padding=big)
    js("1.9 MiB invalid message (location too long)", "too_long:location", location=big)
    # -- keys
    cases.append(
        Case(
            "no Kafka key",
            json.dumps(_tx(f"{run}-nokey", when)).encode(),
            ACCEPTED,
            f"{run}-nokey",
            None,
        )
    )
    # -- duplicates: the same message twice (a producer retry); the same id from other users
    tx_id = f"{run}-dup"
    dup = json.dumps(_tx(tx_id, when)).encode()
    cases.append(Case("duplicate transaction_id (first copy)", dup, ACCEPTED, tx_id))
    cases.append(Case("duplicate transaction_id (second copy)", dup, DUPLICATE, tx_id))
    for name, user, expect in (
        ("duplicate transaction_id from another user in the same bucket", same_bucket, DUPLICATE),
        ("duplicate transaction_id from a user in another bucket", other_bucket, DUPLICATE),
    ):
        cases.append(Case(name, json.dumps(_tx(tx_id, when, user_id=user)).encode(), expect, tx_id))
    return cases


def dup_user(run: str) -> str:
    """The user of the duplicated transaction (``user-<transaction_id>``)."""
    return f"user-{run}-dup"


def bucket_users(run: str, buckets: int) -> tuple[str, str]:
    """Two user ids: one in the state bucket of :func:`dup_user`, one in another bucket.

    The bucket is ``pmod(xxhash64(user_id), B)`` (rtfd.stream.state.apply_user_state), computed
    by the stream's own Spark session.
    """
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    candidates = [f"user-{run}-other-{i}" for i in range(256)]
    users = [dup_user(run), *candidates]
    df = spark.createDataFrame([(u,) for u in users], "user_id string")
    index = [int(r[0]) for r in df.selectExpr(f"pmod(xxhash64(user_id), {buckets})").collect()]
    same = [u for u, b in zip(candidates, index[1:], strict=True) if b == index[0]]
    other = [u for u, b in zip(candidates, index[1:], strict=True) if b != index[0]]
    assert same and other, "256 users in one bucket: is the bucket still a hash of user_id?"
    return same[0], other[0]


@dataclass
class Delivered:
    """Where a case landed in the transactions topic."""

    case: Case
    partition: int
    offset: int


class Stream:
    """The module's running stream and its progress events."""

    def __init__(self, runner: Any, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings
        self.topics = runner.topics
        self.events: list[Any] = []
        runner.add_listener(self.events.append)

    def totals(self) -> dict[str, int]:
        """Sums over the committed batches of the transactions query."""
        out = {"input": 0, "rows": 0, "dead_letters": 0, "duplicates": 0}
        for e in list(self.events):
            if e.query == "transactions":
                out["input"] += e.input_rows
                out["rows"] += e.rows
                out["dead_letters"] += e.dead_letters
                out["duplicates"] += e.duplicates
        return out

    def produce(self, cases: list[Case]) -> list[Delivered]:
        """Send each case as raw bytes (acks=all); return where each one landed."""
        from confluent_kafka import Producer

        from rtfd.broker import client_config

        producer = Producer(
            {
                **client_config(self.settings),
                "acks": "all",
                "enable.idempotence": True,
                "message.max.bytes": 2 * BROKER_MAX,
            }
        )
        landed: dict[int, tuple[int, int]] = {}
        errors: list[str] = []

        def on_delivery(i: int) -> Any:
            def report(err: Any, msg: Any) -> None:
                if err is not None:
                    errors.append(f"{cases[i].name}: {err}")
                else:
                    landed[i] = (int(msg.partition()), int(msg.offset()))

            return report

        for i, c in enumerate(cases):
            producer.produce(
                self.topics.transactions, value=c.value, key=c.key, on_delivery=on_delivery(i)
            )
            producer.poll(0)
        assert producer.flush(30) == 0
        assert errors == []
        return [Delivered(c, *landed[i]) for i, c in enumerate(cases)]

    def wait_processed(self, n_input: int) -> dict[str, int]:
        """Wait until the committed batches have read ``n_input`` records in all."""

        def done() -> bool:
            if self.runner.state.phase != "running":
                raise AssertionError(f"the stream stopped: {self.runner.state}")
            return self.totals()["input"] >= n_input

        wait_for(done, timeout=CATCH_UP_S, what=f"{n_input} records processed")
        return self.totals()


@pytest.fixture(scope="module")
def stream(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stream]:
    from rtfd.stream.runner import StreamRunner, StreamTopics
    from rtfd.stream.scoring import ensure_model

    settings = spark_settings(
        tmp_path_factory.mktemp("bad-input"),
        broker_bootstrap_servers=kafka_broker.bootstrap_servers,
        generator_users=500,
        generator_merchants=100,
    )
    ensure_model(settings)
    runner = StreamRunner(settings, topics=StreamTopics.with_prefix(f"bad-{uuid.uuid4().hex[:8]}-"))
    s = Stream(runner, settings)
    runner.start()
    state = runner.wait_running(timeout=300)
    assert state.phase == "running", state
    try:
        yield s
    finally:
        runner.stop()


@dataclass
class Catalogue:
    """The catalogue as sent, and what the stream made of it."""

    run: str
    delivered: list[Delivered]
    totals: dict[str, int]
    dead: dict[tuple[int, int], dict[str, Any]]  # (partition, offset) -> dead letter
    rows: Any  # the Parquet rows of this run (pandas)


@pytest.fixture(scope="module")
def catalogue(stream: Stream) -> Catalogue:
    run = f"bi{uuid.uuid4().hex[:8]}"
    same, other = bucket_users(run, stream.settings.stream_state_buckets)
    cases = build_cases(run, datetime.now(UTC), same_bucket=same, other_bucket=other)
    delivered = stream.produce(cases)
    totals = stream.wait_processed(len(cases))
    accepted = sum(1 for c in cases if c.expect == ACCEPTED)

    def in_parquet() -> bool:
        df = read_enriched(stream.settings, "transaction_id")
        return (
            len(df) > 0
            and int(df["transaction_id"].astype(str).str.startswith(run).sum()) >= accepted
        )

    wait_for(in_parquet, timeout=60, what=f"{accepted} accepted rows in Parquet")
    dead = {
        (int(d["partition"]), int(d["offset"])): d
        for d in (json.loads(m.value()) for m in consume_all(stream.settings, stream.topics.dlq))
        if d["topic"] == stream.topics.transactions
    }
    df = read_enriched(stream.settings)
    rows = df[df["transaction_id"].astype(str).str.startswith(run)].reset_index(drop=True)
    return Catalogue(run, delivered, totals, dead, rows)


def outcomes(cat: Catalogue) -> dict[str, str]:
    """What happened to each case, found by its Kafka coordinates: the dead letter's reason,
    accepted (a Parquet row from that offset), duplicate (its id has a row from another offset)
    or LOST."""
    written = {
        (int(p), int(o)): str(t)
        for p, o, t in cat.rows[["kafka_partition", "kafka_offset", "transaction_id"]].itertuples(
            index=False
        )
    }
    out: dict[str, str] = {}
    for d in cat.delivered:
        letter = cat.dead.get((d.partition, d.offset))
        if letter is not None:
            out[d.case.name] = str(letter["reason"])
        elif (d.partition, d.offset) in written:
            assert written[(d.partition, d.offset)] == d.case.tx_id, d.case.name
            out[d.case.name] = ACCEPTED
        elif d.case.tx_id is not None and d.case.tx_id in written.values():
            out[d.case.name] = DUPLICATE
        else:
            out[d.case.name] = "LOST"
    return out


def test_every_bad_message_has_its_defined_outcome(catalogue: Catalogue) -> None:
    got = outcomes(catalogue)
    want = {d.case.name: d.case.expect for d in catalogue.delivered}
    wrong = {n: f"expected {want[n]}, got {got[n]}" for n in want if got[n] != want[n]}
    assert wrong == {}, "\n" + "\n".join(f"{n}: {w}" for n, w in wrong.items())


def test_progress_counts_add_up(catalogue: Catalogue) -> None:
    """Every record read is exactly one of: a Parquet row, a dead letter, a dropped duplicate."""
    want = [d.case.expect for d in catalogue.delivered]
    n_dead = sum(1 for e in want if e not in (ACCEPTED, DUPLICATE))
    n_dupes = want.count(DUPLICATE)
    t = catalogue.totals
    assert t["input"] == len(want)
    assert t["rows"] + t["dead_letters"] + t["duplicates"] == t["input"]
    assert (t["rows"], t["dead_letters"], t["duplicates"]) == (
        want.count(ACCEPTED),
        n_dead,
        n_dupes,
    )
    assert len(catalogue.dead) == n_dead
    assert len(catalogue.rows) == want.count(ACCEPTED)


def test_dead_letters_keep_the_raw_bytes(catalogue: Catalogue) -> None:
    import base64

    from rtfd.schemas import DEAD_LETTER

    for d in catalogue.delivered:
        letter = catalogue.dead.get((d.partition, d.offset))
        if letter is None:
            continue
        assert set(DEAD_LETTER.names) <= set(letter)
        raw = base64.b64decode(letter["raw_b64"])
        value = d.case.value or b""
        if len(value) <= ONE_MIB:
            assert raw == value, d.case.name
        else:  # cut so that the dead letter fits the DLQ topic: the message's first bytes
            assert raw == value[:MAX_DEAD_RAW_BYTES], d.case.name
        assert len(letter["raw_preview"] or "") <= 200


def test_accepted_rows_are_scored_with_finite_values(catalogue: Catalogue) -> None:
    from rtfd.features.names import FEATURE_NAMES

    rows = catalogue.rows
    assert len(rows)
    numeric = rows[[*FEATURE_NAMES, "amount", "fraud_score"]].to_numpy(dtype=np.float64)
    assert np.isfinite(numeric).all(), rows.columns[~np.isfinite(numeric).all(axis=0)].tolist()
    assert rows["fraud_score"].between(0, 1).all()
    assert "padding" not in rows.columns and "note" not in rows.columns
    assert rows["model_version"].notna().all()


def test_a_duplicate_in_a_later_batch_is_dropped_too(stream: Stream, catalogue: Catalogue) -> None:
    dup = next(d.case for d in catalogue.delivered if d.case.expect == DUPLICATE)

    def copies() -> int:
        ids = read_enriched(stream.settings, "transaction_id")["transaction_id"]
        return int((ids == dup.tx_id).sum())

    before, rows_before = stream.totals(), copies()
    stream.produce([dup])
    after = stream.wait_processed(before["input"] + 1)
    assert after["duplicates"] == before["duplicates"] + 1
    assert after["rows"] == before["rows"]
    assert copies() == rows_before


def test_too_big_messages_are_refused_to_the_producer(stream: Stream) -> None:
    """A 1 MiB message: a client with default settings refuses it at produce time. Over the
    broker's limit: the broker refuses it (a delivery error). Either way the producer gets a
    clear MSG_SIZE_TOO_LARGE and nothing reaches the stream."""
    from confluent_kafka import KafkaError, KafkaException, Producer

    from rtfd.broker import client_config

    before = stream.totals()["input"]
    producer = Producer(client_config(stream.settings))
    with pytest.raises(KafkaException) as refused:
        producer.produce(stream.topics.transactions, value=b"x" * ONE_MIB)
    assert refused.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE

    errors: list[Any] = []
    bigger = Producer({**client_config(stream.settings), "message.max.bytes": 2 * BROKER_MAX})
    bigger.produce(
        stream.topics.transactions,
        value=b"x" * (BROKER_MAX + 1024),
        on_delivery=lambda err, _m: errors.append(err),
    )
    assert bigger.flush(30) == 0
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert stream.totals()["input"] == before


def test_the_stream_keeps_running_and_scores_what_comes_next(
    stream: Stream, catalogue: Catalogue
) -> None:
    assert stream.runner.state.phase == "running", stream.runner.state
    tx_id = f"{catalogue.run}-after"
    case = Case("valid after the catalogue", json.dumps(_tx(tx_id, datetime.now(UTC))).encode(),
                ACCEPTED, tx_id)  # fmt: skip
    before = stream.totals()
    stream.produce([case])
    after = stream.wait_processed(before["input"] + 1)
    assert (after["input"], after["rows"]) == (before["input"] + 1, before["rows"] + 1)

    def written() -> Any:
        df = read_enriched(stream.settings, "transaction_id, fraud_score")
        return [df] if len(df) and (df["transaction_id"] == tx_id).any() else None

    df = wait_for(written, timeout=60, what="the row in Parquet")[0]
    row = df[df["transaction_id"] == tx_id]
    assert len(row) == 1 and math.isfinite(float(row["fraud_score"].iloc[0]))
    assert stream.runner.state.phase == "running", stream.runner.state


def test_the_documented_table_matches_the_catalogue() -> None:
    """docs/bad-input.md lists every case with the outcome this module asserts."""
    text = DOC.read_text(encoding="utf-8")
    table: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and line.lstrip().startswith("|"):
            code = cells[2].replace("`", "")
            table[cells[0]] = code if re.fullmatch(r"[a-z_]+(:[a-z_]+)?", code) else cells[1]
    cases = build_cases("doc", datetime.now(UTC))
    want = {c.name: c.expect for c in cases}
    got = {name: table.get(name, "(not in the doc)") for name in want}
    wrong = {n: f"doc says {got[n]}, test expects {want[n]}" for n in want if got[n] != want[n]}
    assert wrong == {}
