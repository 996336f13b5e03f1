"""The broker interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtfd.broker.admin import TopicInfo
    from rtfd.config import Settings


@dataclass(frozen=True)
class BrokerStatus:
    """What ``rtfd broker status`` and the TUI show about a broker."""

    backend: str
    bootstrap_servers: str
    running: bool
    detail: str = ""
    pid: int | None = None
    topics: tuple[TopicInfo, ...] = field(default_factory=tuple)


class Broker(ABC):
    """A Kafka-protocol broker rtfd can start, stop and ask about."""

    name: str = "broker"
    settings: Settings
    #: True when this object started the broker (rather than adopting a running one).
    started_here: bool = False

    @property
    @abstractmethod
    def bootstrap_servers(self) -> str:
        """host:port list clients connect to."""

    @abstractmethod
    def start(self, *, detach: bool = False) -> None:
        """Start the broker (or adopt one already running) and wait until it answers.

        ``detach`` leaves it running after this process exits (``rtfd broker up``); otherwise it
        is tied to this process and dies with it, even on kill -9.
        """

    @abstractmethod
    def stop(self) -> None:
        """Stop the broker if this backend manages it; idempotent."""

    @abstractmethod
    def is_running(self) -> bool:
        """True when the broker answers a metadata request."""

    def status(self) -> BrokerStatus:
        """Backend, address, liveness and topics."""
        from rtfd.broker.admin import describe_topics

        running = self.is_running()
        topics = describe_topics(self.client_config()) if running else ()
        return BrokerStatus(self.name, self.bootstrap_servers, running, topics=tuple(topics))

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings to reach this broker (bootstrap, security, pass-through)."""
        from rtfd.broker.clients import client_config

        return client_config(self.settings, self.bootstrap_servers)
