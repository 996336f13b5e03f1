"""A real Spark standalone cluster on 127.0.0.1: a master and workers from pyspark's own
``spark-class``, for the cluster tier.

Nothing here imitates Spark: the processes are ``org.apache.spark.deploy.master.Master`` and
``org.apache.spark.deploy.worker.Worker`` from the installed pyspark, as ``start-master.sh`` and
``start-worker.sh`` would run them. Each daemon leads its own process group, so stopping one ends
the executors it forked. pyspark's Python daemon makes a process group of its own, so a worker's
"host dies" kill walks the process tree instead (:meth:`SparkStandalone.kill_worker`). Every
JVM of the cluster names its conf directory on its command line and every process below a
worker inherits ``SPARK_CONF_DIR``: that is how :meth:`SparkStandalone.leftovers` finds any
process that outlived :meth:`SparkStandalone.stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtfd.sysinfo import free_port

EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"

# The master notices a dead worker after this many seconds without a heartbeat (Spark's default
# is 60); the driver notices a dead executor at once, from its closed connection.
WORKER_TIMEOUT_S = 10


def spark_home() -> Path:
    """pyspark's install directory, which is a complete SPARK_HOME (bin/, jars/)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class Daemon:
    """One master or worker JVM, leader of its own process group."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


def process_table() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, command line) of every process, from ``ps`` (whole lines: without
    ``-ww`` ps cuts them to ``$COLUMNS``, and the executor class comes after a long class path)."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            rows.append((int(parts[0]), int(parts[1]), int(parts[2]), parts[3]))
    return rows


class SparkStandalone:
    """A master and ``workers`` workers (``cores`` and ``memory`` each), all on 127.0.0.1 with
    free ports, under ``root``. ``start()`` returns once every worker is ALIVE in the master's
    JSON; ``stop()`` ends every process group and waits for them."""

    def __init__(self, root: Path, *, workers: int = 2, cores: int = 1, memory: str = "1g") -> None:
        self.root = root
        self.n_workers = workers
        self.cores = cores
        self.memory = memory
        self.conf_dir = root / "conf"
        self.port = free_port()
        self.ui_port = free_port()
        self.master: Daemon | None = None
        self.workers: list[Daemon] = []

    @property
    def url(self) -> str:
        """The master URL a driver connects to."""
        return f"spark://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RTFD_", "SPARK_"))}
        # No PYTHONPATH: executors must import rtfd from what the driver ships them.
        env.pop("PYTHONPATH", None)
        env.update(
            {
                "SPARK_HOME": str(spark_home()),
                "SPARK_CONF_DIR": str(self.conf_dir),
                "SPARK_LOCAL_IP": "127.0.0.1",
            }
        )
        return env

    def _launch(self, name: str, args: list[str]) -> Daemon:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.root,
                start_new_session=True,  # its own process group: killpg reaches its executors
            )
        return Daemon(name, proc, log)

    def _write_conf(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "log4j2.properties").write_text(
            "rootLogger.level = warn\n"
            "rootLogger.appenderRef.stdout.ref = console\n"
            "appender.console.type = Console\n"
            "appender.console.name = console\n"
            "appender.console.target = SYSTEM_ERR\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n%ex\n"
            # The lines that show registration, executor launch and loss.
            "logger.master.name = org.apache.spark.deploy.master.Master\n"
            "logger.master.level = info\n"
            "logger.worker.name = org.apache.spark.deploy.worker.Worker\n"
            "logger.worker.level = info\n",
            encoding="utf-8",
        )
        (self.conf_dir / "spark-defaults.conf").write_text(
            # No REST submission server (port 6066 on every interface), no stray UI port.
            "spark.master.rest.enabled false\n"
            f"spark.worker.timeout {WORKER_TIMEOUT_S}\n"
            "spark.ui.reverseProxy false\n",
            encoding="utf-8",
        )

    def start(self, timeout: float = 120.0) -> None:
        """Start the master, then the workers; wait until all of them are registered."""
        self._write_conf()
        common = [
            "--host",
            "127.0.0.1",
            "--properties-file",
            str(self.conf_dir / "spark-defaults.conf"),
        ]
        self.master = self._launch(
            "master",
            [MASTER_CLASS, *common, "--port", str(self.port), "--webui-port", str(self.ui_port)],
        )
        deadline = time.monotonic() + timeout
        self._wait(lambda: self.state() is not None, deadline, "the master's web UI")
        for i in range(self.n_workers):
            work = self.root / f"worker-{i}"
            work.mkdir(parents=True, exist_ok=True)
            sizes = ["--cores", str(self.cores), "--memory", self.memory]
            ports = ["--port", "0", "--webui-port", str(free_port())]
            args = [WORKER_CLASS, *common, *ports, *sizes, "--work-dir", str(work), self.url]
            self.workers.append(self._launch(f"worker-{i}", args))
        self._wait(
            lambda: len(self.alive_workers()) >= self.n_workers,
            deadline,
            "every worker to register",
        )

    def _wait(self, cond: Any, deadline: float, what: str) -> None:
        while not cond():
            dead = [d.name for d in [self.master, *self.workers] if d is not None and not d.alive()]
            if dead:
                raise AssertionError(f"{', '.join(dead)} exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} (logs in {self.root / 'logs'})")
            time.sleep(0.2)

    def state(self) -> dict[str, Any] | None:
        """The master's own view (its /json/ page), or None while it does not answer."""
        try:
            url = f"http://127.0.0.1:{self.ui_port}/json/"
            with urllib.request.urlopen(url, timeout=2) as r:
                return dict(json.loads(r.read()))
        except (OSError, ValueError):
            return None

    def alive_workers(self) -> list[dict[str, Any]]:
        state = self.state() or {}
        return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]

    def descendants(self, worker: Daemon) -> list[tuple[int, str]]:
        """(pid, command line) of every process below ``worker``: its executor JVMs, and their
        Python daemons and workers (which pyspark puts in process groups of their own)."""
        table = process_table()
        children: dict[int, list[int]] = {}
        for pid, ppid, _, _ in table:
            children.setdefault(ppid, []).append(pid)
        below: set[int] = set()
        todo = [worker.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in below:
                    below.add(child)
                    todo.append(child)
        return [(pid, args) for pid, _, _, args in table if pid in below]

    def executor_pids(self, worker: Daemon) -> list[int]:
        """The executor JVMs ``worker`` forked."""
        return [pid for pid, args in self.descendants(worker) if EXECUTOR_CLASS in args]

    def worker_of_executor(self, executor_id: str) -> int | None:
        """The index of the worker that runs executor ``executor_id`` (None: none does)."""
        flag = f"--executor-id {executor_id} "
        for i, worker in enumerate(self.workers):
            if any(EXECUTOR_CLASS in args and flag in args for _, args in self.descendants(worker)):
                return i
        return None

    def kill_worker(self, index: int) -> list[int]:
        """SIGKILL worker ``index``, its executors and their Python processes at once (a host
        that dies); return the executor pids that were killed."""
        worker = self.workers[index]
        below = self.descendants(worker)
        for pid in [worker.pid, *(p for p, _ in below)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        worker.proc.wait(30)
        return [pid for pid, args in below if EXECUTOR_CLASS in args]

    def leftovers(self) -> list[tuple[int, str]]:
        """Processes of this cluster still running: every JVM of it names its conf dir on its
        command line, and every process a worker started (Python workers too) inherits
        ``SPARK_CONF_DIR`` pointing there."""
        marker = str(self.conf_dir)
        env_marker = f"SPARK_CONF_DIR={marker}".encode()
        found = []
        for pid, _, _, args in process_table():
            if pid == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                environ = []
            if marker in args or env_marker in environ:
                found.append((pid, args))
        return found

    def stop(self, timeout: float = 30.0) -> None:
        """End every worker, then the master (SIGTERM, SIGKILL after ``timeout``), each with
        its whole process group; then SIGKILL any process of the cluster that is left."""
        daemons = [*self.workers, *([self.master] if self.master else [])]
        for d in daemons:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for d in daemons:
            try:
                d.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(d.pid, signal.SIGKILL)
                d.proc.wait(10)
        end = time.monotonic() + timeout
        while (left := self.leftovers()) and time.monotonic() < end:
            for pid, _ in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
