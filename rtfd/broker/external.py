"""An existing Kafka-protocol cluster that rtfd uses but does not manage."""

from __future__ import annotations

from rtfd.broker.base import Broker
from rtfd.config import Settings
from rtfd.errors import BrokerUnavailable


class ExternalBroker(Broker):
    """Bootstrap servers plus pass-through librdkafka/Spark security settings."""

    name = "external"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_here = False

    @property
    def bootstrap_servers(self) -> str:
        return self.settings.broker_bootstrap_servers

    def start(self, *, detach: bool = False) -> None:
        if not self.is_running():
            raise BrokerUnavailable(
                f"no Kafka broker answers at {self.bootstrap_servers}; check the address "
                "and the RTFD_CLIENT_* security settings"
            )

    def stop(self) -> None:
        """Nothing to do: rtfd does not own an external cluster."""

    def is_running(self) -> bool:
        from rtfd.broker.admin import broker_answers

        return broker_answers(self.client_config(), timeout=5.0)
