"""Redpanda in Docker, through ``docker compose -f docker/compose.yml``.

The compose file pins the image, binds every port to 127.0.0.1, keeps Redpanda's default durable
writes (``--overprovisioned --smp 1``, never dev-container mode) and has a health check, so
``up --wait`` returns only when the node is healthy. Data lives in a named Docker volume.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from rtfd.broker.base import Broker
from rtfd.config import Settings
from rtfd.errors import BrokerError, DependencyMissing

log = logging.getLogger(__name__)

PROJECT = "rtfd"


def compose_file() -> Path:
    """docker/compose.yml of the checkout rtfd runs from."""
    path = Path(__file__).resolve().parents[2] / "docker" / "compose.yml"
    if not path.exists():
        raise DependencyMissing(f"{path} not found: the redpanda backend runs from a git checkout")
    return path


class RedpandaBroker(Broker):
    """A single Redpanda node in Docker on 127.0.0.1."""

    name = "redpanda"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_here = False

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.settings.broker_port}"

    def compose_env(self) -> dict[str, str]:
        """Environment the compose file reads its port and image from."""
        return {
            **os.environ,
            "RTFD_BROKER_PORT": str(self.settings.broker_port),
            "RTFD_BROKER_REDPANDA_IMAGE": self.settings.broker_redpanda_image,
        }

    def compose_command(self, *args: str) -> list[str]:
        """The docker compose command line for ``args`` (``up -d --wait``, ``down`` ...)."""
        return ["docker", "compose", "-f", str(compose_file()), "-p", PROJECT, *args]

    def _compose(self, *args: str, timeout: float) -> None:
        cmd = self.compose_command(*args)
        try:
            proc = subprocess.run(
                cmd,
                env=self.compose_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as e:
            raise DependencyMissing("docker is not installed") from e
        except subprocess.TimeoutExpired as e:
            raise BrokerError(f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s") from e
        if proc.returncode != 0:
            raise BrokerError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")

    def start(self, *, detach: bool = False) -> None:
        if self.is_running():
            return
        timeout = self.settings.broker_start_timeout_s + 120  # includes an image pull
        self._compose("up", "-d", "--wait", timeout=timeout)
        self.started_here = True

    def stop(self) -> None:
        self._compose("stop", timeout=60)

    def is_running(self) -> bool:
        from rtfd.broker.admin import broker_answers

        return broker_answers(self.client_config(), timeout=1.5)
