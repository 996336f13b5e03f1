"""A live tail of the ``fraud_alerts`` topic for the TUI (no textual import).

The TUI reads alerts from the topic itself, not from the stream's memory, so what it shows is what
any downstream consumer sees. A consumer *group* join waits about half of ``session.timeout.ms`` on
a fresh group, so partitions are ``assign()``-ed directly, starting a few messages before the end
(a short backfill gives a restarted console context) and nothing is ever committed.

librdkafka's own log lines go to the ``logging`` module (never to the terminal under the TUI), and
broker errors reach the UI through ``on_state``. A cluster that refuses rtfd's credentials (or its
TLS handshake) is one line naming the brokers and saying "authentication failed", kept until the
feed reads again (the connection errors of each retry do not replace it), and :attr:`failure`
holds it as a :class:`~rtfd.broker.admin.BrokerAuthFailed`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from rtfd.errors import RtfdError
from rtfd.schemas import Topics
from rtfd.tui.format import parse_alert

log = logging.getLogger(__name__)

AlertsCallback = Callable[[list[dict[str, Any]]], None]
StateCallback = Callable[[bool, str], None]

#: Messages read before the end of each partition at start (shown, not counted as live).
BACKFILL_PER_PARTITION = 20
POLL_TIMEOUT_S = 0.5
BATCH_MAX = 1000
RETRY_S = 1.0


class AlertFeed:
    """Tails ``topic`` in a daemon thread and hands decoded alerts to ``on_alerts`` in batches.

    Each alert dict gets an extra ``_backfill`` key (True for the messages read from before the
    start). ``on_state(ok, detail)`` reports the connection: False with librdkafka's error text
    while the broker is unreachable, True again once messages or metadata arrive.
    """

    def __init__(
        self,
        config: dict[str, str],
        on_alerts: AlertsCallback,
        on_state: StateCallback,
        *,
        topic: str = Topics.ALERTS,
        backfill: int = BACKFILL_PER_PARTITION,
    ) -> None:
        self.config = dict(config)
        self.topic = topic
        self.backfill = backfill
        self._on_alerts = on_alerts
        self._on_state = on_state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ok: bool | None = None
        #: The authentication or TLS failure the feed is stuck on, None while it reads.
        self.failure: RtfdError | None = None
        self._ends: dict[int, int] = {}  # end offset per partition when assigned
        self.received = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the consumer thread (idempotent)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rtfd-tui-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop and close the consumer; returns within about ``timeout`` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- internals -----------------------------------------------------------------------------
    def _state(self, ok: bool, detail: str) -> None:
        if ok:
            self.failure = None
        if ok != self._ok:
            self._ok = ok
            self._on_state(ok, detail)

    def _on_error(self, err: Any) -> None:
        from rtfd.broker.admin import refusal

        log.warning("alert consumer: %s", err)
        refused = refusal([err], self.config.get("bootstrap.servers"))
        if refused is not None:
            if self.failure is None:
                self.failure = refused
                self._ok = False
                self._on_state(False, str(refused))
            return
        if self.failure is None:  # a refused login explains the connection errors after it
            self._state(False, str(err.str() if hasattr(err, "str") else err))

    def _consumer(self) -> Any:
        from rtfd.broker.clients import consumer

        return consumer(
            self.config,
            f"rtfd-tui-{os.getpid()}",
            **{
                "auto.offset.reset": "latest",
                "session.timeout.ms": 6000,
                "enable.partition.eof": False,
                "reconnect.backoff.max.ms": 2000,
                "logger": log,
                "error_cb": self._on_error,
            },
        )

    def _assign(self, consumer: Any) -> bool:
        """Assign every partition of the topic near its end; False if it does not exist yet."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            meta = consumer.list_topics(self.topic, timeout=2.0)
        except KafkaException as e:
            consumer.poll(0)  # serves error_cb: a refused login is the better explanation
            self._on_error(e.args[0] if e.args else e)
            return False
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        assignment = []
        for p in sorted(topic.partitions):
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=2.0
                )
            except KafkaException as e:
                self._on_error(e.args[0] if e.args else e)
                return False
            assignment.append(TopicPartition(self.topic, p, max(low, high - self.backfill)))
            self._ends[p] = high
        consumer.assign(assignment)
        self._state(True, f"reading {self.topic} ({len(assignment)} partitions)")
        return True

    def _run(self) -> None:
        try:
            consumer = self._consumer()
        except Exception as e:  # bad client config: report once, do not crash the UI
            log.exception("alert consumer could not be created")
            self._state(False, f"alert consumer: {e}")
            return
        try:
            while not self._stop.is_set() and not self._assign(consumer):
                self._stop.wait(RETRY_S)
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=BATCH_MAX, timeout=POLL_TIMEOUT_S)
                batch = []
                for msg in messages:
                    if msg.error() is not None:
                        self._on_error(msg.error())
                        continue
                    alert = parse_alert(msg.value())
                    if alert is None:
                        log.warning(
                            "alert consumer: skipped a non-JSON message at %s", msg.offset()
                        )
                        continue
                    alert["_backfill"] = msg.offset() < self._ends.get(msg.partition(), 0)
                    batch.append(alert)
                if batch:
                    self.received += len(batch)
                    self._state(True, f"reading {self.topic}")
                    self._on_alerts(batch)
        except Exception:
            log.exception("alert consumer stopped")
            self._state(False, "alert consumer stopped (see the log)")
        finally:
            consumer.close()
