"""Topic administration and liveness checks through the Kafka protocol itself."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rtfd.broker.base import TopicInfo
from rtfd.config import Settings
from rtfd.errors import BrokerError, BrokerUnavailable
from rtfd.schemas import Topics

log = logging.getLogger(__name__)

# librdkafka would otherwise print connection errors to stderr, which must never reach the TUI.
_QUIET: dict[str, Any] = {"log_level": 3, "logger": logging.getLogger("rtfd.kafka.client")}


@dataclass(frozen=True)
class TopicSpec:
    """A topic rtfd needs, with its partitions and config."""

    name: str
    partitions: int
    config: Mapping[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The four rtfd topics. Transactions and alerts scale with ``topic_partitions``; labels and
    dead letters are low-volume and keep one partition."""
    retention = {"retention.ms": str(int(settings.topic_retention_hours * 3_600_000))}
    n = settings.topic_partitions
    return [
        TopicSpec(Topics.TRANSACTIONS, n, retention),
        TopicSpec(Topics.ALERTS, n, retention),
        TopicSpec(Topics.LABELS, 1, retention),
        TopicSpec(Topics.DLQ, 1, {**retention, "max.message.bytes": str(2 * 1024 * 1024)}),
    ]


def _admin(config: Mapping[str, str]):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    return AdminClient({**config, **_QUIET})


def broker_answers(config: Mapping[str, str], timeout: float = 2.0) -> bool:
    """True when a broker answers a real metadata request within ``timeout`` seconds."""
    from confluent_kafka import KafkaException

    try:
        md = _admin(config).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(md.brokers)


def ensure_topics(
    config: Mapping[str, str], specs: list[TopicSpec], timeout: float = 30.0
) -> list[str]:
    """Create missing topics and grow under-partitioned ones; idempotent. Returns what changed."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewPartitions, NewTopic

    admin = _admin(config)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as e:
        raise BrokerUnavailable(
            f"cannot list topics at {config.get('bootstrap.servers')}: {e}"
        ) from e
    changes: list[str] = []
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=dict(s.config))
        for s in specs
        if s.name not in existing
    ]
    if new:
        for name, fut in admin.create_topics(new, request_timeout=timeout).items():
            try:
                fut.result()
                changes.append(f"created {name}")
            except KafkaException as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise BrokerError(f"could not create topic {name}: {e}") from e
    grow = [
        NewPartitions(s.name, s.partitions)
        for s in specs
        if s.name in existing and len(existing[s.name].partitions) < s.partitions
    ]
    if grow:
        for name, fut in admin.create_partitions(grow, request_timeout=timeout).items():
            fut.result()
            changes.append(f"grew {name}")
    _wait_for_leaders(admin, [s.name for s in specs], timeout)
    for s in specs:
        if s.name in existing and len(existing[s.name].partitions) > s.partitions:
            log.warning(
                "topic %s has %d partitions, more than the configured %d (Kafka cannot shrink)",
                s.name,
                len(existing[s.name].partitions),
                s.partitions,
            )
    return changes


def _wait_for_leaders(admin, names: list[str], timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Block until every partition of ``names`` has a leader, so clients can use them at once."""
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout)
        missing = [
            n
            for n in names
            if n not in md.topics
            or md.topics[n].error is not None
            or any(p.leader < 0 for p in md.topics[n].partitions.values())
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"topics without a leader after {timeout:.0f} s: {', '.join(missing)}"
            )
        time.sleep(0.2)


def describe_topics(
    config: Mapping[str, str], names: tuple[str, ...] = Topics.ALL
) -> list[TopicInfo]:
    """Partitions and message counts (high minus low watermark) of the given topics that exist."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    try:
        md = _admin(config).list_topics(timeout=5)
    except KafkaException as e:
        raise BrokerUnavailable(str(e)) from e
    consumer = Consumer(
        {**config, **_QUIET, "group.id": "rtfd-status", "enable.auto.commit": False}
    )
    try:
        out = []
        for name in names:
            topic = md.topics.get(name)
            if topic is None or topic.error is not None:
                continue
            total = 0
            for p in topic.partitions:
                lo, hi = _watermarks(consumer, TopicPartition(name, p))
                total += max(0, hi - lo)
            out.append(TopicInfo(name, len(topic.partitions), total))
        return out
    finally:
        consumer.close()


def _watermarks(consumer, tp) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Watermarks of one partition, retrying while a fresh partition's leader is being elected."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + 10
    while True:
        try:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=5)
            return int(lo), int(hi)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
