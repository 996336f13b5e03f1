"""Every librdkafka client rtfd makes is made here: producers, consumers and admin clients.

A client's settings come in three layers, lowest first: :func:`client_config` (bootstrap
servers, the security that ``broker_security`` asks for, the ``[client]`` pass-through less its
Java-only properties, rtfd's logger), what every client of its kind shares (:data:`QUIET`, and
for a producer idempotence with ``acks=all``), then the caller's own overrides. Building them in
one place keeps the security translation (:mod:`rtfd.broker.security`) and the rule that
librdkafka never writes to the terminal (which the TUI owns) true for every client; the secrets
in these settings reach a log only through rtfd's handlers, which mask them (:mod:`rtfd.redact`).

confluent_kafka is imported when a client is made, not when this module is: ``rtfd --help``
stays instant.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtfd.config import Settings

# librdkafka writes its own log (connection refused while a broker restarts...) straight to
# stderr, which lands on the TUI's screen. Every client gets this logger instead, so the lines go
# to rtfd's log file (they are forwarded when the client polls).
KAFKA_LOG = logging.getLogger("rtfd.kafka")

#: What admin checks, the stream's producer and status consumers share: errors only, to rtfd's
#: log (a broker that restarts would otherwise log a line per retry).
QUIET: dict[str, Any] = {"log_level": 3, "logger": logging.getLogger("rtfd.kafka.client")}

#: Every producer that writes records someone relies on: a retried batch is never written twice.
IDEMPOTENT: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}


def bootstrap_servers(settings: Settings) -> str:
    """Where clients connect: the external cluster, or the local broker on 127.0.0.1."""
    if settings.broker_bootstrap_servers:
        return settings.broker_bootstrap_servers
    return f"127.0.0.1:{settings.broker_port}"


def client_config(settings: Settings, servers: str | None = None) -> dict[str, Any]:
    """librdkafka settings for any rtfd client: bootstrap servers (``servers``, or those of the
    settings), the security that ``broker_security`` asks for, the ``[client]`` pass-through
    properties over it (less the Java-only ones), and the client's own log routed to rtfd's log
    (:data:`KAFKA_LOG`)."""
    from rtfd.broker.security import librdkafka_passthrough, librdkafka_security

    return {
        "bootstrap.servers": servers or bootstrap_servers(settings),
        **librdkafka_security(settings),
        **librdkafka_passthrough(settings),
        "logger": KAFKA_LOG,
    }


def producer_settings(config: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The settings :func:`producer` gives librdkafka: ``config``, idempotence with
    ``acks=all`` (:data:`IDEMPOTENT`), then ``overrides``."""
    return {**config, **IDEMPOTENT, **overrides}


def producer(config: Mapping[str, Any], **overrides: Any) -> Any:
    """An idempotent ``confluent_kafka.Producer`` for ``config`` (from :func:`client_config`),
    with ``overrides`` (``on_delivery``, ``linger.ms`` ...) laid over it."""
    from confluent_kafka import Producer

    return Producer(producer_settings(config, **overrides))


def consumer(config: Mapping[str, Any], group: str, **overrides: Any) -> Any:
    """A ``confluent_kafka.Consumer`` in ``group`` that commits nothing on its own (rtfd's
    consumers read for status or for display; Spark keeps the stream's offsets)."""
    from confluent_kafka import Consumer

    return Consumer({**config, "group.id": group, "enable.auto.commit": False, **overrides})


def admin(config: Mapping[str, Any], **overrides: Any) -> Any:
    """A ``confluent_kafka.admin.AdminClient``, quiet (:data:`QUIET`) unless ``overrides`` say
    otherwise."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({**config, **QUIET, **overrides})
