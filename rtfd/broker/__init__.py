"""Kafka-protocol broker backends (redpanda, embedded kafka, external) and topic admin.

Producers and consumers elsewhere in rtfd only need :func:`client_config`; starting and stopping
a broker goes through :func:`make_broker`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtfd.broker.base import Broker
    from rtfd.config import Settings

# librdkafka writes its own log (connection refused while a broker restarts...) straight to
# stderr, which lands on the TUI's screen. Every client gets this logger instead, so the lines go
# to rtfd's log file (they are forwarded when the client polls).
KAFKA_LOG = logging.getLogger("rtfd.kafka")


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


def resolve_backend(settings: Settings) -> str:
    """The concrete backend: for ``auto``, redpanda if Docker answers, else kafka if Java is."""
    from rtfd.errors import DependencyMissing
    from rtfd.sysinfo import docker_engine_version, java_version

    if settings.broker_backend != "auto":
        return settings.broker_backend
    if settings.broker_bootstrap_servers:
        return "external"
    if docker_engine_version() is not None:
        return "redpanda"
    java = java_version()
    if java is not None and java >= 17:
        return "kafka"
    raise DependencyMissing(
        "no broker backend available: install Java 17+ (embedded Kafka, e.g. "
        "`apt-get install openjdk-17-jre-headless`) or Docker (Redpanda), "
        "or point RTFD_BROKER_BOOTSTRAP_SERVERS at an existing cluster"
    )


def make_broker(settings: Settings) -> Broker:
    """The broker backend the settings ask for."""
    backend = resolve_backend(settings)
    if backend == "kafka":
        from rtfd.broker.kafka import EmbeddedKafka

        return EmbeddedKafka(settings)
    if backend == "redpanda":
        from rtfd.broker.redpanda import RedpandaBroker

        return RedpandaBroker(settings)
    from rtfd.broker.external import ExternalBroker

    return ExternalBroker(settings)
