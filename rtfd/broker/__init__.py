"""Kafka-protocol broker backends (redpanda, embedded kafka, external) and topic admin.

Producers, consumers and admin clients are made in :mod:`rtfd.broker.clients` (whose
:func:`client_config` and :func:`bootstrap_servers` are this package's too); starting and stopping
a broker goes through :func:`make_broker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtfd.broker.clients import KAFKA_LOG, bootstrap_servers, client_config

if TYPE_CHECKING:
    from rtfd.broker.base import Broker
    from rtfd.config import Settings

__all__ = ["KAFKA_LOG", "bootstrap_servers", "client_config", "make_broker", "resolve_backend"]


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
