"""An existing Kafka-protocol cluster that rtfd uses but does not manage."""

from __future__ import annotations

from rtfd.broker.base import Broker
from rtfd.config import Settings
from rtfd.errors import BrokerUnavailable

START_CHECK_S = 10.0


class ExternalBroker(Broker):
    """Bootstrap servers plus the security of the broker_security settings (and pass-through
    ``[client]`` / ``[client_java]`` properties)."""

    name = "external"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_here = False

    @property
    def bootstrap_servers(self) -> str:
        return self.settings.broker_bootstrap_servers

    def start(self, *, detach: bool = False) -> None:
        """Check that the cluster answers and accepts rtfd's credentials (BrokerAuthFailed
        names the brokers and says "authentication failed" when it refuses them)."""
        from rtfd.broker.admin import cluster_metadata

        _, md = cluster_metadata(
            self.client_config(),
            START_CHECK_S,
            unavailable=f"no Kafka broker answers at {self.bootstrap_servers}; check the "
            "address and the broker_security settings",
        )
        if not md.brokers:
            raise BrokerUnavailable(f"the cluster at {self.bootstrap_servers} lists no broker")

    def stop(self) -> None:
        """Nothing to do: rtfd does not own an external cluster."""

    def is_running(self) -> bool:
        from rtfd.broker.admin import broker_answers

        return broker_answers(self.client_config(), timeout=5.0)
