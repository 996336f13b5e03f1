"""The live generator without a broker: pacing, pause/resume/stop, labels, wire format."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from rtfd.config import Settings, load_settings
from rtfd.errors import BrokerUnavailable, ValidationError
from rtfd.generator.live import (
    LiveGenerator,
    Pacer,
    TransactionSource,
    produce_transactions,
)
from rtfd.generator.simulator import Simulator
from rtfd.generator.wire import TimestampFormatter, finish_transaction
from rtfd.schemas import LABEL, TRANSACTION, Topics, format_timestamp, parse_timestamp

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 2, 8, tzinfo=UTC).timestamp()


class FakeMessage:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """Records what is produced (with the monotonic time) and acknowledges it on poll."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.on_delivery: Callable[[Any, Any], None] = config["on_delivery"]
        self.sent: list[tuple[str, bytes, bytes, float]] = []
        self._pending: list[str] = []
        self._lock = threading.Lock()

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        with self._lock:
            self.sent.append((topic, value, key, time.monotonic()))
            self._pending.append(topic)

    def poll(self, timeout: float) -> int:
        with self._lock:
            pending, self._pending = self._pending, []
        for topic in pending:
            self.on_delivery(None, FakeMessage(topic))
        return len(pending)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


class Recorder:
    """A producer factory that keeps every producer it made."""

    def __init__(self) -> None:
        self.producers: list[FakeProducer] = []

    def __call__(self, config: dict[str, Any]) -> FakeProducer:
        p = FakeProducer(config)
        self.producers.append(p)
        return p

    def messages(self, topic: str) -> list[tuple[bytes, bytes, float]]:
        return [(v, k, t) for p in self.producers for (tp, v, k, t) in p.sent if tp == topic]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def small_settings() -> Settings:
    return load_settings(
        {"generator_users": 2_000, "generator_merchants": 400, "generator_fraud_rate": 0.05}
    )


def make_source(settings: Settings, run_id: int = 7) -> TransactionSource:
    return TransactionSource(Simulator.from_settings(settings), start=START, run_id=run_id)


def make_generator(
    settings: Settings, recorder: Recorder, *, rate: float, **kw: Any
) -> LiveGenerator:
    return LiveGenerator(
        settings, rate=rate, source=make_source(settings), producer_factory=recorder, **kw
    )


# --- wire -------------------------------------------------------------------------------------


def test_timestamp_formatter_matches_format_timestamp() -> None:
    fmt = TimestampFormatter()
    rng = np.random.default_rng(0)
    base = int(datetime(2001, 1, 1, tzinfo=UTC).timestamp() * 1000)
    draws = (base + rng.integers(0, 3_000_000_000_000, 2_000)).tolist()
    for ms in [*sorted(draws), base, base + 999, base + 1000]:
        dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
        assert fmt(ms) == format_timestamp(dt)


def test_drawn_transactions_are_schema_json_keyed_by_user(small_settings: Settings) -> None:
    rows = make_source(small_settings).take(5_000)
    ts = format_timestamp(datetime.now(UTC))
    ids = set()
    for row in rows:
        record = json.loads(finish_transaction(row.prefix, ts))
        assert list(record) == TRANSACTION.names
        TRANSACTION.validate(record)
        assert record["user_id"] == row.user_id
        assert record["transaction_id"] == row.transaction_id
        ids.add(row.transaction_id)
    assert len(ids) == len(rows)
    assert any(r.label for r in rows) and not all(r.label for r in rows)
    assert all((r.fraud_type is not None) == r.label for r in rows)


def test_same_seed_and_run_draw_the_same_stream(small_settings: Settings) -> None:
    a, b = make_source(small_settings, 1).take(3_000), make_source(small_settings, 1).take(3_000)
    assert a == b
    c = make_source(small_settings, 2).take(3_000)
    assert {r.transaction_id for r in a}.isdisjoint(r.transaction_id for r in c)
    assert [r.user_id for r in a] == [r.user_id for r in c]  # same behaviour, new ids


# --- pacing -----------------------------------------------------------------------------------


def test_pacer_owes_exactly_rate_times_elapsed() -> None:
    p = Pacer(100.0, now=0.0)
    assert p.owed(0.5, cap=10_000) == 50
    p.count += 50
    assert p.owed(1.0, cap=10_000) == 50
    assert p.owed(1.0, cap=20) == 20
    p.count += 50
    p.reset(1.0, rate=10.0)
    assert p.owed(1.45, cap=10_000) == 4
    assert p.due_time(p.count + 1, now=1.0) == pytest.approx(1.1)


def test_pacer_forgives_a_long_backlog() -> None:
    p = Pacer(1_000.0, now=0.0, max_lag_s=0.5)
    assert p.owed(60.0, cap=10**9) == 500  # not 60,000 at once


def test_pacer_infinite_rate_sends_a_burst_each_time() -> None:
    p = Pacer(float("inf"), now=0.0)
    assert p.owed(0.0, cap=123) == 123


# --- the generator thread ---------------------------------------------------------------------


def measure_rate(gen: LiveGenerator, seconds: float) -> float:
    s0, t0 = gen.stats().sent, time.monotonic()
    time.sleep(seconds)
    s1, t1 = gen.stats().sent, time.monotonic()
    return (s1 - s0) / (t1 - t0)


def test_rate_is_accurate_and_changeable_while_running(small_settings: Settings) -> None:
    rec = Recorder()
    gen = make_generator(small_settings, rec, rate=2_000)
    gen.start()
    try:
        wait_until(lambda: gen.stats().sent > 200, 5, "the first messages")
        assert measure_rate(gen, 1.5) == pytest.approx(2_000, rel=0.1)
        gen.set_rate(500)  # takes effect once its cards are drawn
        wait_until(lambda: gen.rate == 500, 10, "the new rate")
        time.sleep(0.1)
        assert measure_rate(gen, 1.5) == pytest.approx(500, rel=0.1)
    finally:
        final = gen.stop()
    assert final.sent == final.acked == len(rec.messages(Topics.TRANSACTIONS))
    assert not final.running and final.error is None


def test_pause_resume_and_restart_lose_or_duplicate_nothing(small_settings: Settings) -> None:
    rec = Recorder()
    gen = make_generator(small_settings, rec, rate=5_000)
    gen.start()
    wait_until(lambda: gen.stats().sent > 500, 5, "messages")
    gen.pause()
    assert gen.paused and gen.running
    time.sleep(0.05)
    paused_at = gen.stats().sent
    time.sleep(0.3)
    assert gen.stats().sent == paused_at  # nothing sent while paused
    gen.resume()
    wait_until(lambda: gen.stats().sent > paused_at + 500, 5, "messages after resume")
    first = gen.stop()
    assert not gen.running
    gen.start()  # a restart continues the same stream
    wait_until(lambda: gen.stats().sent > first.sent + 500, 5, "messages after restart")
    final = gen.stop()

    sent = rec.messages(Topics.TRANSACTIONS)
    ids = [json.loads(v)["transaction_id"] for v, _, _ in sent]
    assert len(ids) == final.sent == final.acked
    assert len(set(ids)) == len(ids)
    # Exactly the simulator's stream, in order: nothing skipped, nothing repeated.
    expected = [r.transaction_id for r in make_source(small_settings).take(len(ids))]
    assert ids == expected


def test_messages_are_valid_keyed_and_stamped_with_the_wall_clock(small_settings: Settings) -> None:
    rec = Recorder()
    gen = make_generator(small_settings, rec, rate=3_000)
    before = datetime.now(UTC)
    gen.start()
    wait_until(lambda: gen.stats().sent > 2_000, 5, "messages")
    gen.stop()
    after = datetime.now(UTC)
    last = before - timedelta(seconds=1)
    for value, key, _ in rec.messages(Topics.TRANSACTIONS):
        record = json.loads(value)
        valid = TRANSACTION.validate(record)
        assert key == record["user_id"].encode()
        ts = valid["timestamp"]
        assert before - timedelta(milliseconds=5) <= ts <= after
        assert ts >= last  # event time never goes backwards
        last = ts


def test_labels_follow_fraud_after_the_configured_delay(small_settings: Settings) -> None:
    rec = Recorder()
    gen = make_generator(small_settings, rec, rate=4_000, label_delay_s=0.3)
    gen.start()
    wait_until(lambda: gen.stats().sent >= 4_000, 5, "messages")
    gen.pause()
    wait_until(lambda: gen.stats().labels_pending == 0, 10, "all labels to fall due")
    final = gen.stop()

    sent = rec.messages(Topics.TRANSACTIONS)
    drawn = make_source(small_settings).take(len(sent))
    fraud = {r.transaction_id: r.fraud_type for r in drawn if r.label}
    tx_time = {json.loads(v)["transaction_id"]: t for v, _, t in sent}
    tx_ts = {json.loads(v)["transaction_id"]: json.loads(v)["timestamp"] for v, _, _ in sent}
    labels = rec.messages(Topics.LABELS)
    assert len(labels) == len(fraud) == final.labels_sent > 50
    delays, reported = [], []
    for value, key, t in labels:
        record = LABEL.validate(json.loads(value))
        tid = record["transaction_id"]
        assert key == tid.encode()
        assert record["label"] == 1 and record["fraud_type"] == fraud[tid]
        delays.append(t - tx_time[tid])
        event = parse_timestamp(tx_ts[tid])
        assert event is not None
        reported.append((record["reported_at"] - event).total_seconds())
    assert min(delays) > 0
    assert np.mean(delays) == pytest.approx(0.3, rel=0.3)
    assert np.mean(reported) == pytest.approx(0.3, rel=0.3)


def test_labels_keep_flowing_while_paused(small_settings: Settings) -> None:
    rec = Recorder()
    gen = make_generator(small_settings, rec, rate=4_000, label_delay_s=0.5)
    gen.start()
    wait_until(lambda: gen.stats().labels_pending > 20, 5, "pending labels")
    gen.pause()
    pending = gen.stats().labels_pending
    wait_until(lambda: gen.stats().labels_sent >= pending, 10, "labels during the pause")
    gen.stop()


def test_toggle_starts_pauses_and_resumes(small_settings: Settings) -> None:
    gen = make_generator(small_settings, Recorder(), rate=1_000)
    assert gen.toggle() is True and gen.running and not gen.paused
    assert gen.toggle() is False and gen.paused
    assert gen.toggle() is True and not gen.paused
    gen.stop()
    assert not gen.running


def test_stats_report_the_measured_rate(small_settings: Settings) -> None:
    gen = make_generator(small_settings, Recorder(), rate=1_000)
    gen.start()
    time.sleep(1.5)
    st = gen.stats()
    gen.stop()
    assert st.actual_rate == pytest.approx(1_000, rel=0.15)
    assert st.target_rate == 1_000 and st.running and not st.paused


def test_negative_rate_is_refused(small_settings: Settings) -> None:
    gen = make_generator(small_settings, Recorder(), rate=10)
    with pytest.raises(ValueError):
        gen.set_rate(-1)


def test_start_without_a_broker_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port

    settings = load_settings(
        {"broker_bootstrap_servers": f"127.0.0.1:{free_port()}", "generator_users": 100}
    )
    monkeypatch.setattr(LiveGenerator, "CHECK_TIMEOUT_S", 1.0)
    gen = LiveGenerator(settings)
    with pytest.raises(BrokerUnavailable, match="rtfd broker up"):
        gen.start()
    assert not gen.running


# --- produce_transactions ---------------------------------------------------------------------


def test_produce_transactions_mixes_in_malformed_messages(small_settings: Settings) -> None:
    rec = Recorder()
    ids = produce_transactions(
        small_settings, 2_000, malformed_share=0.1, producer_factory=rec, run_id=3
    )
    sent = rec.messages(Topics.TRANSACTIONS)
    assert len(sent) == 2_000 and len(ids) == 1_800 and len(set(ids)) == 1_800
    valid, reasons = [], set()
    for value, _, _ in sent:
        try:
            valid.append(TRANSACTION.validate(json.loads(value))["transaction_id"])
        except json.JSONDecodeError:
            reasons.add("malformed_json")
        except ValidationError as e:
            reasons.add(e.reason)
    assert valid == ids
    assert reasons == {"malformed_json", "type:amount", "missing:merchant_id", "range:amount"}
    labels = [json.loads(v) for v, _, _ in rec.messages(Topics.LABELS)]
    assert labels and {lab["transaction_id"] for lab in labels} <= set(ids)


def test_produce_transactions_without_labels(small_settings: Settings) -> None:
    rec = Recorder()
    ids = produce_transactions(small_settings, 500, labels=False, producer_factory=rec)
    assert len(ids) == 500 and not rec.messages(Topics.LABELS)
