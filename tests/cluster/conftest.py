"""Fixtures of the cluster tier: real multi-broker and secured Kafka clusters, and a Spark
standalone cluster (tests/cluster/spark_cluster.py), on 127.0.0.1.

The clusters are the embedded Apache Kafka's own nodes (:class:`rtfd.broker.cluster.
LocalKafkaCluster`: same jars, same :class:`~rtfd.broker.kafka.KafkaNode`), reached by rtfd
through the external backend as a real cluster would be. One bootstrap model is trained per
session and copied into each test's home (training costs ~20 s).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rtfd.config import Settings, load_settings

# Sized for a 2-core machine: three broker JVMs beside Spark and the generator.
NODE_HEAP_MB = 320


def cluster_home_settings(home: Path) -> Settings:
    """Settings that place a cluster's storage and logs under ``home`` (real jar cache)."""
    environ = {k: v for k, v in os.environ.items() if k == "RTFD_CACHE_DIR"}
    environ["RTFD_CONFIG"] = str(home / "no-config.toml")
    return load_settings({"home": str(home), "broker_start_timeout_s": 120}, environ=environ)


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding one bootstrap model, trained once for the session."""
    from rtfd.stream.scoring import ensure_model

    home = tmp_path_factory.mktemp("cluster-models")
    ensure_model(cluster_home_settings(home))
    return home / "models"


def install_model(models: Path, settings: Settings) -> None:
    """Copy the session's trained registry into ``settings``' home."""
    shutil.copytree(models, settings.models_dir, dirs_exist_ok=True)


class AckTracker:
    """Wraps the live generator's producer: records when each transaction was handed to the
    producer and when, and on which partition, the cluster acknowledged it; keeps the producer
    settings it was given."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.ids: list[str] = []
        self.acks: list[tuple[int, float, float]] = []  # (partition, sent at, acked at)
        self.sent_at: dict[str, float] = {}
        self.config: dict[str, Any] = {}
        self._lock = threading.Lock()

    def factory(self, config: dict[str, Any]) -> Any:
        from confluent_kafka import Producer

        self.config = dict(config)
        inner: Callable[[Any, Any], None] = config["on_delivery"]

        def on_delivery(err: Any, msg: Any) -> None:
            if err is None and msg.topic() == self.topic:
                tid = json.loads(msg.value())["transaction_id"]
                with self._lock:
                    self.ids.append(tid)
                    self.acks.append((msg.partition(), self.sent_at[tid], time.monotonic()))
            inner(err, msg)

        return _Timed(Producer({**config, "on_delivery": on_delivery}), self)

    def acked(self) -> int:
        with self._lock:
            return len(self.ids)

    def writable_again(self, t: float, partition: int) -> float | None:
        """When ``partition`` first acknowledged a transaction sent after ``t`` (None: not yet)."""
        with self._lock:
            return next((at for p, sent, at in self.acks if p == partition and sent > t), None)


class _Timed:
    """The producer, noting when each transaction is handed to it."""

    def __init__(self, producer: Any, tracker: AckTracker) -> None:
        self._producer = producer
        self._tracker = tracker

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        if topic == self._tracker.topic:
            tid = json.loads(value)["transaction_id"]
            with self._tracker._lock:
                self._tracker.sent_at[tid] = time.monotonic()
        self._producer.produce(topic, value=value, key=key)

    def poll(self, timeout: float) -> int:
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(timeout))


def read_topic(config: dict[str, Any], topic: str, *, timeout: float = 60.0) -> list[Any]:
    """Every message of ``topic`` from the beginning to its current end."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **config,
            "group.id": f"rtfd-cluster-test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=15)
        parts = list(md.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
            for p in parts
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Any] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout:.0f} s")
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error() is not None:
                    continue
                out.append(msg)
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        return out
    finally:
        consumer.close()


def wait_for(cond: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``cond`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three combined KRaft nodes (broker + controller) on 127.0.0.1, for the module."""
    from rtfd.broker.cluster import LocalKafkaCluster

    home = tmp_path_factory.mktemp("kafka-cluster")
    brokers = LocalKafkaCluster(cluster_home_settings(home), nodes=3, heap_mb=NODE_HEAP_MB)
    t0 = time.monotonic()
    brokers.start()
    brokers.start_s = time.monotonic() - t0  # type: ignore[attr-defined]
    try:
        yield brokers
    finally:
        brokers.stop()


@pytest.fixture(scope="module")
def spark_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Spark standalone master and two workers (one core, 1 GB each) on 127.0.0.1, for the
    module (tests/cluster/spark_cluster.py); every JVM of it is gone afterwards."""
    from tests.cluster.spark_cluster import SparkStandalone

    spark = SparkStandalone(tmp_path_factory.mktemp("spark-standalone"), workers=2, memory="1g")
    t0 = time.monotonic()
    try:
        spark.start()
        spark.start_s = time.monotonic() - t0  # type: ignore[attr-defined]
        yield spark
    finally:
        spark.stop()
    left = spark.leftovers()
    assert not left, f"processes of the Spark cluster outlived it: {left}"
