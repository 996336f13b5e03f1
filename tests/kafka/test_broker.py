"""The embedded Apache Kafka, for real: produce, consume, topics, restarts, orphans, binding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtfd.broker.admin import describe_topics, ensure_topics, topic_specs
from rtfd.broker.kafka import EmbeddedKafka, PidRecord
from rtfd.config import Settings, load_settings
from rtfd.errors import BrokerError
from rtfd.schemas import Topics
from rtfd.sysinfo import free_port, pid_alive

pytestmark = pytest.mark.kafka


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def produce(config: dict[str, str], topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({**config, "enable.idempotence": True, "acks": "all"})
    for i, v in enumerate(values):
        producer.produce(topic, key=str(i).encode(), value=v)
    assert producer.flush(30) == 0


def consume_all(
    config: dict[str, str], topic: str, expected: int, timeout: float = 30
) -> list[bytes]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **config,
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
    finally:
        consumer.close()
    return got


def test_produce_and_consume_round_trip(broker_settings: Settings, unique_topic: str) -> None:
    from rtfd.broker import client_config

    config = client_config(broker_settings)
    values = [f"message {i}".encode() for i in range(500)]
    produce(config, unique_topic, values)
    assert sorted(consume_all(config, unique_topic, 500)) == sorted(values)


def test_topic_creation_is_idempotent_and_grows_partitions(broker_settings: Settings) -> None:
    from rtfd.broker import client_config

    config = client_config(broker_settings)
    specs = topic_specs(broker_settings)
    first = ensure_topics(config, specs)
    assert ensure_topics(config, specs) == []  # nothing left to do
    infos = {t.name: t for t in describe_topics(config)}
    assert set(infos) == set(Topics.ALL)
    assert infos[Topics.TRANSACTIONS].partitions == broker_settings.topic_partitions
    assert infos[Topics.LABELS].partitions == 1
    assert first == [] or all(c.startswith("created") for c in first)
    more = broker_settings.replace(topic_partitions=broker_settings.topic_partitions + 1)
    assert f"grew {Topics.TRANSACTIONS}" in ensure_topics(config, topic_specs(more))


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    """A second broker with its own data dir, for tests that stop and restart it."""
    settings = load_settings(
        {
            "home": str(tmp_path / "own"),
            "broker_backend": "kafka",
            "broker_port": free_port(),
            "broker_controller_port": free_port(),
        },
        environ={k: v for k, v in os.environ.items() if k == "RTFD_CACHE_DIR"},
    )
    broker = EmbeddedKafka(settings)
    yield broker
    broker.stop()


def test_restart_keeps_topics_and_messages(own_broker: EmbeddedKafka) -> None:
    own_broker.start()
    config = own_broker.client_config()
    ensure_topics(config, topic_specs(own_broker.settings))
    produce(config, Topics.TRANSACTIONS, [b"kept-%d" % i for i in range(50)])
    own_broker.stop()
    assert not own_broker.is_running()
    own_broker.start()
    counts = {t.name: t.messages for t in describe_topics(config)}
    assert counts[Topics.TRANSACTIONS] == 50
    assert set(counts) == set(Topics.ALL)
    assert len(consume_all(config, Topics.TRANSACTIONS, 50)) == 50


def test_listens_on_loopback_only(kafka_broker: EmbeddedKafka) -> None:
    port = kafka_broker.settings.broker_port
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    local = [line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{port}")]
    assert local, f"nothing listens on {port}"
    assert all(addr.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]") for addr in local)


def test_a_busy_port_gives_a_clear_error(
    own_broker: EmbeddedKafka, kafka_broker: EmbeddedKafka
) -> None:
    busy = own_broker.settings.replace(broker_port=kafka_broker.settings.broker_port)
    with pytest.raises(BrokerError, match=r"already in use.*RTFD_BROKER_PORT"):
        EmbeddedKafka(busy).start()


def test_no_orphan_jvm_when_rtfd_is_killed(tmp_path: Path) -> None:
    """kill -9 of the process that started the broker takes the broker's JVM down with it."""
    home = tmp_path / "orphan"
    code = (
        "import sys, time\n"
        "from rtfd.config import load_settings\n"
        "from rtfd.broker.kafka import EmbeddedKafka\n"
        f"s = load_settings({{'home': {str(home)!r}, 'broker_backend': 'kafka', "
        f"'broker_port': {free_port()}, 'broker_controller_port': {free_port()}}})\n"
        "EmbeddedKafka(s).start()\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RTFD_HOME"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        record = PidRecord.read(home / "run" / "kafka.pid")
        assert record is not None and pid_alive(record.pid)
        jvms = _children_of(record.pid)
        assert jvms, "the guard has no JVM child"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_until(
            lambda: not any(pid_alive(p) for p in [record.pid, *jvms]), 40, "the JVM to exit"
        )
    finally:
        if proc.poll() is None:
            proc.kill()


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]
