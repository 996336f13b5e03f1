"""Topic administration and liveness checks through the Kafka protocol itself.

The lowest layer of the broker package besides :mod:`rtfd.broker.clients`: the backends
(:mod:`rtfd.broker.base` and its subclasses) use it, it uses none of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtfd.broker.clients import QUIET
from rtfd.broker.clients import admin as admin_client
from rtfd.broker.clients import consumer as consumer_client
from rtfd.config import Settings
from rtfd.errors import BrokerError, BrokerUnavailable
from rtfd.schemas import Topics

log = logging.getLogger(__name__)

#: How often a metadata request is retried while waiting for a broker (an authentication or TLS
#: failure shows up between two tries, so it is reported at once instead of after the timeout).
_PROBE_S = 1.0


class BrokerAuthFailed(BrokerUnavailable):
    """The cluster answers but refuses rtfd's credentials (or its TLS certificate)."""

    title = "Broker authentication failed"


@dataclass(frozen=True)
class TopicInfo:
    """One topic as the broker reports it."""

    name: str
    partitions: int
    messages: int  # sum over partitions of (high watermark - low watermark)


@dataclass(frozen=True)
class TopicSpec:
    """A topic rtfd needs, with its partitions and config.

    ``replication`` and ``min_insync`` are a number or ``auto`` (the settings
    ``topic_replication_factor`` and ``topic_min_insync_replicas``): they are resolved against
    the brokers that answer when the topic is created (:func:`replication_for`).
    """

    name: str
    partitions: int
    config: Mapping[str, str]
    replication: str = "auto"
    min_insync: str = "auto"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The four rtfd topics. Transactions and alerts scale with ``topic_partitions``; labels and
    dead letters are low-volume and keep one partition."""
    retention = {"retention.ms": str(int(settings.topic_retention_hours * 3_600_000))}
    n = settings.topic_partitions
    rf, isr = str(settings.topic_replication_factor), str(settings.topic_min_insync_replicas)
    return [
        TopicSpec(Topics.TRANSACTIONS, n, retention, rf, isr),
        TopicSpec(Topics.ALERTS, n, retention, rf, isr),
        TopicSpec(Topics.LABELS, 1, retention, rf, isr),
        TopicSpec(Topics.DLQ, 1, {**retention, "max.message.bytes": str(2 * 1024 * 1024)}, rf, isr),
    ]


def replication_for(spec: TopicSpec, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a topic created with ``brokers`` answering.

    auto replication is min(3, brokers); auto min.insync is 2 from three replicas up (acks=all
    then needs two copies, and one broker may be down), else 1. A number asking for more than
    there is is refused here, in words, rather than by the broker's INVALID_REPLICATION_FACTOR.
    """
    rf = min(3, brokers) if spec.replication == "auto" else int(spec.replication)
    isr = (2 if rf >= 3 else 1) if spec.min_insync == "auto" else int(spec.min_insync)
    if rf > brokers:
        raise BrokerError(
            f"topic {spec.name}: topic_replication_factor {rf} needs {rf} brokers, and "
            f"{brokers} answer; lower it or use auto"
        )
    if isr > rf:
        raise BrokerError(
            f"topic {spec.name}: topic_min_insync_replicas {isr} is more than its {rf} "
            "replica(s): no write could be acknowledged; lower it or use auto"
        )
    return rf, isr


def broker_answers(config: Mapping[str, Any], timeout: float = 2.0) -> bool:
    """True when a broker answers a real metadata request within ``timeout`` seconds."""
    from confluent_kafka import KafkaException

    try:
        md = admin_client(config).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(md.brokers)


def registered_brokers(config: Mapping[str, Any], timeout: float = 2.0) -> int:
    """How many brokers the cluster's metadata lists (0 when none answers)."""
    from confluent_kafka import KafkaException

    try:
        return len(admin_client(config).list_topics(timeout=timeout).brokers)
    except KafkaException:
        return 0


def cluster_metadata(
    config: Mapping[str, Any], timeout: float, *, unavailable: str | None = None
) -> tuple[Any, Any]:
    """(admin client, cluster metadata), waiting up to ``timeout`` seconds for a broker.

    Raises :class:`BrokerAuthFailed` as soon as the cluster refuses the credentials or the TLS
    handshake fails (librdkafka reports both through ``error_cb`` and would otherwise retry until
    the timeout), and :class:`BrokerUnavailable` with ``unavailable`` (or a default line) when no
    broker answers in time.
    """
    from confluent_kafka import KafkaException

    errors: list[Any] = []

    def on_error(err: Any) -> None:
        log.info("kafka: %s", err.str() if hasattr(err, "str") else err)
        errors.append(err)

    # poll() below serves librdkafka's log queue too: its per-retry connection lines stay out of
    # the terminal (log_level 2); the errors themselves reach rtfd.log through on_error.
    admin = admin_client(config, error_cb=on_error, log_level=2)
    where = config.get("bootstrap.servers")
    deadline = time.monotonic() + timeout
    while True:
        step = max(0.1, min(_PROBE_S, deadline - time.monotonic()))
        try:
            return admin, admin.list_topics(timeout=step)
        except KafkaException as e:
            last: Exception = e
        admin.poll(0)  # serves error_cb
        refused = refusal(errors, where)
        if refused is not None:
            raise refused from last
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(
                unavailable or f"no Kafka broker answers at {where} within {timeout:.0f} s"
            ) from last


def refusal(errors: Sequence[Any], where: object) -> BrokerAuthFailed | None:
    """The error to raise when librdkafka ``errors`` include an authentication or TLS failure.

    The message names the brokers and says "authentication failed" (or "TLS handshake failed"),
    with librdkafka's reason, which never holds the password."""
    from confluent_kafka import KafkaError

    for err in errors:
        code = err.code() if hasattr(err, "code") else None
        reason = err.str() if hasattr(err, "str") else str(err)
        if code == KafkaError._AUTHENTICATION:
            return BrokerAuthFailed(
                f"authentication failed at {where}: {reason}; check broker_sasl_username, "
                "broker_sasl_password and broker_sasl_mechanism"
            )
        if code == KafkaError._SSL:
            return BrokerAuthFailed(
                f"TLS handshake failed at {where}: {reason}; check broker_security and "
                "broker_ssl_ca_file",
                title="Broker TLS handshake failed",
            )
    return None


def check_topics(
    config: Mapping[str, Any], names: Sequence[str], timeout: float, *, unavailable: str
) -> None:
    """Raise unless every topic in ``names`` exists (BrokerAuthFailed, BrokerUnavailable with
    ``unavailable``, or BrokerError naming the missing topics)."""
    _, md = cluster_metadata(config, timeout, unavailable=unavailable)
    missing = [t for t in names if t not in md.topics or md.topics[t].error is not None]
    if missing:
        raise BrokerError(
            f"topic {', '.join(missing)} does not exist at {config.get('bootstrap.servers')}; "
            "`rtfd broker up` creates the rtfd topics"
        )


def ensure_topics(
    config: Mapping[str, str], specs: list[TopicSpec], timeout: float = 30.0
) -> list[str]:
    """Create missing topics and grow under-partitioned ones; idempotent. Returns what changed."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewPartitions, NewTopic

    admin, md = cluster_metadata(
        config, timeout, unavailable=f"cannot list topics at {config.get('bootstrap.servers')}"
    )
    existing = md.topics
    brokers = len(md.brokers)
    changes: list[str] = []
    new = [_new_topic(NewTopic, s, brokers) for s in specs if s.name not in existing]
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
    _warn_under_replicated(specs, existing, brokers)
    for s in specs:
        if s.name in existing and len(existing[s.name].partitions) > s.partitions:
            log.warning(
                "topic %s has %d partitions, more than the configured %d (Kafka cannot shrink)",
                s.name,
                len(existing[s.name].partitions),
                s.partitions,
            )
    return changes


def _new_topic(new_topic: Any, spec: TopicSpec, brokers: int) -> Any:
    rf, isr = replication_for(spec, brokers)
    config = dict(spec.config)
    # Kafka's default is 1; leaving it unset then keeps the single-node request exactly as it was.
    if isr > 1 or spec.min_insync != "auto":
        config["min.insync.replicas"] = str(isr)
    log.info(
        "creating topic %s: %d partitions, %d replicas, min.insync.replicas %d",
        spec.name,
        spec.partitions,
        rf,
        isr,
    )
    return new_topic(
        spec.name, num_partitions=spec.partitions, replication_factor=rf, config=config
    )


def _warn_under_replicated(
    specs: list[TopicSpec], existing: Mapping[str, Any], brokers: int
) -> None:
    """Kafka does not change an existing topic's replication: say so when it is below target."""
    for s in specs:
        topic = existing.get(s.name)
        if topic is None or not topic.partitions:
            continue
        try:
            rf, _ = replication_for(s, brokers)
        except BrokerError:
            continue
        have = min(len(p.replicas) for p in topic.partitions.values())
        if have < rf:
            log.warning(
                "topic %s has %d replica(s), fewer than the %d wanted; Kafka does not change "
                "an existing topic's replication (kafka-reassign-partitions does)",
                s.name,
                have,
                rf,
            )


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
    from confluent_kafka import TopicPartition

    _, md = cluster_metadata(config, 5.0)
    consumer = consumer_client(config, "rtfd-status", **QUIET)
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
