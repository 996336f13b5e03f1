"""Generator -> stream -> Parquet end to end against Redpanda, the Docker default backend.

Runs only where a Docker engine answers (``docker info``); elsewhere it is skipped with the reason.
It goes through rtfd's own start path (``docker compose -f docker/compose.yml``, the pinned
image) on free ports. The compose file names its container ``rtfd-redpanda`` and its volume
``rtfd_redpanda-data``: a user's own Redpanda is never touched — the test is skipped when either
already exists, and removes both (``down -v``) at the end.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtfd.schemas import Topics
from rtfd.sysinfo import docker_engine_version, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.spark]

CONTAINER = "rtfd-redpanda"
VOLUME = "rtfd_redpanda-data"


def _docker_has(kind: str, name: str) -> bool:
    cmd = ["docker", kind, "ls", "-a", "-q", "--filter", f"name=^{name}$"]
    if kind == "volume":
        cmd = ["docker", "volume", "ls", "-q", "--filter", f"name=^{name}$"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout
    return bool(out.strip())


def _skip_reason() -> str | None:
    if docker_engine_version() is None:
        return "no Docker engine answers (`docker info` fails): the Redpanda backend cannot run"
    if _docker_has("container", CONTAINER) or _docker_has("volume", VOLUME):
        return f"a {CONTAINER} container or {VOLUME} volume exists (yours?): not touching it"
    return None


@pytest.fixture
def redpanda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    from rtfd.broker.redpanda import RedpandaBroker
    from tests.spark.conftest import spark_settings

    monkeypatch.setenv("RTFD_REDPANDA_ADMIN_PORT", str(free_port()))
    settings = spark_settings(
        tmp_path / "run",
        broker_backend="redpanda",
        broker_port=free_port(),
        generator_merchants=400,
    )
    broker = RedpandaBroker(settings)
    try:
        broker.start()
        yield broker
    finally:
        subprocess.run(
            broker.compose_command("down", "-v"),
            env=broker.compose_env(),
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_generator_stream_parquet_end_to_end_on_redpanda(redpanda: Any) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from rtfd.broker.admin import ensure_topics, topic_specs
    from rtfd.generator.live import LiveGenerator
    from rtfd.stream.runner import StreamRunner
    from tests.spark.helpers import read_enriched, wait_for

    settings = redpanda.settings
    config = redpanda.client_config()
    ensure_topics(config, topic_specs(settings))
    runner = StreamRunner(settings)
    runner.start()
    try:
        state = runner.wait_running(timeout=300)
        assert state.phase == "running", state
        gen = LiveGenerator(settings, rate=1_000)
        gen.start()
        wait_for(lambda: gen.stats().acked >= 5_000, timeout=60, what="5,000 acknowledged")
        stats = gen.stop(timeout=60)
        assert stats.failed == 0 and stats.error is None and stats.acked == stats.sent

        consumer = Consumer({**config, "group.id": f"t-{time.time()}", "enable.auto.commit": False})
        try:
            md = consumer.list_topics(Topics.TRANSACTIONS, timeout=10)
            in_topic = sum(
                consumer.get_watermark_offsets(TopicPartition(Topics.TRANSACTIONS, p), timeout=10)[
                    1
                ]
                for p in md.topics[Topics.TRANSACTIONS].partitions
            )
        finally:
            consumer.close()
        assert in_topic == stats.acked

        def parquet_complete() -> Any:
            df = read_enriched(settings, "transaction_id, is_fraud")
            return [df] if len(df) >= stats.acked else None

        (df,) = wait_for(parquet_complete, timeout=180, what="every transaction in Parquet")
        assert len(df) == stats.acked == df["transaction_id"].nunique()
        flagged = set(df.loc[df["is_fraud"], "transaction_id"])
        from tests.spark.helpers import consume_all

        alerts = {
            json.loads(m.value())["transaction_id"] for m in consume_all(settings, Topics.ALERTS)
        }
        assert alerts == flagged
    finally:
        runner.stop()
