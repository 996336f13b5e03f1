"""The stream's decoder gives check_record's verdicts and values, record by record, for whole
batches: hand-written cases, boundaries and random mutations of records and of raw bytes."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rtfd.schemas import LABEL, TRANSACTION, RecordSchema
from rtfd.stream.decode import MALFORMED, check_record, decode

pytestmark = pytest.mark.unit

KAFKA_TS = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KAFKA_MS = int(KAFKA_TS.timestamp() * 1000)
MAX_FUTURE_S = 300.0
MAX_AMOUNT = 1_000_000.0
_DROP = object()


def txn(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "transaction_id": "t1",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": 12.5,
        "currency": "EUR",
        "location": "Berlin",
        "lat": 52.52,
        "lon": 13.40,
        "channel": "pos",
        "timestamp": "2026-11-30T11:59:00.123Z",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not _DROP}


def enc(record: object) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()


CASES: list[bytes | None] = [
    enc(txn()),
    enc(txn(extra="x", lat=None, lon=None, channel=None)),
    enc(txn(lat=_DROP, lon=_DROP, channel=_DROP)),
    enc(txn(amount=None)),
    enc(txn(amount=_DROP)),
    enc(txn(amount="12")),
    enc(txn(amount=True)),
    enc(txn(amount=0)),
    enc(txn(amount=-3)),
    enc(txn(amount=1e12)),
    enc(txn(amount=7)),
    enc(txn(amount=1_000_000)),
    enc(txn(amount=1_000_000.0000001)),
    enc(txn(amount=[1])),
    enc(txn(amount={"v": 1})),
    enc(txn(user_id=5)),
    enc(txn(user_id="")),
    enc(txn(user_id="   ")),
    enc(txn(user_id="\u2003\u3000")),  # Unicode spaces: empty for Python's strip()
    enc(txn(user_id="\x1c")),  # Python's str.isspace() says so too
    enc(txn(user_id="x" * 500)),
    enc(txn(user_id="x" * 128)),
    enc(txn(user_id="é" * 128)),
    enc(txn(user_id="é" * 129)),
    enc(txn(location="東京")),
    enc(txn(location="São Paulo")),
    enc(txn(currency="euro")),
    enc(txn(currency="EURO")),
    enc(txn(currency="usd")),
    enc(txn(currency="ÉUR")),
    enc(txn(lat=91)),
    enc(txn(lat=90)),
    enc(txn(lat=0)),
    enc(txn(lat=-0.0)),
    enc(txn(lat=0.0)),
    enc(txn(lon=-180.5)),
    enc(txn(lat="52")),
    enc(txn(channel=1)),
    enc(txn(channel="x" * 33)),
    enc(txn(channel="")),
    enc(txn(timestamp="yesterday")),
    enc(txn(timestamp=1234567890)),
    enc(txn(timestamp="1999-12-31T23:59:59.999Z")),
    enc(txn(timestamp="2000-01-01T00:00:00.000Z")),
    enc(txn(timestamp="2026-11-30T12:04:59.999Z")),
    enc(txn(timestamp="2026-11-30T12:05:00.000Z")),
    enc(txn(timestamp="2026-11-30T12:05:00.001Z")),
    enc(txn(timestamp="2027-01-01T00:00:00Z")),
    enc(txn(timestamp="2026-11-30T13:00:00+02:00")),
    enc(txn(timestamp="2026-11-30 11:00:00")),
    enc(txn(timestamp=" 2026-11-30T11:00:00.000Z ")),
    enc(txn(timestamp="2026-11-30T11:00:00.123456Z")),
    enc(txn(timestamp="2026-13-30T11:00:00.000Z")),
    enc(txn(timestamp="2026-02-30T11:00:00.000Z")),
    enc(txn(timestamp="2026-11-30T23:59:60.000Z")),
    enc(txn(transaction_id=None)),
    enc(txn(location="")),
    b'{"transaction_id":"t1","transaction_id":"t2","user_id":"u1","merchant_id":"m1",'
    b'"amount":1,"currency":"EUR","location":"X","timestamp":"2026-11-30T11:59:00.123Z"}',
    enc(txn()).replace(b'"amount": 12.5', b'"amount": NaN'),
    enc(txn()).replace(b'"amount": 12.5', b'"amount": Infinity'),
    enc(txn()).replace(b'"amount": 12.5', b'"amount": 1e400'),
    enc(txn()).replace(b'"amount": 12.5', b'"amount": -0'),
    enc(txn(extra=0)).replace(b'"extra": 0', b'"extra": NaN'),
    enc(txn(extra=1)).replace(b'"extra": 1', b'"extra": 1, "extra": 2'),
    enc(txn()) + b" trailing",
    enc(txn()) + enc(txn()),
    enc(txn()) + b"\n",
    b"  \t" + enc(txn()) + b" ",
    json.dumps(txn(), indent=2).encode(),
    b"\xef\xbb\xbf" + enc(txn()),
    enc(txn(location="\\ud800")).replace(b"\\\\ud800", b"\\ud800"),
    enc(txn(location="a\x00b")),
    b"not json",
    b"",
    b"[1, 2]",
    b'"a string"',
    b"null",
    b"{}",
    b'{"transaction_id": "t1", "amount": 3',
    b"\xff\xfe\x00garbage",
    b"{" * 5000 + b"}" * 5000,
    None,
]


def coords(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kafka_topic": ["transactions"] * n,
            "kafka_partition": np.zeros(n, dtype=np.int32),
            "kafka_offset": np.arange(n, dtype=np.int64),
        }
    )


def decoded(values: list[bytes | None], schema: RecordSchema = TRANSACTION) -> Any:
    """The driver's decode() of ``values``, all received at KAFKA_MS from offsets 0, 1, ... of
    partition 0 of ``transactions`` (the reference other tests compare against)."""
    ms = np.full(len(values), KAFKA_MS, dtype=np.int64)
    return decode(
        values, ms, coords(len(values)), schema, max_future_s=MAX_FUTURE_S, max_amount=MAX_AMOUNT
    )


def assert_agrees(values: list[bytes | None], schema: RecordSchema = TRANSACTION) -> int:
    """decode() over the whole batch == check_record() one by one; returns the fast count."""
    out = decoded(values, schema)
    expected_valid, expected_dead = [], []
    for i, v in enumerate(values):
        record, reason = check_record(
            v, KAFKA_MS, schema, max_future_s=MAX_FUTURE_S, max_amount=MAX_AMOUNT
        )
        (expected_dead if record is None else expected_valid).append((i, record, reason))
    assert out.dead["kafka_offset"].tolist() == [i for i, _, _ in expected_dead]
    assert out.dead["reason"].tolist() == [r for _, _, r in expected_dead]
    assert out.valid["kafka_offset"].tolist() == [i for i, _, _ in expected_valid]
    for row, (_, record, _) in zip(out.valid.to_dict("records"), expected_valid, strict=True):
        assert record is not None
        for f in schema.fields:
            got, want = row[f.name], record[f.name]
            if f.type == "timestamp":
                assert got == pd.Timestamp(want).floor("ms"), (f.name, got, want)
            elif f.type in ("double", "long", "int"):
                if want is None:
                    assert pd.isna(got), (f.name, got)
                else:
                    assert got == want and np.signbit(got) == np.signbit(want), (f.name, got, want)
            else:
                assert got == want or (want is None and got is None), (f.name, got, want)
    return out.fast


def test_hand_written_cases_agree_with_check_record() -> None:
    assert_agrees(CASES)


def test_ordinary_records_take_the_vectorised_path_despite_a_few_bad_ones() -> None:
    rng = random.Random(5)
    values: list[bytes | None] = [
        enc(txn(transaction_id=f"t{i}", amount=round(rng.uniform(1, 500), 2))) for i in range(400)
    ]
    for at, bad in zip((7, 150, 390), (b"not json", enc(txn(extra=1)), None), strict=True):
        values[at] = bad
    assert assert_agrees(values) >= 360


def test_each_case_alone_agrees_too() -> None:
    for value in CASES:
        assert_agrees([value])


def test_typical_verdicts() -> None:
    def reason(value: bytes | None) -> str | None:
        return check_record(
            value, KAFKA_MS, TRANSACTION, max_future_s=MAX_FUTURE_S, max_amount=MAX_AMOUNT
        )[1]

    assert reason(enc(txn())) is None
    assert reason(None) == reason(b"") == reason(b"\xff") == MALFORMED
    assert reason(enc(txn()).replace(b"12.5", b"NaN")) == MALFORMED
    assert reason(enc(txn(amount="12"))) == "type:amount"
    assert reason(enc(txn(timestamp="2026-11-30T12:05:00.001Z"))) == "future:timestamp"
    assert reason(enc(txn()) + b"x") == MALFORMED
    assert reason(b"[1]") == "not_an_object"


def test_valid_rows_are_typed_and_dead_rows_keep_the_raw_bytes() -> None:
    import base64

    out = decode(
        [enc(txn()), b"not json"],
        np.full(2, KAFKA_MS),
        coords(2),
        TRANSACTION,
        max_future_s=MAX_FUTURE_S,
        max_amount=MAX_AMOUNT,
    )
    ok, bad = out.valid.iloc[0], out.dead.iloc[0]
    assert ok["amount"] == 12.5 and ok["transaction_id"] == "t1"
    assert ok["timestamp"] == pd.Timestamp("2026-11-30T11:59:00.123Z")
    assert ok["kafka_ts"] == pd.Timestamp(KAFKA_TS)
    assert base64.b64decode(bad["raw_b64"]) == b"not json"
    assert bad["raw_preview"] == "not json" and bad["reason"] == MALFORMED
    assert (bad["kafka_topic"], bad["kafka_partition"], bad["kafka_offset"]) == (
        "transactions",
        0,
        1,
    )


def test_random_mutations_agree_with_check_record() -> None:
    """Fuzz: drop, retype or stretch random fields, in batches mixed with valid records."""
    rng = random.Random(7)
    junk: list[object] = [
        None, "", " ", "x", 0, -1, 1.5, 1e300, 2**70, True, [], {}, "2026-11-30", "EUR", "é",
        "2026-11-30T11:59:00.123Z", "2026-11-30T12:06:00.000Z", 90, -180, 1_000_000, 0.001,
    ]  # fmt: skip
    for _ in range(20):
        values: list[bytes | None] = []
        for _ in range(100):
            record: dict[str, object] = dict(txn(amount=round(rng.uniform(0.01, 999), 2)))
            for _k in range(rng.randint(0, 2)):
                name = rng.choice([*TRANSACTION.names, "extra"])
                if rng.random() < 0.3:
                    record.pop(name, None)
                else:
                    record[name] = rng.choice(junk)
            values.append(enc(record))
        assert_agrees(values)


def test_random_byte_damage_agrees_with_check_record() -> None:
    rng = random.Random(11)
    good = enc(txn())
    for _ in range(20):
        values: list[bytes | None] = []
        for _ in range(60):
            v = bytearray(good)
            for _k in range(rng.randint(0, 3)):
                at = rng.randrange(len(v))
                action = rng.random()
                if action < 0.4:
                    v[at] = rng.randrange(256)
                elif action < 0.7:
                    del v[at]
                else:
                    v.insert(at, rng.choice(b'{}[]",:\\ \n\tNaI0e-.'))
            values.append(bytes(v))
        assert_agrees(values)


def test_random_floats_parse_to_the_same_double() -> None:
    rng = random.Random(3)
    values: list[bytes | None] = []
    for _ in range(2_000):
        amount = (
            rng.uniform(0.0001, 999_999)
            if rng.random() < 0.5
            else rng.random() * 10 ** rng.randint(-8, 5)
        )
        values.append(enc(txn(amount=amount, lat=rng.uniform(-90, 90), lon=rng.uniform(-180, 180))))
    assert assert_agrees(values) > 1_900


def test_labels_are_validated_from_the_label_schema() -> None:
    ok = {
        "transaction_id": "t1",
        "label": 1,
        "fraud_type": "card_testing",
        "reported_at": "2026-11-30T11:00:00.000Z",
    }
    values: list[bytes | None] = [
        enc(ok),
        enc({**ok, "label": 2}),
        enc({**ok, "label": 0.5}),
        enc({**ok, "label": 1.0}),
        enc({**ok, "label": 0}),
        enc({**ok, "reported_at": None}),
        enc({**ok, "fraud_type": None}),
    ]
    assert_agrees(values, LABEL)
    out = decode(
        values,
        np.full(len(values), KAFKA_MS),
        coords(len(values)),
        LABEL,
        max_future_s=MAX_FUTURE_S,
        max_amount=MAX_AMOUNT,
    )
    assert out.dead["reason"].tolist() == ["value:label", "type:label", "missing:reported_at"]
    assert out.valid["label"].tolist() == [1, 1, 0, 1]


def test_a_batch_large_enough_to_be_read_on_several_threads_agrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A drain-sized batch is split over threads (rtfd.parallel): bad records in every span,
    and at the spans' edges, still get check_record's verdicts, and the rows keep their order."""
    import rtfd.parallel

    monkeypatch.setattr(rtfd.parallel, "threads", lambda: 3)
    n = 3 * rtfd.parallel.MIN_ROWS_PER_THREAD + 5
    edges = [s for s, _ in rtfd.parallel.spans(n)][1:]
    assert len(edges) == 2
    rng = random.Random(13)
    values: list[bytes | None] = [
        enc(txn(transaction_id=f"t{i}", amount=round(rng.uniform(1, 500), 2))) for i in range(n)
    ]
    bad = [b"not json", enc(txn(extra=1)), None, enc(txn(amount=-1)), b'{"amount": NaN}']
    spots = {0, n - 1, *edges, *(e - 1 for e in edges), *rng.sample(range(n), 40)}
    for k, at in enumerate(sorted(spots)):
        values[at] = bad[k % len(bad)]
    fast = assert_agrees(values)
    # A bad record sends at most its _MIN_SPLIT neighbours down the exact path.
    assert fast >= n - 16 * len(spots)
