"""The SparkSession of the stream: configured from Settings, quiet, and fully stoppable.

Why the gateway is launched by hand (FIELD-NOTES, "A Textual app with Spark in the same process"):
the JVM's own stdout/stderr (JDK warnings, "Using Spark's default log4j profile", the progress bar,
and every Python worker's stderr, which the JVM relays outside log4j) would otherwise land on the
terminal the TUI draws on. So the JVM is started with its output sent to ``<logs>/spark.log``, a
log4j2 file routes Spark's loggers to the same file, and ``PYTHONWARNINGS`` is set before the JVM
starts, the only way to quiet warnings in the Python workers.

``spark.stop()`` leaves the JVM alive until Python exits, so :func:`stop_spark` also shuts the
gateway down and waits for the JVM, which lets the TUI start a fresh session later.

On a cluster master (``spark://...``) the executors' Python workers run rtfd's decoder and state
operator, so :func:`start_spark` ships the driver's own rtfd package to them as a zip
(:func:`package_zip`), together with any ``spark.submit.pyFiles`` of ``[spark_conf]``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rtfd.config import Settings
from rtfd.errors import ConfigError
from rtfd.redact import log4j2_pattern, properties_value, spark_redaction_conf

log = logging.getLogger(__name__)

# Environment variable that marks every process of one stream (JVM, Python daemon and workers
# inherit it), so a restart can find the orphans of a killed run.
TAG_ENV = "RTFD_SPARK_TAG"
# The state is a handful of rows (one blob per user bucket), rewritten every batch. The HDFS-backed
# provider writes them as one small delta file per partition; RocksDB flushed, zipped and synced a
# snapshot on every commit (commitTimeMs 1.1-1.2 s per batch against 0.3-0.5 s, measured side by
# side with 4 buckets at 1,000 tx/s). RocksDB stays available through ``spark_conf``; a checkpoint
# keeps the provider it was created with (Spark stores it in the offset log).
STATE_PROVIDER = "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider"
ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
SPARK_LOG_MAX_BYTES = 20 * 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PY_FILES_KEY = "spark.submit.pyFiles"
# The zip of the driver's own rtfd; a name of its own, so a user's "rtfd.zip" in
# spark.submit.pyFiles does not collide with it in Spark's file server.
DRIVER_ZIP = "rtfd-driver.zip"
# What pyspark puts on an executor's sys.path (SparkContext.PACKAGE_EXTENSIONS).
PY_FILE_SUFFIXES = (".zip", ".egg", ".jar")

_LOG4J2 = """# Written by rtfd at every stream start: Spark logs to a file, never to the terminal.
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.append = true
appender.file.layout.type = PatternLayout
# Secrets are masked in the message and the exception (rtfd.redact); the exception is written
# inside the mask only, never appended raw after it.
appender.file.layout.alwaysWriteExceptions = false
appender.file.layout.pattern = {pattern}
# Without this, "Setting default log level" still goes to stderr.
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = {level}
logger.kafka.name = org.apache.kafka
logger.kafka.level = {quiet}
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
logger.rocksdb.name = org.apache.spark.sql.execution.streaming.state
logger.rocksdb.level = {quiet}
"""


def spark_log_file(settings: Settings) -> Path:
    """Where the JVM and Spark log: next to rtfd.log, never the terminal."""
    return settings.log_root / "spark.log"


def _spark_level(settings: Settings) -> str:
    # Spark's INFO is a firehose: rtfd's INFO maps to Spark's WARN.
    return {"DEBUG": "info", "INFO": "warn", "WARNING": "warn", "ERROR": "error"}[
        settings.log_level
    ]


def write_log4j2_config(settings: Settings) -> Path:
    """Write the log4j2 properties for this start and return its path.

    Every line Spark, Kafka's Java client and the JVM's other log4j loggers write has secret
    shapes masked (``%replace``, :func:`rtfd.redact.log4j2_pattern`). What the JVM prints to its
    own stdout/stderr outside log4j (and the Python workers' stderr it relays) reaches spark.log
    unfiltered.
    """
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_root.mkdir(parents=True, exist_ok=True)
    level = _spark_level(settings)
    quiet = "error" if level in ("warn", "error") else "warn"
    path = settings.run_dir / "spark-log4j2.properties"
    pattern = log4j2_pattern("%d{yyyy-MM-dd HH:mm:ss.SSS} %-5p %c{1}: ")
    text = _LOG4J2.format(
        level=level,
        quiet=quiet,
        path=spark_log_file(settings),
        pattern=properties_value(pattern),
    )
    path.write_text(text, encoding="utf-8")
    return path


def _rotate(path: Path) -> None:
    """Keep one previous spark.log; the JVM appends to the file, so it cannot rotate itself."""
    with contextlib.suppress(OSError):
        if path.exists() and path.stat().st_size > SPARK_LOG_MAX_BYTES:
            path.replace(path.with_name(path.name + ".1"))


def master_on_loopback(master: str) -> bool:
    """Whether a master URL keeps the whole cluster on this machine: ``local[...]``, or a
    standalone ``spark://`` master whose every host is loopback. Its executors then reach the
    driver on 127.0.0.1, and nothing should listen anywhere else."""
    text = master.strip()
    if text.lower().startswith("local"):
        return True
    if not text.lower().startswith("spark://"):
        return False
    hosts = [urlsplit(f"//{part.strip()}").hostname for part in text[8:].split(",")]
    return bool(hosts) and all(h in LOOPBACK_HOSTS for h in hosts)


def package_zip(dest: Path) -> Path:
    """Zip the rtfd package this process runs (sources and package data, no bytecode) to
    ``dest``, atomically, and return ``dest``.

    Why: on a cluster the executors decode records and fold the per-user state with rtfd's
    code, which must be the driver's own version. Shipped as a py-file, the zip goes first on
    each Python worker's ``sys.path``, ahead of any rtfd installed there. rtfd's third-party
    dependencies (numpy, pandas, pyarrow, zstandard...) still have to be installed on the
    workers: they hold compiled code a zip cannot carry.
    """
    import rtfd

    root = Path(rtfd.__file__).resolve().parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root.parent)
            if path.is_dir() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
                continue
            z.write(path, rel.as_posix())
    tmp.replace(dest)
    return dest


def py_files(settings: Settings, conf: dict[str, str]) -> list[str]:
    """The Python files the executors need: ``spark.submit.pyFiles`` from ``conf`` (checked:
    a missing or unusable file is one line), then, on a cluster master, rtfd's own zip (added
    last, so it comes first on the workers' ``sys.path``: the driver's rtfd wins).

    Why not leave them in the conf: ``spark.submit.pyFiles`` is distributed by spark-submit,
    and rtfd starts Spark in-process, so it hands them to the SparkContext itself."""
    out: list[str] = []
    for raw in conf.get(PY_FILES_KEY, "").split(","):
        path = raw.strip()
        if not path:
            continue
        local = path.removeprefix("file://") if path.startswith("file://") else path
        if "://" not in local and not Path(local).is_file():
            raise ConfigError(
                f"setting spark_conf {PY_FILES_KEY}: {path} is not a file (build rtfd's with "
                "`just dist`)"
            )
        if not path.lower().endswith(PY_FILE_SUFFIXES):
            raise ConfigError(
                f"setting spark_conf {PY_FILES_KEY}: {path} is not a .zip, .egg or .jar file, "
                "which is all Python workers can import from"
            )
        out.append(path)
    if not settings.spark_master.strip().lower().startswith("local"):
        out.append(str(package_zip(settings.run_dir / "spark-py" / DRIVER_ZIP)))
    return out


def spark_conf_items(
    settings: Settings, *, app_name: str, jars: list[Path], log4j2: Path | None, tag: str
) -> dict[str, str]:
    """Every spark.* setting of the stream; ``settings.spark_conf`` overrides the defaults."""
    local = settings.spark_master.startswith("local")
    java_opts = [f"-D{TAG_ENV.lower().replace('_', '.')}={tag}"]
    if log4j2 is not None:
        java_opts.append(f"-Dlog4j2.configurationFile=file:{log4j2}")
    conf: dict[str, str] = {
        "spark.master": settings.spark_master,
        "spark.app.name": app_name,
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.ui.enabled": "true" if settings.spark_ui else "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": "1g",
        "spark.driver.extraJavaOptions": " ".join(java_opts),
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.sql.streaming.stateStore.providerClass": STATE_PROVIDER,
        # Keep checkpoints small: 20 batches of history are plenty to recover from.
        "spark.sql.streaming.minBatchesToRetain": "20",
        "spark.sql.streaming.stateStore.rocksdb.compactOnCommit": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.adaptive.enabled": "false",
        "spark.python.worker.reuse": "true",
        "spark.sql.warehouse.dir": str(settings.run_dir / "spark-warehouse"),
        "spark.local.dir": str(settings.run_dir / "spark-tmp"),
    }
    if jars:
        conf["spark.jars"] = ",".join(str(j) for j in jars)
    if local or master_on_loopback(settings.spark_master):
        # Binding to loopback avoids the "hostname resolves to a loopback address" warning and
        # keeps the UI (when enabled) on 127.0.0.1; a loopback cluster's executors connect here.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    # Spark masks conf entries and Kafka source options by these (UI, event log, plans).
    conf.update(spark_redaction_conf())
    conf.update(settings.spark_conf)
    return conf


@contextlib.contextmanager
def _env(updates: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the JVM launch only (the JVM copies os.environ)."""
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class SparkHandle:
    """A running SparkSession with the gateway JVM rtfd launched for it."""

    spark: Any
    gateway: Any
    log_file: Path
    tag: str
    started_s: float
    jvm_pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def start_spark(
    settings: Settings,
    *,
    tag: str,
    app_name: str = "rtfd-stream",
    with_kafka: bool = True,
) -> SparkHandle:
    """Start the JVM (output to the log file) and a SparkSession on it."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    from rtfd.stream.connector import ensure_connector

    jars = ensure_connector(settings) if with_kafka else []
    log4j2 = write_log4j2_config(settings)
    out_path = spark_log_file(settings)
    _rotate(out_path)
    for d in ("spark-tmp", "spark-warehouse"):
        (settings.run_dir / d).mkdir(parents=True, exist_ok=True)
    items = spark_conf_items(settings, app_name=app_name, jars=jars, log4j2=log4j2, tag=tag)
    shipped = py_files(settings, items)
    items.pop(PY_FILES_KEY, None)
    conf = SparkConf(loadDefaults=False)
    for k, v in items.items():
        conf.set(k, v)
    t0 = time.monotonic()
    env = {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONWARNINGS": "ignore",
        TAG_ENV: tag,
        "SPARK_PRINT_LAUNCH_COMMAND": "",
    }
    if master_on_loopback(settings.spark_master):
        env["SPARK_LOCAL_IP"] = "127.0.0.1"  # no "hostname resolves to a loopback" warning
    path_before = list(sys.path)
    with open(out_path, "ab") as out, _env(env):
        gateway = launch_gateway(conf, popen_kwargs={"stdout": out, "stderr": out})
        try:
            sc = SparkContext(conf=conf, gateway=gateway, pyFiles=shipped)
        except Exception:
            _shutdown_gateway(gateway)
            raise
        finally:
            # pyspark also puts each py-file on the driver's own sys.path; the driver runs the
            # code it was started with (and the copies vanish with the JVM's temp dir).
            names = tuple(os.sep + Path(p).name for p in shipped)
            sys.path[:] = [p for p in sys.path if p in path_before or not p.endswith(names)]
    spark = SparkSession(sc)
    proc = getattr(gateway, "proc", None)
    handle = SparkHandle(
        spark=spark,
        gateway=gateway,
        log_file=out_path,
        tag=tag,
        started_s=time.monotonic() - t0,
        jvm_pid=proc.pid if proc is not None else None,
    )
    log.info(
        "Spark %s started in %.1f s (master %s, jvm pid %s, log %s)",
        spark.version,
        handle.started_s,
        settings.spark_master,
        handle.jvm_pid,
        out_path,
    )
    return handle


def stop_spark(handle: SparkHandle, *, timeout: float = 30.0) -> None:
    """Stop the session, shut the gateway down and wait for the JVM to exit."""
    from pyspark import SparkContext

    try:
        handle.spark.stop()
    except Exception as e:  # the JVM may already be gone
        log.debug("spark.stop(): %s", e)
    _shutdown_gateway(handle.gateway, timeout=timeout)
    # Forget the dead gateway so a later SparkContext launches a fresh JVM.
    SparkContext._gateway = None
    SparkContext._jvm = None
    SparkContext._active_spark_context = None
    log.info("Spark stopped (jvm pid %s)", handle.jvm_pid)


def _shutdown_gateway(gateway: Any, timeout: float = 30.0) -> None:
    proc = getattr(gateway, "proc", None)
    with contextlib.suppress(Exception):
        gateway.shutdown()
    if proc is None:
        return
    with contextlib.suppress(Exception):
        if proc.stdin:
            proc.stdin.close()  # the JVM exits when its stdin closes
    try:
        proc.wait(timeout)
    except Exception:
        proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)
