"""An existing Kafka-protocol cluster that rtfd uses but does not manage."""

from __future__ import annotations

import dataclasses

from rtfd.broker.base import Broker, BrokerStatus
from rtfd.config import Settings
from rtfd.errors import BrokerUnavailable

START_CHECK_S = 10.0
STATUS_DETAIL_S = 2.0  # a refused login shows within a second


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

    def status(self) -> BrokerStatus:
        """Like every backend's, with the reason when the cluster does not answer or refuses
        rtfd's credentials."""
        from rtfd.broker.admin import cluster_metadata

        status = super().status()
        if status.running:
            return status
        try:
            cluster_metadata(self.client_config(), STATUS_DETAIL_S)
        except BrokerUnavailable as e:
            return dataclasses.replace(status, detail=str(e))
        return status

    def is_running(self) -> bool:
        from rtfd.broker.admin import broker_answers

        return broker_answers(self.client_config(), timeout=5.0)
