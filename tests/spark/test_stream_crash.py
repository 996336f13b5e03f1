"""Crash safety: kill -9 the stream process at random moments while the generator runs.

The stream runs as its own process (``python -m rtfd.cli stream``), as in production. It is killed
with SIGKILL three times, each time after it has been writing for a moment, and restarted; a
fourth run catches up and is stopped cleanly. Every produced transaction must then be in the
Parquet exactly once, and no Spark process of any run may be left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtfd.config import Settings
from tests.spark.conftest import SPARK_TEST_SETTINGS, spark_settings
from tests.spark.helpers import consume_all, count_rows, read_enriched, wait_for

pytestmark = pytest.mark.spark

KILLS = 3
RATE = 100.0
START_TIMEOUT_S = 420.0


class StreamProcess:
    """``python -m rtfd.cli stream`` in its own session (process group), output to a file."""

    def __init__(self, settings: Settings, prefix: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTFD_")}
        env.update(
            {
                "RTFD_HOME": str(settings.data_dir),
                "RTFD_CONFIG": str(settings.data_dir / "no-config.toml"),
                "RTFD_BROKER_BOOTSTRAP_SERVERS": settings.broker_bootstrap_servers,
                "RTFD_SPARK_MASTER": str(SPARK_TEST_SETTINGS["spark_master"]),
                "RTFD_SPARK_SHUFFLE_PARTITIONS": str(
                    SPARK_TEST_SETTINGS["spark_shuffle_partitions"]
                ),
            }
        )
        if os.environ.get("RTFD_CACHE_DIR"):
            env["RTFD_CACHE_DIR"] = os.environ["RTFD_CACHE_DIR"]
        self.log = log
        self.settings = settings
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rtfd.cli",
                    "stream",
                    "--topic-prefix",
                    prefix,
                    "--progress-every",
                    "5",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def kill9(self) -> None:
        """SIGKILL the stream's Python process only, as a crash would."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 90.0) -> int:
        """The clean stop (SIGTERM); returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(10)

    def output(self) -> str:
        """The process's own output, plus the errors rtfd.log holds (for failure messages)."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        rtfd_log = self.settings.log_file
        if rtfd_log.exists():
            lines = rtfd_log.read_text(encoding="utf-8", errors="replace").splitlines()
            errors = [ln for ln in lines if " ERROR " in ln or "Error" in ln][-20:]
            text += "\n--- rtfd.log errors ---\n" + "\n".join(errors)
        return text


@pytest.fixture
def crash_env(
    kafka_broker: Any, tmp_path: Path
) -> Iterator[tuple[Settings, str, list[StreamProcess]]]:
    from rtfd.stream.scoring import ensure_model

    settings = spark_settings(
        tmp_path / "crash-home",
        broker_bootstrap_servers=kafka_broker.bootstrap_servers,
        generator_users=2_000,
        generator_merchants=400,
    )
    ensure_model(settings)
    procs: list[StreamProcess] = []
    try:
        yield settings, f"crash-{uuid.uuid4().hex[:8]}-", procs
    finally:
        from rtfd.stream.procs import checkpoint_tag, end_orphans
        from rtfd.stream.session import TAG_ENV

        for p in procs:
            p.kill_group()
        end_orphans(checkpoint_tag(settings.checkpoints_dir), TAG_ENV, grace_s=2)


@pytest.mark.timeout(1200)
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    crash_env: tuple[Settings, str, list[StreamProcess]], tmp_path: Path
) -> None:
    from rtfd.generator.live import LiveGenerator
    from rtfd.stream.procs import checkpoint_tag, tagged_processes
    from rtfd.stream.runner import StreamTopics, ensure_stream_topics
    from rtfd.stream.session import TAG_ENV

    settings, prefix, procs = crash_env
    topics = StreamTopics.with_prefix(prefix)
    ensure_stream_topics(settings, topics)
    rng = random.Random(20261130)
    generator = LiveGenerator(
        settings, topic=topics.transactions, labels_topic=topics.labels, rate=RATE, seed=5
    )
    generator.start()
    try:
        for i in range(KILLS):
            before = count_rows(settings.enriched_dir)
            proc = StreamProcess(settings, prefix, tmp_path / f"stream-{i}.log")
            procs.append(proc)

            def wrote_or_died(b: int = before, p: StreamProcess = proc) -> bool:
                return count_rows(settings.enriched_dir) > b or p.proc.poll() is not None

            wait_for(
                wrote_or_died,
                timeout=START_TIMEOUT_S,
                what=f"run {i} to write Parquet",
            )
            assert proc.proc.poll() is None, proc.output()[-6000:]
            time.sleep(rng.uniform(0.0, 3.0))
            proc.kill9()
    finally:
        generator.stop()
    produced = [
        json.loads(m.value())["transaction_id"]
        for m in consume_all(settings, topics.transactions, timeout=60)
    ]
    assert len(produced) == len(set(produced)) > 0

    final = StreamProcess(settings, prefix, tmp_path / "stream-final.log")
    procs.append(final)
    wait_for(
        lambda: count_rows(settings.enriched_dir) >= len(produced) or final.proc.poll() is not None,
        timeout=START_TIMEOUT_S,
        what=f"{len(produced)} rows after the last restart",
    )
    assert final.proc.poll() is None, final.output()[-6000:]
    assert final.terminate() == 0, final.output()[-6000:]

    df = read_enriched(settings, "transaction_id")
    assert len(df) == len(produced), "duplicated or lost rows"
    assert set(df["transaction_id"]) == set(produced)
    leftovers = tagged_processes(checkpoint_tag(settings.checkpoints_dir), TAG_ENV)
    assert leftovers == [], f"Spark processes left behind: {leftovers}"
