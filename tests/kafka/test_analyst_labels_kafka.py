"""Analysts' labels on a real broker: ``rtfd label`` and the console's case keys both land on
``fraud_labels`` as LABEL records with ``source = analyst`` and the decision time."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rtfd.cli import main
from rtfd.config import Settings
from rtfd.schemas import LABEL, Topics

pytestmark = pytest.mark.kafka


def labels_end(settings: Settings) -> int:
    """Create the rtfd topics if needed; the end offset of fraud_labels (one partition), once
    the new partition has a leader (right after creation the broker may answer "not leader")."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    from rtfd.broker import client_config
    from rtfd.broker.admin import ensure_topics, topic_specs

    config = client_config(settings)
    ensure_topics(config, topic_specs(settings))
    consumer = Consumer({**config, "group.id": "rtfd-test-labels", "enable.auto.commit": False})
    waiting = {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(Topics.LABELS, 0), timeout=10
                )
                return int(high)
            except KafkaException as e:
                if e.args[0].code() not in waiting or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


def read_labels(settings: Settings, start: int, n: int, timeout: float = 30.0) -> list[Any]:
    """``n`` records of fraud_labels from offset ``start`` as (key, record) pairs."""
    from confluent_kafka import Consumer, TopicPartition

    from rtfd.broker import client_config

    consumer = Consumer(
        {**client_config(settings), "group.id": "rtfd-test-labels", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(Topics.LABELS, 0, start)])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            got.append((msg.key().decode(), json.loads(msg.value())))
    finally:
        consumer.close()
    assert len(got) == n, f"{len(got)} of {n} records arrived: {got}"
    return got


def check_analyst(record: dict[str, Any], tx: str, label: int, before: datetime) -> None:
    out = LABEL.validate(record)  # what the stream's validator will see
    assert out["transaction_id"] == tx and out["label"] == label
    assert out["source"] == "analyst"
    assert before - timedelta(seconds=1) <= out["reported_at"] <= datetime.now(UTC)


def test_rtfd_label_publishes_the_verdict_and_its_undo(
    broker_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_analyst_labels import YOUNG, write_enriched

    broker_settings.ensure_dirs()
    write_enriched(broker_settings, {"tx_cli_1": YOUNG})
    start = labels_end(broker_settings)
    before = datetime.now(UTC)
    argv = ["--bootstrap-servers", broker_settings.broker_bootstrap_servers or "", "label"]
    assert main([*argv, "tx_cli_1", "legit"]) == 0
    assert main([*argv, "tx_cli_1", "legit", "--undo"]) == 0
    out = capsys.readouterr().out
    assert "legit verdict on tx_cli_1 recorded on fraud_labels" in out
    assert "withdrawn" in out
    (key1, first), (key2, undo) = read_labels(broker_settings, start, 2)
    assert key1 == key2 == "tx_cli_1"
    check_analyst(first, "tx_cli_1", 0, before)
    check_analyst(undo, "tx_cli_1", 0, before)
    assert "withdrawn" not in first and undo["withdrawn"] is True
    assert undo["reported_at"] >= first["reported_at"]


async def test_a_decision_in_the_console_lands_on_fraud_labels(broker_settings: Settings) -> None:
    """The case keys publish through the real Supervisor (not started: no broker of its own,
    so it reaches the external cluster of the settings) and its label producer."""
    from rtfd.supervisor import Supervisor
    from rtfd.tui.case import CaseScreen
    from rtfd.tui.panels import LivePanel
    from tests.tui.conftest import SIZE, RecordingApp, wait_for
    from tests.tui.fakes import alerts, fake_services
    from tests.tui.test_triage import CaseQueryService, open_case, state_column

    broker_settings.ensure_dirs()
    start = labels_end(broker_settings)
    supervisor = Supervisor(broker_settings, with_stream=False, with_generator=False)
    app = RecordingApp(
        broker_settings,
        supervisor,
        services=fake_services(query=CaseQueryService),
        autostart=False,
    )
    before = datetime.now(UTC)
    async with app.run_test(size=SIZE) as pilot:
        batch = alerts(3)
        live = app.query_one(LivePanel)
        live.add_alerts(batch)
        await wait_for(pilot, lambda: live.alerts_table.row_count == 3, "the alerts")
        screen = await open_case(pilot, app, row=0)
        assert isinstance(screen, CaseScreen)
        await pilot.press("f")
        await wait_for(
            pilot,
            lambda: screen.book.state(screen.transaction_id) == "confirmed",
            "the acknowledgement",
            timeout=30,
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: state_column(app)[0] == "confirmed", "the list's state")
    ((key, record),) = read_labels(broker_settings, start, 1)
    tx = batch[-1]["transaction_id"]  # the top row: the newest alert
    assert key == tx
    check_analyst(record, tx, 1, before)
