"""The alert consumer against the real embedded Kafka: it tails from the end, reports state."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from rtfd.config import Settings
from rtfd.tui.alerts import AlertFeed
from tests.tui.fakes import alerts

pytestmark = pytest.mark.kafka


def produce(config: dict[str, str], topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({**config, "enable.idempotence": True, "acks": "all"})
    for v in values:
        producer.produce(topic, value=v)
    assert producer.flush(30) == 0


def create_topic(config: dict[str, str], topic: str, partitions: int = 3) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(dict(config))
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)


class Collector:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.states: list[tuple[bool, str]] = []
        self.lock = threading.Lock()

    def on_alerts(self, batch: list[dict[str, Any]]) -> None:
        with self.lock:
            self.alerts.extend(batch)

    def on_state(self, ok: bool, detail: str) -> None:
        with self.lock:
            self.states.append((ok, detail))

    # 90 s: in one full-suite run on a loaded 2-core machine the backfill did not arrive within
    # 30 s of the assignment (it passes in 16 s alone); the cause is not understood yet.
    def wait(self, predicate: Any, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}: {self.states}, {len(self.alerts)} alert(s) so far"
        )


def test_feed_backfills_a_little_then_tails_new_alerts(
    broker_settings: Settings, unique_topic: str
) -> None:
    from rtfd.broker import client_config

    config = client_config(broker_settings)
    create_topic(config, unique_topic)
    old = alerts(30, seed=1)
    produce(config, unique_topic, [json.dumps(a).encode() for a in old])
    got = Collector()
    feed = AlertFeed(config, got.on_alerts, got.on_state, topic=unique_topic, backfill=2)
    started = time.monotonic()
    feed.start()
    try:
        got.wait(lambda: got.states and got.states[-1][0], "the assignment")
        got.wait(lambda: len(got.alerts) >= 6, "the backfill")  # 2 per partition x 3
        assert all(a["_backfill"] for a in got.alerts)
        new = alerts(5, seed=2)
        produce(config, unique_topic, [json.dumps(a).encode() for a in new] + [b"not json"])
        got.wait(lambda: len(got.alerts) >= 11, "the new alerts")
        live = [a for a in got.alerts if not a["_backfill"]]
        assert sorted(a["alert_id"] for a in live) == sorted(a["alert_id"] for a in new)
        sent = {a["alert_id"]: a for a in new}
        assert all(a["reasons"] == sent[a["alert_id"]]["reasons"] for a in live)
        assert time.monotonic() - started < 15  # no consumer-group join delay
    finally:
        feed.stop()
    assert not feed.running


def test_feed_waits_for_a_topic_that_does_not_exist_yet(
    broker_settings: Settings, unique_topic: str
) -> None:
    from rtfd.broker import client_config

    config = client_config(broker_settings)
    got = Collector()
    feed = AlertFeed(config, got.on_alerts, got.on_state, topic=unique_topic)
    feed.start()
    try:
        create_topic(config, unique_topic, partitions=1)
        got.wait(lambda: got.states and got.states[-1][0], "the assignment")
        produce(config, unique_topic, [json.dumps(alerts(1)[0]).encode()])
        got.wait(lambda: got.alerts, "the alert")
    finally:
        feed.stop()


def test_feed_reports_an_unreachable_broker_and_stops_quickly(settings: Settings) -> None:
    from tests.conftest import free_port

    got = Collector()
    config = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}
    feed = AlertFeed(config, got.on_alerts, got.on_state, topic="fraud_alerts")
    feed.start()
    try:
        got.wait(lambda: got.states and not got.states[-1][0], "the failure", timeout=20)
    finally:
        began = time.monotonic()
        feed.stop(timeout=5)
        assert time.monotonic() - began < 5.5
    assert not feed.running
