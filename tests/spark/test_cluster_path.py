"""The stream's Spark-state path (stream_state = spark, what a cluster master uses), run in local
mode: every transaction exactly once, with the offline kernel's features."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.spark.conftest import spark_settings
from tests.spark.helpers import count_rows, read_enriched, wait_for

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def cluster_stream(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from rtfd.stream.runner import StreamRunner, StreamTopics
    from rtfd.stream.scoring import ensure_model

    settings = spark_settings(
        tmp_path_factory.mktemp("cluster-path"),
        broker_bootstrap_servers=kafka_broker.bootstrap_servers,
        generator_users=1_000,
        generator_merchants=200,
        stream_state="spark",
    )
    ensure_model(settings)
    runner = StreamRunner(settings, topics=StreamTopics.with_prefix(f"cl-{uuid.uuid4().hex[:8]}-"))
    runner.start()
    state = runner.wait_running(timeout=300)
    assert state.phase == "running", state
    try:
        yield runner
    finally:
        runner.stop()


def test_the_spark_state_path_writes_each_transaction_once_with_the_kernels_features(
    cluster_stream: Any,
) -> None:
    from rtfd.features.names import USER_FEATURES
    from rtfd.features.offline import build_features
    from rtfd.generator.live import produce_transactions

    runner = cluster_stream
    s = runner.settings
    ids = produce_transactions(
        s, 6_000, seed=21, topic=runner.topics.transactions, labels=False, malformed_share=0.01
    )
    wait_for(lambda: count_rows(s.enriched_dir) >= len(ids), timeout=300, what="rows in Parquet")
    assert runner.state.phase == "running", runner.state
    df = read_enriched(s)
    assert len(df) == len(ids) and set(df["transaction_id"]) == set(ids)
    fields = ["transaction_id", "user_id", "merchant_id", "amount", "location", "lat", "lon"]
    rows = df[[*fields, "channel", "timestamp"]].copy()
    rows["timestamp"] = (
        rows["timestamp"].dt.tz_convert("UTC")
        if rows["timestamp"].dt.tz
        else rows["timestamp"].dt.tz_localize("UTC")
    )
    expected = build_features(rows).set_index(rows["transaction_id"])
    got = df.set_index("transaction_id").loc[expected.index]
    for name in USER_FEATURES:
        assert np.array_equal(got[name].to_numpy(), expected[name].to_numpy()), name
    latest = runner.latest_progress()
    assert latest is not None and latest.state_users and latest.state_rows
