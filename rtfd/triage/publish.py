"""Publish LABEL records to ``fraud_labels`` and wait until the broker has them.

One idempotent producer (acks=all), keyed by transaction id like the generator's chargebacks,
so every record of one transaction lands in one partition, in order. :meth:`LabelPublisher.publish`
returns only once the broker acknowledged the record; a broker that does not answer is one line
(:class:`~rtfd.errors.BrokerUnavailable`) within ``timeout_s``, never a hang.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from rtfd.errors import BrokerUnavailable
from rtfd.schemas import LABEL, Topics

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0


class LabelPublisher:
    """Writes LABEL records to ``topic``; thread-safe, one record at a time."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        topic: str = Topics.LABELS,
        timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self.config = dict(config)
        self.topic = topic
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._producer: Any = None
        self._checked = False

    def _make_producer(self) -> Any:
        from confluent_kafka import Producer

        timeout_ms = int(self.timeout_s * 1000)
        return Producer(
            {
                **self.config,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
                "message.timeout.ms": timeout_ms,
                "log_level": 3,
                "logger": logging.getLogger("rtfd.kafka.labels"),
            }
        )

    def _check_broker(self) -> None:
        """Fail fast, with the auth failure named if that is why, when no broker answers."""
        from rtfd.broker.admin import cluster_metadata

        where = self.config.get("bootstrap.servers")
        cluster_metadata(
            self.config,
            min(5.0, self.timeout_s),
            unavailable=f"no Kafka broker answers at {where}: the label was not published",
        )
        self._checked = True

    def publish(self, record: Mapping[str, Any]) -> None:
        """Validate ``record`` (a LABEL), send it and wait for the acknowledgement."""
        from rtfd.generator.wire import encode_record

        LABEL.validate(dict(record))
        value = encode_record(dict(record))
        key = str(record["transaction_id"]).encode()
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err.str() if hasattr(err, "str") else str(err))

        with self._lock:
            if not self._checked:
                self._check_broker()
            if self._producer is None:
                self._producer = self._make_producer()
            self._producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
            remaining = self._producer.flush(self.timeout_s + 1.0)
            if remaining or errors:
                self._checked = False  # the next decision probes the broker again first
                why = errors[0] if errors else f"no acknowledgement within {self.timeout_s:.0f} s"
                where = self.config.get("bootstrap.servers")
                raise BrokerUnavailable(
                    f"the label for {record['transaction_id']} was not published to "
                    f"{self.topic} at {where}: {why}"
                )
        log.info(
            "published %s label %s for %s",
            record.get("source") or "chargeback",
            record.get("label"),
            record["transaction_id"],
        )

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(2.0)
                self._producer = None
