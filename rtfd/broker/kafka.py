"""Embedded Apache Kafka: a single KRaft node (broker + controller) run as a supervised JVM.

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
from dataclasses import dataclass
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
    """Apache Kafka in KRaft mode on 127.0.0.1, managed by rtfd."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_here = False

    # -- paths ----------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.settings.broker_port}"

    @property
    def _dir(self) -> Path:
        return self.settings.broker_dir

    @property
    def _log_dirs(self) -> Path:
        return self._dir / "kraft"

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
            props = self._write_config()
            self._format_storage(jars, props)
            self._launch(jars, props, detach=detach)
            assert self._proc is not None
            self._wait_ready(self._proc.pid)

    def _check_prerequisites(self) -> None:
        java = java_version()
        if java is None:
            raise DependencyMissing(
                "Java is not installed: the embedded Kafka needs Java 17+ "
                "(apt-get install openjdk-17-jre-headless), or use Docker/an external cluster"
            )
        if java < 17:
            raise DependencyMissing(f"Java {java} is too old for Kafka 4: install Java 17+")
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
        s = self.settings
        retention_ms = int(s.topic_retention_hours * 3600 * 1000)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.broker_controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{s.broker_port},CONTROLLER://127.0.0.1:{s.broker_controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self._log_dirs),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.ms": str(retention_ms),
            "message.max.bytes": str(2 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        path = self._dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
        log4j = self._dir / "log4j2.properties"
        pattern = properties_value(log4j2_pattern("[%d] %p %c{1}: "))
        log4j.write_text(_LOG4J2.format(log=self.log_file, pattern=pattern), encoding="utf-8")
        return path

    def _cluster_id(self) -> str:
        path = self._dir / "cluster.id"
        if path.exists():
            cid = path.read_text(encoding="ascii").strip()
            if cid and not cid.startswith("-"):
                return cid
        # An id that starts with "-" reads as an option to kafka-storage (Kafka's own
        # Uuid.randomUuid skips those too): draw again.
        cid = "-"
        while cid.startswith("-"):
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        path.write_text(cid + "\n", encoding="ascii")
        return cid

    def _java_cmd(self, jars: Path, main: str, *args: str, heap_mb: int = 256) -> list[str]:
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
            f"-Dlog4j2.configurationFile={self._dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.settings.log_root}",
            "-cp",
            f"{jars}/*",
            main,
            *args,
        ]

    def _format_storage(self, jars: Path, props: Path) -> None:
        if (self._log_dirs / "meta.properties").exists():
            return
        log.info("formatting KRaft storage in %s", self._log_dirs)
        cmd = self._java_cmd(
            jars, "kafka.tools.StorageTool", "format", "-t", self._cluster_id(), "-c", str(props)
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage failed: {proc.stdout}{proc.stderr}".strip()
            )

    def _launch(self, jars: Path, props: Path, *, detach: bool) -> None:
        s = self.settings
        cmd = self._java_cmd(jars, "kafka.Kafka", str(props), heap_mb=s.broker_heap_mb)
        s.log_root.mkdir(parents=True, exist_ok=True)
        out_path = s.log_root / "kafka.out"
        if detach:
            with open(out_path, "ab") as out:
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
                )
        else:
            guard = [sys.executable, "-m", "rtfd.procguard", "--log", str(out_path), "--", *cmd]
            self._proc = subprocess.Popen(
                guard,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started_here = True
        record = PidRecord(self._proc.pid, s.broker_port, detach, os.getpid())
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(record.to_json(), encoding="utf-8")
        os.replace(tmp, self.pid_file)
        log.info("embedded Kafka starting (pid %s, %s)", self._proc.pid, self.bootstrap_servers)

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
        pid = self._proc.pid if self._proc is not None else (record.pid if record else None)
        if pid is None:
            return
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()  # tells the guard to stop the JVM
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            if self._proc is not None:
                try:
                    self._proc.wait(0.2)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.2)
        if pid_alive(pid):
            log.warning("the embedded Kafka did not stop in %.0f s: killing it", STOP_TIMEOUT_S)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        log.info("embedded Kafka stopped")

    def pid(self) -> int | None:
        record = PidRecord.read(self.pid_file)
        return record.pid if record and pid_alive(record.pid) else None


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
