"""The producer of analysts' labels: one LABEL record to ``fraud_labels``, acknowledged or an error.

An analyst's decision is a single record a person waits for, not a stream: :meth:`publish`
returns only once the broker acknowledged it (idempotent, ``acks=all``), and a broker that does
not answer within the timeout is a one-line :class:`~rtfd.errors.BrokerUnavailable` instead of
librdkafka's five-minute default retry. The console publishes through
:meth:`rtfd.supervisor.Supervisor.publish_label`, ``rtfd label`` directly; both build the
producer here from :func:`rtfd.broker.client_config` settings.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from rtfd.errors import BrokerError, BrokerUnavailable
from rtfd.schemas import Topics

if TYPE_CHECKING:
    from rtfd.query.labels import AnalystDecision

log = logging.getLogger(__name__)

#: How long a decision may wait for the broker's acknowledgement.
PUBLISH_TIMEOUT_S = 10.0


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer used here (a fake stands in for unit tests)."""

    def produce(
        self, topic: str, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> None: ...
    def flush(self, timeout: float) -> int: ...


ProducerFactory = Callable[[dict[str, Any]], ProducerLike]


def _confluent_producer(config: dict[str, Any]) -> ProducerLike:
    from rtfd.broker.clients import producer

    return producer(config)  # type: ignore[no-any-return]


class LabelPublisher:
    """Publishes analysts' decisions, one at a time, each acknowledged before returning."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        topic: str = Topics.LABELS,
        timeout_s: float | None = None,
        producer_factory: ProducerFactory = _confluent_producer,
    ) -> None:
        self.topic = topic
        self.timeout_s = PUBLISH_TIMEOUT_S if timeout_s is None else timeout_s
        self.servers = str(config.get("bootstrap.servers", "?"))
        self._lock = threading.Lock()
        self._producer = producer_factory(
            {
                **config,
                "enable.idempotence": True,
                "acks": "all",
                # A decision not acknowledged by then fails instead of retrying for minutes.
                "message.timeout.ms": int(self.timeout_s * 1000),
                "log_level": 3,
                "logger": logging.getLogger("rtfd.kafka.labels"),
            }
        )

    def publish(self, decision: AnalystDecision) -> dict[str, Any]:
        """Send ``decision``'s LABEL record and wait for the acknowledgement; returns the record.

        Raises :class:`BrokerUnavailable` when no broker acknowledged it in time, and
        :class:`BrokerError` when the broker refused it (an unknown topic, an ACL).
        """
        record = decision.record()
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err.str() if hasattr(err, "str") else err))

        value = json.dumps(record, separators=(",", ":")).encode()
        with self._lock:
            try:
                self._producer.produce(
                    self.topic,
                    value=value,
                    key=decision.transaction_id.encode(),
                    on_delivery=delivered,
                )
            except Exception as e:  # BufferError, KafkaException (a bad client setting)
                raise BrokerError(f"cannot queue the label for {self.topic}: {e}") from e
            remaining = self._producer.flush(self.timeout_s + 2.0)
        if remaining or any("timed out" in e.lower() for e in errors):
            raise BrokerUnavailable(
                f"no broker acknowledged the label at {self.servers} within "
                f"{self.timeout_s:g} s: it was not recorded (is the broker up? `rtfd broker "
                "status`)"
            )
        if errors:
            raise BrokerError(f"the broker refused the label on {self.topic}: {errors[0]}")
        log.info("analyst label published: %s", record)
        return record


def label_publisher(config: Mapping[str, Any], **kwargs: Any) -> LabelPublisher:
    """The factory the supervisor and ``rtfd label`` use (tests pass a fake producer)."""
    return LabelPublisher(config, **kwargs)
