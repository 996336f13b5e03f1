"""Analyst labels on a real broker: `rtfd label`, the supervisor's publisher and the console.

Each test labels transactions with ids of its own and reads ``fraud_labels`` back from the
session's embedded Kafka, so the shared topic's other records do not matter.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from rtfd.broker import client_config
from rtfd.broker.admin import ensure_topics, topic_specs
from rtfd.cli import main
from rtfd.config import Settings
from rtfd.schemas import LABEL, Topics
from rtfd.sysinfo import free_port

pytestmark = pytest.mark.kafka

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def settings(broker_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The session broker's settings, also for `rtfd` commands run in the test (environment)."""
    servers = broker_settings.broker_bootstrap_servers
    assert servers
    monkeypatch.setenv("RTFD_BROKER_BOOTSTRAP_SERVERS", servers)
    broker_settings.ensure_dirs()
    ensure_topics(client_config(broker_settings), topic_specs(broker_settings))
    return broker_settings


def write_enriched(settings: Settings, ids: list[str]) -> None:
    frame = pd.DataFrame(
        {
            "transaction_id": ids,
            "user_id": "u1",
            "merchant_id": "m1",
            "amount": 12.5,
            "timestamp": pd.Timestamp(NOW),
            "fraud_score": 0.9,
            "is_fraud": True,
        }
    )
    part = settings.enriched_dir / f"event_date={NOW:%Y-%m-%d}"
    part.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(part / f"part-{uuid.uuid4().hex[:6]}.parquet", index=False)


def labels_for(settings: Settings, ids: set[str], expected: int, timeout: float = 30) -> list[Any]:
    """Every fraud_labels record of ``ids``, decoded and validated, in topic order."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([Topics.LABELS])
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            record = json.loads(msg.value())
            if record.get("transaction_id") in ids:
                assert msg.key().decode() == record["transaction_id"]
                got.append(LABEL.validate(record))
    finally:
        consumer.close()
    return got


def test_rtfd_label_publishes_analyst_labels_and_undoes_them(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    fraud, legit = f"tx-{uuid.uuid4().hex}", f"tx-{uuid.uuid4().hex}"
    write_enriched(settings, [fraud, legit])
    assert main(["label", fraud, "fraud"]) == 0
    assert main(["label", legit, "LEGIT"]) == 0
    out = capsys.readouterr().out
    assert f"{fraud} confirmed fraud" in out and f"{legit} cleared" in out
    got = labels_for(settings, {fraud, legit}, 2)
    assert [(r["transaction_id"], r["label"], r["source"]) for r in got] == [
        (fraud, 1, "analyst"),
        (legit, 0, "analyst"),
    ]
    assert all(not r["retracted"] and abs((r["reported_at"] - NOW).total_seconds()) < 120
               for r in got)  # fmt: skip

    # Undo reads the standing decision from the labels table, as the stream would have it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rtfd.stream.sinks import labels_arrow_schema

    row = {**got[0], "kafka_partition": 0, "kafka_offset": 0}
    part = settings.labels_dir / f"report_date={NOW:%Y-%m-%d}"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([row], labels_arrow_schema()), part / "part-0.parquet")
    assert main(["label", fraud, "undo"]) == 0
    got = labels_for(settings, {fraud}, 2)
    assert got[-1]["retracted"] is True and got[-1]["label"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["label", "tx-never-seen", "fraud"], "no transaction 'tx-never-seen' in enriched"),
        (["label", "KNOWN", "maybe"], "the verdict is fraud or legit, got 'maybe'"),
        (["label", "KNOWN", ""], "the verdict is fraud or legit"),
        (["label", "KNOWN", "undo"], "no analyst decision on KNOWN to undo"),
        (["label", "", "fraud"], "not a transaction id"),
        (["label", "x" * 129, "fraud"], "not a transaction id"),
        (["label", "tx\x1b[2J", "fraud"], "not a transaction id"),
        (["label", "KNOWN"], "Invalid argument"),
    ],
)
def test_rtfd_label_refuses_bad_input_in_one_line(
    settings: Settings, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    known = f"tx-{uuid.uuid4().hex}"
    write_enriched(settings, [known])
    argv = [known if a == "KNOWN" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors exit from parse_args
        code = int(e.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rtfd: ")
    assert message.replace("KNOWN", known) in err
    assert "\x1b" not in err


def test_rtfd_label_with_the_broker_down_is_one_line_within_seconds(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = f"tx-{uuid.uuid4().hex}"
    write_enriched(settings, [tid])
    monkeypatch.setenv("RTFD_BROKER_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    began = time.monotonic()
    assert main(["label", tid, "fraud"]) == 2
    assert time.monotonic() - began < 15
    err = capsys.readouterr().err
    assert err.startswith("rtfd: Broker unavailable: no Kafka broker answers at 127.0.0.1:")
    assert err.count("\n") == 1


async def test_the_console_publishes_a_decision_through_the_real_supervisor(
    settings: Settings,
) -> None:
    """The TUI's path: case screen -> TriageDesk -> Supervisor.publish_label -> fraud_labels."""
    from rtfd.supervisor import Supervisor
    from rtfd.tui.app import RtfdApp
    from rtfd.tui.backends import Services
    from rtfd.tui.case import CaseScreen
    from tests.tui.conftest import SIZE, wait_for
    from tests.tui.fakes import FakeAlertFeed

    tid = f"tx-{uuid.uuid4().hex}"
    write_enriched(settings, [tid])
    supervisor = Supervisor(settings, with_stream=False, with_generator=False)
    services = Services()
    services.alert_feed = FakeAlertFeed
    app = RtfdApp(settings, supervisor, services=services, autostart=False)
    alert = {"transaction_id": tid, "user_id": "u1", "merchant_id": "m1", "fraud_score": 0.9,
             "threshold": 0.5, "timestamp": NOW.isoformat(), "reasons": ["amount 9x"]}  # fmt: skip
    try:
        async with app.run_test(size=SIZE) as pilot:
            app.live.add_alerts([alert])
            app.live.alerts_table.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, CaseScreen), "the case")
            await pilot.press("f")
            state = app.live.triage.state
            await wait_for(pilot, lambda: state(tid).value == "confirmed", "the ack", timeout=30)
            await pilot.press("u")
            await wait_for(pilot, lambda: state(tid).value == "open", "the undo ack", timeout=30)
    finally:
        supervisor.stop(timeout=5)
    got = labels_for(settings, {tid}, 2)
    assert [(r["label"], r["source"], r["retracted"]) for r in got] == [
        (1, "analyst", False),
        (1, "analyst", True),
    ]
