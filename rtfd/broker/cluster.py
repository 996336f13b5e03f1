"""A replicated Kafka cluster on one machine, for tests and for trying replication locally.

:class:`LocalKafkaCluster` runs ``nodes`` JVMs of the embedded Apache Kafka — the same cached
jars and the same :class:`~rtfd.broker.kafka.KafkaNode` as the ``kafka`` backend — each one a
combined KRaft node (broker + controller), so the controller quorum is the nodes themselves
(static voters; with three, it survives the loss of any one). Every listener binds 127.0.0.1.
rtfd's clients reach it through the ``external`` backend (``bootstrap_servers``), exactly as they
would reach a real cluster.

Three combined nodes rather than a dedicated controller plus three brokers: one JVM less on a
small machine, and killing a node then also exercises a controller fail-over when it was the
active one.

With ``scram_users`` the client listener speaks SASL_PLAINTEXT with SCRAM-SHA-512 and -256.
Brokers replicate, and rtfd's readiness and admin checks run, over a separate PLAINTEXT listener
on 127.0.0.1 (:meth:`LocalKafkaCluster.internal_config`); the credentials are created through
it once the cluster answers (the Admin API's AlterUserScramCredentials, what ``kafka-configs
--add-config`` sends): the password goes over a loopback socket only, never into a file or onto
a command line, and the metadata log keeps a salted hash of it.

Like the ``kafka`` backend's attached mode, every JVM runs under :mod:`rtfd.procguard` and dies
with the process that started it, even on ``kill -9``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtfd.broker.base import Broker
from rtfd.broker.jars import ensure_kafka_jars
from rtfd.broker.kafka import KafkaNode, Listener, NodeSpec, check_java, new_cluster_id
from rtfd.config import Settings
from rtfd.errors import BrokerError
from rtfd.sysinfo import free_port, pid_alive

log = logging.getLogger(__name__)

SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
_SCRAM_SERVER_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM credential to create at format time (for every mechanism the cluster enables)."""

    username: str
    password: str


@dataclass(frozen=True)
class NodePorts:
    client: int
    controller: int
    internal: int | None  # the PLAINTEXT replication listener when clients use SASL


class LocalKafkaCluster(Broker):
    """``nodes`` combined KRaft nodes on 127.0.0.1, storage under ``<data>/broker/node-<id>``,
    logs ``kafka-<id>.log`` in the log dir."""

    name = "kafka-cluster"

    def __init__(
        self,
        settings: Settings,
        *,
        nodes: int = 3,
        scram_users: Sequence[ScramUser] = (),
        heap_mb: int = 384,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.settings = settings
        self.started_here = False
        self.scram_users = tuple(scram_users)
        self.heap_mb = heap_mb
        sasl = bool(self.scram_users)
        free = iter(_distinct_free_ports(nodes * (3 if sasl else 2)))
        self.ports = {
            i: NodePorts(next(free), next(free), next(free) if sasl else None)
            for i in range(1, nodes + 1)
        }
        voters = ",".join(f"{i}@127.0.0.1:{p.controller}" for i, p in self.ports.items())
        self.nodes = {
            i: KafkaNode(settings, self._spec(i, p, voters)) for i, p in self.ports.items()
        }
        self._jars: Path | None = None

    def _spec(self, node_id: int, ports: NodePorts, voters: str) -> NodeSpec:
        s = self.settings
        listeners = [Listener("CONTROLLER", "PLAINTEXT", ports.controller)]
        extra: dict[str, str] = {}
        if ports.internal is None:
            client = inter = "PLAINTEXT"
            listeners.append(Listener("PLAINTEXT", "PLAINTEXT", ports.client))
        else:
            client, inter = "SASL_PLAINTEXT", "INTERNAL"
            listeners += [
                Listener("SASL_PLAINTEXT", "SASL_PLAINTEXT", ports.client),
                Listener("INTERNAL", "PLAINTEXT", ports.internal),
            ]
            extra["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
            for mechanism in SCRAM_MECHANISMS:
                key = f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config"
                extra[key] = _SCRAM_SERVER_JAAS
        return NodeSpec(
            node_id=node_id,
            roles="broker,controller",
            listeners=tuple(listeners),
            quorum_voters=voters,
            directory=s.broker_dir / f"node-{node_id}",
            log_file=s.log_root / f"kafka-{node_id}.log",
            out_file=s.log_root / f"kafka-{node_id}.out",
            client=client,
            inter_broker=inter,
            replication=min(3, len(self.ports)),
            extra=extra,
        )

    @property
    def bootstrap_servers(self) -> str:
        """The client listeners of every node."""
        return ",".join(f"127.0.0.1:{p.client}" for p in self.ports.values())

    @property
    def internal_servers(self) -> str:
        """Unauthenticated PLAINTEXT listeners (the client ones when there is no SASL)."""
        return ",".join(f"127.0.0.1:{p.internal or p.client}" for p in self.ports.values())

    def internal_config(self) -> dict[str, Any]:
        """librdkafka settings for the unauthenticated listeners (readiness, admin checks)."""
        from rtfd.broker.clients import KAFKA_LOG

        return {"bootstrap.servers": self.internal_servers, "logger": KAFKA_LOG, "log_level": 3}

    def client_config(self) -> dict[str, Any]:
        """Readiness and status go through the internal listeners: the client ones may need
        credentials the settings of this object do not carry."""
        return self.internal_config()

    def start(self, *, detach: bool = False) -> None:
        """Format and start every node, then wait until all of them are registered brokers."""
        if detach:
            raise BrokerError("a local test cluster always runs attached to this process")
        s = self.settings
        s.ensure_dirs()
        check_java()
        jars = self._jars = ensure_kafka_jars(s)
        cluster_id = new_cluster_id()
        for node in self.nodes.values():
            node.write_config()
        _each(lambda node: node.format_storage(jars, cluster_id), self.nodes.values())
        for node in self.nodes.values():
            node.launch(jars, heap_mb=self.heap_mb)
        self.started_here = True
        log.info("local Kafka cluster: %d nodes at %s", len(self.nodes), self.bootstrap_servers)
        self.wait_brokers(len(self.nodes), timeout=s.broker_start_timeout_s)
        if self.scram_users:
            self.add_scram_users(self.scram_users)

    def wait_brokers(self, count: int, timeout: float) -> float:
        """Wait until ``count`` brokers are registered and answer; returns the seconds waited."""
        from rtfd.broker.admin import registered_brokers

        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            dead = [i for i, n in self.nodes.items() if n.proc is not None and not n.running]
            up = registered_brokers(self.internal_config(), timeout=1.5)
            if up >= count:
                return time.monotonic() - t0
            if time.monotonic() > deadline or (dead and len(self.nodes) - len(dead) < count):
                tails = "; ".join(f"node {i}: {self.nodes[i].log_tail()}" for i in dead)
                raise BrokerError(
                    f"only {up} of {count} Kafka brokers answer after {timeout:.0f} s"
                    + (f" ({tails})" if tails else "")
                )
            time.sleep(0.3)

    def add_scram_users(self, users: Sequence[ScramUser], iterations: int = 8192) -> None:
        """Create or change SCRAM credentials (every enabled mechanism) through the Admin API on
        the internal listener, as ``kafka-configs --alter --add-config`` would: the password
        goes over the loopback connection only, never to a file or a command line."""
        from confluent_kafka.admin import (
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        from rtfd.broker.clients import admin as admin_client

        admin = admin_client(self.internal_config())  # kept alive until every future is done
        # One request per mechanism: Kafka refuses two changes to one user in one request.
        for mechanism in SCRAM_MECHANISMS:
            info = ScramCredentialInfo(
                getattr(ScramMechanism, mechanism.replace("-", "_")), iterations
            )
            upserts = [
                UserScramCredentialUpsertion(user.username, info, user.password.encode())
                for user in users
            ]
            futures = admin.alter_user_scram_credentials(upserts, request_timeout=30)
            for name, future in futures.items():
                try:
                    future.result(timeout=60)
                except Exception as e:
                    raise BrokerError(
                        f"could not set the {mechanism} credential of {name}: {e}"
                    ) from e

    def is_running(self) -> bool:
        from rtfd.broker.admin import broker_answers

        return broker_answers(self.internal_config(), timeout=1.5)

    def jvm_pid(self, node_id: int) -> int | None:
        return self.nodes[node_id].jvm_pid()

    def kill(self, node_id: int) -> None:
        """SIGKILL the JVM of one node (a crash: no controlled shutdown) and wait until it is
        gone; its guard then exits too."""
        node = self.nodes[node_id]
        pid = node.jvm_pid()
        if pid is None:
            raise BrokerError(f"node {node_id} has no running JVM")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if node.proc is not None:
            node.proc.wait(10)
            node.proc = None
        log.info("killed node %d (pid %d)", node_id, pid)

    def restart(self, node_id: int) -> None:
        """Start a stopped or killed node again on its storage."""
        node = self.nodes[node_id]
        if self._jars is None:
            raise BrokerError("the cluster was never started")
        if not node.running:
            node.launch(self._jars, heap_mb=self.heap_mb)

    def stop(self) -> None:
        """Stop every node at once (one by one, the last would wait for a quorum that is gone)."""
        threads = [
            threading.Thread(target=node.stop, name=f"rtfd-kafka-stop-{i}")
            for i, node in self.nodes.items()
            if node.proc is not None
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _each(fn: Callable[[KafkaNode], object], nodes: Iterable[KafkaNode]) -> None:
    """Run ``fn`` on every node at once (formatting is one short JVM per node), raising the
    first error."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(fn, node) for node in nodes]:
            future.result()


def _distinct_free_ports(n: int) -> list[int]:
    """``n`` different ports that nothing listens on right now."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
