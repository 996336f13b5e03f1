"""Embedded Apache Kafka: KRaft nodes run as supervised JVMs from the cached jars.

:class:`KafkaNode` is one JVM — its ``server.properties``, its storage formatted once, its launch
under :mod:`rtfd.procguard` (or detached) and its stop. :class:`EmbeddedKafka` is the ``kafka``
backend: a single combined node (broker + controller). :mod:`rtfd.broker.cluster` runs several
nodes from the same class for a replicated cluster on one machine.

* Jars come from Maven Central once and are cached (:mod:`rtfd.broker.jars`).
* Storage is formatted once under ``<data>/broker/kraft`` and kept across restarts.
* Both listeners bind 127.0.0.1 only.
* Attached mode (the default, used by the TUI, ``rtfd up`` and tests) runs the JVM under
  :mod:`rtfd.procguard`, so it dies with this process even on ``kill -9``. Detached mode
  (``rtfd broker up``) leaves it running until ``rtfd broker down``.
* A pid file under ``<data>/run`` lets another rtfd process find, adopt and stop it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtfd.broker.base import Broker
from rtfd.broker.jars import ensure_kafka_jars
from rtfd.config import Settings
from rtfd.errors import BrokerError, DependencyMissing
from rtfd.locks import file_lock
from rtfd.redact import log4j2_pattern, properties_value
from rtfd.sysinfo import java_executable, java_version, pid_alive, port_in_use

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Listener:
    """One listener of a node: its name in Kafka's config, its security protocol, its port."""

    name: str
    protocol: str
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class NodeSpec:
    """What one Kafka JVM is: its id and roles, its listeners (all on 127.0.0.1), the controller
    quorum, and where its config, storage and logs go.

    ``client`` names the listener advertised to clients, ``inter_broker`` the one brokers
    replicate over; ``replication`` is the replication factor of Kafka's internal topics (the
    cluster's size, at most 3). ``extra`` overrides any generated property.
    """

    node_id: int
    roles: str
    listeners: tuple[Listener, ...]
    quorum_voters: str
    directory: Path
    log_file: Path
    out_file: Path
    client: str = "PLAINTEXT"
    inter_broker: str = "PLAINTEXT"
    replication: int = 1
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def storage(self) -> Path:
        return self.directory / "kraft"

    @property
    def config_file(self) -> Path:
        return self.directory / "server.properties"

    def listener(self, name: str) -> Listener:
        return next(item for item in self.listeners if item.name == name)


class KafkaNode:
    """One Kafka JVM from the cached jars: config, storage format, launch, stop.

    Attached (the default), the JVM runs under :mod:`rtfd.procguard` and dies with this process
    even on ``kill -9``; ``detach`` starts it in its own session instead. ``proc`` is the guard
    (attached) or the JVM (detached); :meth:`jvm_pid` is the JVM either way.
    """

    def __init__(self, settings: Settings, spec: NodeSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.detached = False

    def properties(self) -> dict[str, str]:
        """The node's ``server.properties``."""
        spec = self.spec
        rf = str(spec.replication)
        min_isr = str(min(2, spec.replication))
        listeners = [
            item
            for item in spec.listeners
            if item.name != "CONTROLLER" or "controller" in spec.roles
        ]
        props = {
            "process.roles": spec.roles,
            "node.id": str(spec.node_id),
            "controller.quorum.voters": spec.quorum_voters,
            "listeners": ",".join(f"{item.name}://{item.address}" for item in listeners),
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": ",".join(
                f"{item.name}:{item.protocol}" for item in spec.listeners
            ),
            "log.dirs": str(spec.storage),
            "num.partitions": "1",
            "default.replication.factor": rf,
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.ms": str(int(self.settings.topic_retention_hours * 3_600_000)),
            "message.max.bytes": str(2 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        if "broker" in spec.roles:
            props["advertised.listeners"] = f"{spec.client}://{spec.listener(spec.client).address}"
            props["inter.broker.listener.name"] = spec.inter_broker
            if spec.client != spec.inter_broker:
                props["advertised.listeners"] += (
                    f",{spec.inter_broker}://{spec.listener(spec.inter_broker).address}"
                )
        props.update(spec.extra)
        return props

    def write_config(self) -> Path:
        """Write ``server.properties`` and the log4j2 file (secrets masked in the log)."""
        spec = self.spec
        spec.directory.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}={properties_value(v)}\n" for k, v in self.properties().items())
        spec.config_file.write_text(text, encoding="utf-8")
        pattern = properties_value(log4j2_pattern("[%d] %p %c{1}: "))
        (spec.directory / "log4j2.properties").write_text(
            _LOG4J2.format(log=spec.log_file, pattern=pattern), encoding="utf-8"
        )
        return spec.config_file

    def java_cmd(self, jars: Path, main: str, *args: str, heap_mb: int = 256) -> list[str]:
        java = java_executable()
        assert java is not None
        return [
            java,
            f"-Xms{heap_mb}m",
            f"-Xmx{heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.spec.directory / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.spec.log_file.parent}",
            "-cp",
            f"{jars}/*",
            main,
            *args,
        ]

    def format_storage(self, jars: Path, cluster_id: str, *, extra: Sequence[str] = ()) -> bool:
        """Format the storage once (False when it already is). ``extra`` adds arguments to
        kafka-storage's ``format`` (``--add-scram`` ...); they go on its command line only."""
        if (self.spec.storage / "meta.properties").exists():
            return False
        log.info("formatting KRaft storage in %s", self.spec.storage)
        cmd = self.java_cmd(
            jars,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.spec.config_file),
            *extra,
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage failed: {proc.stdout}{proc.stderr}".strip()
            )
        return True

    def launch(self, jars: Path, *, detach: bool = False, heap_mb: int | None = None) -> int:
        """Start the JVM; returns the pid to record (the guard's when attached)."""
        s = self.settings
        heap = s.broker_heap_mb if heap_mb is None else heap_mb
        cmd = self.java_cmd(jars, "kafka.Kafka", str(self.spec.config_file), heap_mb=heap)
        out_path = self.spec.out_file
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if detach:
            with open(out_path, "ab") as out:
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
                )
        else:
            guard = [sys.executable, "-m", "rtfd.procguard", "--log", str(out_path), "--", *cmd]
            self.proc = subprocess.Popen(
                guard,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.detached = detach
        return self.proc.pid

    @property
    def running(self) -> bool:
        """True while the process this object launched (guard or JVM) has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def jvm_pid(self) -> int | None:
        """The JVM's pid (the guard's only child when attached), None when not running (or
        while the guard is still starting it)."""
        if not self.running:
            return None
        assert self.proc is not None
        if self.detached:
            return self.proc.pid
        children = _children(self.proc.pid)
        return children[0] if children else None

    def stop(self, pid: int | None = None) -> None:
        """Stop the node (graceful SIGTERM, SIGKILL after :data:`STOP_TIMEOUT_S`); ``pid`` is a
        recorded one when this object did not launch it."""
        proc = self.proc
        pid = proc.pid if proc is not None else pid
        if pid is None:
            return
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()  # tells the guard to stop the JVM
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            if proc is not None:
                try:
                    proc.wait(0.2)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.2)
        if pid_alive(pid):
            log.warning("Kafka node %s did not stop in %.0f s: killing it", pid, STOP_TIMEOUT_S)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def log_tail(self, lines: int = 3) -> str:
        return _tail(self.spec.log_file, lines)


def check_java() -> None:
    """Raise DependencyMissing unless Java 17+ is there (Kafka 4 needs it)."""
    java = java_version()
    if java is None:
        raise DependencyMissing(
            "Java is not installed: the embedded Kafka needs Java 17+ "
            "(apt-get install openjdk-17-jre-headless), or use Docker/an external cluster"
        )
    if java < 17:
        raise DependencyMissing(f"Java {java} is too old for Kafka 4: install Java 17+")


def new_cluster_id() -> str:
    """A random KRaft cluster id that does not start with "-" (kafka-storage would read it as an
    option; Kafka's own Uuid.randomUuid skips those too)."""
    cid = "-"
    while cid.startswith("-"):
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
    return cid


def stored_cluster_id(directory: Path) -> str:
    """The cluster id kept in ``directory/cluster.id``, drawn and written the first time."""
    path = directory / "cluster.id"
    if path.exists():
        cid = path.read_text(encoding="ascii").strip()
        if cid and not cid.startswith("-"):
            return cid
    cid = new_cluster_id()
    path.write_text(cid + "\n", encoding="ascii")
    return cid


@dataclass(frozen=True)
class PidRecord:
    """What the pid file says about a running embedded broker."""

    pid: int
    port: int
    detached: bool
    owner_pid: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def read(cls, path: Path) -> PidRecord | None:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


class EmbeddedKafka(Broker):
    """Apache Kafka in KRaft mode on 127.0.0.1, managed by rtfd: one combined node."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_here = False
        self.node = KafkaNode(settings, self.node_spec())

    def node_spec(self) -> NodeSpec:
        s = self.settings
        return NodeSpec(
            node_id=1,
            roles="broker,controller",
            listeners=(
                Listener("PLAINTEXT", "PLAINTEXT", s.broker_port),
                Listener("CONTROLLER", "PLAINTEXT", s.broker_controller_port),
            ),
            quorum_voters=f"1@127.0.0.1:{s.broker_controller_port}",
            directory=self._dir,
            log_file=self.log_file,
            out_file=s.log_root / "kafka.out",
        )

    # -- paths ----------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.settings.broker_port}"

    @property
    def _dir(self) -> Path:
        return self.settings.broker_dir

    @property
    def pid_file(self) -> Path:
        return self.settings.run_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.log_root / "kafka.log"

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, *, detach: bool = False) -> None:
        s = self.settings
        s.ensure_dirs()
        self._dir.mkdir(parents=True, exist_ok=True)
        with file_lock(
            s.run_dir / "kafka.lock", timeout=s.broker_start_timeout_s, what="broker start"
        ):
            record = PidRecord.read(self.pid_file)
            if record and pid_alive(record.pid):
                if record.port != s.broker_port:
                    raise BrokerError(
                        f"an embedded broker for this data dir already runs on port {record.port} "
                        f"(pid {record.pid}); stop it with `rtfd broker down` first"
                    )
                log.info("adopting the embedded broker already running (pid %s)", record.pid)
                self._wait_ready(record.pid)
                return
            self.pid_file.unlink(missing_ok=True)
            self._check_prerequisites()
            jars = ensure_kafka_jars(s)
            self._write_config()
            self.node.format_storage(jars, self._cluster_id())
            pid = self.node.launch(jars, detach=detach)
            self.started_here = True
            record = PidRecord(pid, s.broker_port, detach, os.getpid())
            tmp = self.pid_file.with_suffix(".tmp")
            tmp.write_text(record.to_json(), encoding="utf-8")
            os.replace(tmp, self.pid_file)
            log.info("embedded Kafka starting (pid %s, %s)", pid, self.bootstrap_servers)
            self._wait_ready(pid)

    def _check_prerequisites(self) -> None:
        check_java()
        for port, what in (
            (self.settings.broker_port, "broker_port"),
            (self.settings.broker_controller_port, "broker_controller_port"),
        ):
            if port_in_use(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use by another program; "
                    f"choose another with RTFD_{what.upper()}=<port>",
                    title="Port in use",
                )

    def _write_config(self) -> Path:
        return self.node.write_config()

    def _cluster_id(self) -> str:
        return stored_cluster_id(self._dir)

    def _wait_ready(self, pid: int) -> None:
        deadline = time.monotonic() + self.settings.broker_start_timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the embedded Kafka exited during start-up; see {self.log_file}: "
                    + _tail(self.log_file)
                )
            if self.is_running():
                return
            time.sleep(0.3)
        self.stop()
        raise BrokerError(
            "the embedded Kafka did not answer within "
            f"{self.settings.broker_start_timeout_s:.0f} s; "
            f"see {self.log_file}"
        )

    def is_running(self) -> bool:
        from rtfd.broker.admin import broker_answers

        return broker_answers(self.client_config(), timeout=1.5)

    def stop(self) -> None:
        """Stop the broker recorded in the pid file (graceful SIGTERM, SIGKILL after 30 s)."""
        record = PidRecord.read(self.pid_file)
        if self.node.proc is None and record is None:
            return
        self.node.stop(record.pid if record else None)
        self.pid_file.unlink(missing_ok=True)
        log.info("embedded Kafka stopped")

    def pid(self) -> int | None:
        record = PidRecord.read(self.pid_file)
        return record.pid if record and pid_alive(record.pid) else None


def _children(pid: int) -> list[int]:
    """Child pids of ``pid`` (from /proc; empty when it has none or is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if "ERROR" in line or "Exception" in line]
    return " | ".join((errors or text)[-lines:])


_LOG4J2 = """status = error
name = rtfd-kafka
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
# Secrets are masked in the message and the exception (rtfd.redact); the exception is written
# inside the mask only, never appended raw after it.
appender.file.layout.alwaysWriteExceptions = false
appender.file.layout.pattern = {pattern}
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""
