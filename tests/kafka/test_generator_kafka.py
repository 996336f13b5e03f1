"""The generator against the real embedded broker: rate, validity, no duplicates, labels.

The live rate check runs 15 s at 1,000 tx/s by default; ``RTFD_TEST_GENERATOR_SECONDS=60`` runs the
full acceptance check (60 s, 60,000 +- 3 %).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtfd.broker import client_config
from rtfd.broker.admin import TopicSpec, ensure_topics
from rtfd.cli import main
from rtfd.config import Settings
from rtfd.errors import BrokerError, ValidationError
from rtfd.generator.history import simulate_history, write_history
from rtfd.generator.live import LiveGenerator, cards_for_rate, produce_transactions
from rtfd.generator.replay import FileSource, read_transactions_file
from rtfd.schemas import LABEL, TRANSACTION

pytestmark = pytest.mark.kafka

LIVE_SECONDS = float(os.environ.get("RTFD_TEST_GENERATOR_SECONDS", "15"))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def topics(broker_settings: Settings, unique_topic: str) -> tuple[str, str]:
    tx, labels = unique_topic, f"{unique_topic}-labels"
    ensure_topics(client_config(broker_settings), [TopicSpec(tx, 3, {}), TopicSpec(labels, 1, {})])
    return tx, labels


def topic_size(settings: Settings, topic: str) -> int:
    """Messages in a topic: the sum of the partitions' high watermarks (nothing is deleted)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_config(settings), "group.id": f"size-{uuid.uuid4().hex}"})
    try:
        md = consumer.list_topics(topic, timeout=10)
        total = 0
        for p in md.topics[topic].partitions:
            _, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi
        return total
    finally:
        consumer.close()


def consume(settings: Settings, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    """Every message of ``topic`` (``expected`` of them) as (key, value, broker timestamp ms)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error() is None:
                    got.append((msg.key(), msg.value(), msg.timestamp()[1]))
    finally:
        consumer.close()
    assert len(got) == expected, f"consumed {len(got)} of {expected} from {topic}"
    return got


def test_live_rate_validity_and_delayed_labels(
    broker_settings: Settings, topics: tuple[str, str]
) -> None:
    """1,000 tx/s for LIVE_SECONDS: count within 3 %, all valid, no duplicates, labels after
    the configured delay."""
    tx_topic, label_topic = topics
    rate, delay = 1_000.0, 2.0
    gen = LiveGenerator(
        broker_settings, topic=tx_topic, labels_topic=label_topic, rate=rate, label_delay_s=delay
    )
    gen.start()
    started = time.monotonic()
    time.sleep(LIVE_SECONDS)
    gen.pause()
    elapsed = time.monotonic() - started
    sent = gen.stats().sent
    wait_until(lambda: gen.stats().labels_pending == 0, 60, "the last labels to fall due")
    final = gen.stop()
    print(f"live: {sent} messages in {elapsed:.2f} s = {sent / elapsed:.1f} tx/s")

    delivered = topic_size(broker_settings, tx_topic)
    assert delivered == final.sent == final.acked == sent
    assert final.failed == 0 and final.error is None
    assert delivered == pytest.approx(rate * LIVE_SECONDS, rel=0.03)

    now = datetime.now(UTC)
    messages = consume(broker_settings, tx_topic, delivered)
    ids: set[str] = set()
    event_time: dict[str, datetime] = {}
    for key, value, _ in messages:
        record = TRANSACTION.validate(json.loads(value), now=now)
        assert key == record["user_id"].encode()
        ids.add(record["transaction_id"])
        event_time[record["transaction_id"]] = record["timestamp"]
    assert len(ids) == delivered  # no duplicate transaction_id

    n_labels = topic_size(broker_settings, label_topic)
    assert n_labels == final.labels_sent
    assert 0.004 * delivered < n_labels < 0.02 * delivered  # ~1 % fraud
    delays, arrivals = [], []
    for key, value, broker_ms in consume(broker_settings, label_topic, n_labels):
        label = LABEL.validate(json.loads(value), now=now)
        tid = label["transaction_id"]
        assert key == tid.encode() and tid in ids and label["label"] == 1
        delays.append((label["reported_at"] - event_time[tid]).total_seconds())
        arrivals.append(broker_ms / 1000 - event_time[tid].timestamp())
    assert min(arrivals) > 0
    assert np.mean(delays) == pytest.approx(delay, rel=0.3)
    assert np.mean(arrivals) == pytest.approx(delay, rel=0.3)


def test_produce_transactions_with_malformed_messages(
    broker_settings: Settings, topics: tuple[str, str]
) -> None:
    tx_topic, label_topic = topics
    ids = produce_transactions(
        broker_settings, 5_000, topic=tx_topic, labels_topic=label_topic, malformed_share=0.05
    )
    assert len(ids) == 4_750
    assert topic_size(broker_settings, tx_topic) == 5_000
    valid, bad = [], 0
    for _, value, _ in consume(broker_settings, tx_topic, 5_000):
        try:
            valid.append(TRANSACTION.validate(json.loads(value))["transaction_id"])
        except (json.JSONDecodeError, ValidationError):
            bad += 1
    assert bad == 250 and sorted(valid) == sorted(ids)
    assert topic_size(broker_settings, label_topic) > 0


def test_replay_of_a_history_file(
    broker_settings: Settings, topics: tuple[str, str], tmp_path: Path
) -> None:
    tx_topic, label_topic = topics
    history = simulate_history(1, users=500, merchants=100, fraud_rate=0.05, seed=9)
    path = write_history(history, tmp_path / "h.parquet")
    source = FileSource(read_transactions_file(path))
    gen = LiveGenerator(
        broker_settings,
        topic=tx_topic,
        labels_topic=label_topic,
        rate=float("inf"),
        source=source,
        label_delay_s=0.1,
    )
    gen.start()
    assert gen.wait(60)
    assert topic_size(broker_settings, tx_topic) == len(history)
    assert topic_size(broker_settings, label_topic) == int(history["label"].sum())
    first = TRANSACTION.validate(json.loads(consume(broker_settings, tx_topic, len(history))[0][1]))
    assert first["timestamp"] < datetime(2026, 1, 3, tzinfo=UTC)  # kept its own event time


def test_cli_generate_runs_for_a_duration(
    broker_settings: Settings, topics: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tx_topic, label_topic = topics
    args = ["--bootstrap-servers", broker_settings.broker_bootstrap_servers, "generate"]
    args += ["--rate", "500", "--duration", "3", "--topic", tx_topic]
    args += ["--labels-topic", label_topic, "--users", "1000"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    # The rate sets the cards (--users is for offline histories): 500 tx/s at the default
    # time-lapse is about 25,000 cards, said before the run and in its summary.
    cards = cards_for_rate(broker_settings, 500)
    assert 20_000 < cards < 30_000
    assert f"rtfd: {cards:,} cards active at 500 tx/s; time-lapse 600" in err
    assert f"transactions from {cards:,} cards in" in out
    assert topic_size(broker_settings, tx_topic) == pytest.approx(1_500, rel=0.1)


def test_start_refuses_a_missing_topic(broker_settings: Settings) -> None:
    gen = LiveGenerator(broker_settings, topic=f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(BrokerError, match="does not exist"):
        gen.start()
    assert not gen.running


def test_cli_replay_of_a_csv_file(
    broker_settings: Settings, topics: tuple[str, str], tmp_path: Path
) -> None:
    tx_topic, label_topic = topics
    history = simulate_history(0.5, users=300, merchants=60, fraud_rate=0.05, seed=11)
    path = tmp_path / "h.csv"
    history.drop(columns=["currency", "channel"]).to_csv(path, index=False)
    args = ["--bootstrap-servers", broker_settings.broker_bootstrap_servers, "replay", str(path)]
    args += ["--as-fast-as-possible", "--retime", "--label-delay", "0.1"]
    args += ["--topic", tx_topic, "--labels-topic", label_topic, "--currency", "EUR"]
    assert main(args) == 0
    assert topic_size(broker_settings, tx_topic) == len(history)
    assert topic_size(broker_settings, label_topic) == int(history["label"].sum())
    now = datetime.now(UTC)
    for _, value, _ in consume(broker_settings, tx_topic, len(history)):
        record = TRANSACTION.validate(json.loads(value), now=now)
        assert record["currency"] == "EUR"
        assert (now - record["timestamp"]).total_seconds() < 120  # retimed to the wall clock
