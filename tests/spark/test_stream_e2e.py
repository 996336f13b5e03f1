"""The streaming job end to end against the real embedded broker, one stream for the module.

Produce simulated transactions, let the job catch up, then check the Parquet (exactly the
produced transactions, once each), the alerts (each matches a flagged Parquet row), the
features (equal to the offline kernel's), bad input (all of it in the DLQ, nothing else
changed), labels (ingested to Parquet), progress events and the hot reload of a new model.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from rtfd.config import Settings
from tests.spark.conftest import spark_settings
from tests.spark.helpers import (
    consume_all,
    count_rows,
    listening_sockets,
    read_enriched,
    wait_for,
)

pytestmark = pytest.mark.spark

N = 20_000
CATCH_UP_S = 420.0


class Stream:
    """The module's running stream and what the tests produced into it."""

    def __init__(self, runner: Any, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings
        self.topics = runner.topics
        self.events: list[Any] = []
        self.valid_ids: list[str] = []
        runner.add_listener(self.events.append)

    def produce(self, n: int, *, seed: int, malformed_share: float = 0.0) -> list[str]:
        from rtfd.generator.live import produce_transactions

        ids = produce_transactions(
            self.settings,
            n,
            seed=seed,
            topic=self.topics.transactions,
            labels_topic=self.topics.labels,
            malformed_share=malformed_share,
        )
        self.valid_ids += ids
        return ids

    def committed_rows(self) -> int:
        """Rows of batches Spark has committed (progress comes after the commit)."""
        return sum(e.rows for e in list(self.events) if e.query == "transactions")

    def wait_caught_up(self) -> None:
        expected = len(self.valid_ids)
        wait_for(
            lambda: self.committed_rows() >= expected,
            timeout=CATCH_UP_S,
            what=f"{expected} rows committed",
        )
        # Committed rows reach Parquet within seconds (the sink flushes every few seconds).
        wait_for(
            lambda: count_rows(self.settings.enriched_dir) >= expected,
            timeout=30,
            what=f"{expected} rows in Parquet",
        )
        assert count_rows(self.settings.enriched_dir) == expected
        assert self.runner.state.phase == "running", self.runner.state


@pytest.fixture(scope="module")
def stream(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stream]:
    from rtfd.stream.runner import StreamRunner, StreamTopics
    from rtfd.stream.scoring import ensure_model

    home = tmp_path_factory.mktemp("stream-e2e")
    settings = spark_settings(
        home,
        broker_bootstrap_servers=kafka_broker.bootstrap_servers,
        generator_users=2_000,
        generator_merchants=400,
    )
    ensure_model(settings)
    topics = StreamTopics.with_prefix(f"e2e-{uuid.uuid4().hex[:8]}-")
    runner = StreamRunner(settings, topics=topics)
    s = Stream(runner, settings)
    runner.start()
    state = runner.wait_running(timeout=300)
    assert state.phase == "running", state
    try:
        yield s
    finally:
        runner.stop()
    assert runner.state.phase == "stopped", runner.state


def test_every_transaction_lands_in_parquet_exactly_once(stream: Stream) -> None:
    ids = stream.produce(N, seed=11)
    assert len(ids) == N
    stream.wait_caught_up()
    df = read_enriched(stream.settings, "transaction_id, is_fraud, model_version, event_date")
    assert len(df) == N
    assert df["transaction_id"].nunique() == N
    assert set(df["transaction_id"]) == set(ids)
    assert df["model_version"].notna().all()
    assert df["event_date"].notna().all()


def test_enriched_parquet_has_every_field_and_feature(stream: Stream) -> None:
    from rtfd.features.names import FEATURE_NAMES
    from rtfd.schemas import TRANSACTION

    df = read_enriched(stream.settings)
    wanted = [
        *TRANSACTION.names,
        *FEATURE_NAMES,
        "fraud_score",
        "is_fraud",
        "model_version",
        "kafka_partition",
        "kafka_offset",
        "processed_at",
        "event_date",
    ]
    assert [c for c in wanted if c not in df.columns] == []
    assert df["fraud_score"].between(0, 1).all()
    assert not df[FEATURE_NAMES].isna().any().any()


def test_every_alert_matches_a_flagged_parquet_row(stream: Stream) -> None:
    from rtfd.schemas import ALERT

    df = read_enriched(stream.settings, "transaction_id, is_fraud, fraud_score, model_version")
    flagged = set(df.loc[df["is_fraud"], "transaction_id"])
    alerts = [json.loads(m.value()) for m in consume_all(stream.settings, stream.topics.alerts)]
    assert alerts, "the model flagged nothing: the alert path was not exercised"
    by_tx = df.set_index("transaction_id")
    for a in alerts:
        assert set(ALERT.names) <= set(a)
        assert a["transaction_id"] in flagged
        row = by_tx.loc[a["transaction_id"]]
        assert a["model_version"] == row["model_version"]
        assert a["fraud_score"] == pytest.approx(row["fraud_score"])
        assert a["fraud_score"] >= a["threshold"]
        key = f"{a['transaction_id']}|{a['model_version']}".encode()
        assert a["alert_id"] == hashlib.sha256(key).hexdigest()[:32]
        for seed_field in ("transaction_id", "user_id", "fraud_score", "timestamp"):
            assert a[seed_field] is not None
    assert {a["transaction_id"] for a in alerts} == flagged


def test_stream_features_equal_the_offline_kernel(stream: Stream) -> None:
    from rtfd.features.names import FEATURE_NAMES
    from rtfd.features.offline import build_features
    from rtfd.schemas import TRANSACTION

    df = read_enriched(stream.settings).sort_values("transaction_id").reset_index(drop=True)
    history = df[TRANSACTION.names].copy()
    offline = build_features(history)
    online = df[FEATURE_NAMES].to_numpy(dtype=np.float64)
    expected = offline[FEATURE_NAMES].to_numpy(dtype=np.float64)
    bad = ~np.isclose(online, expected, rtol=1e-9, atol=1e-9)
    if bad.any():
        cols = [FEATURE_NAMES[j] for j in np.flatnonzero(bad.any(axis=0))]
        pytest.fail(f"{int(bad.any(axis=1).sum())} rows differ, in {cols}")


def test_malformed_messages_go_to_the_dlq_and_nothing_else_changes(stream: Stream) -> None:
    from rtfd.generator.live import MALFORMATIONS
    from rtfd.schemas import DEAD_LETTER

    before = read_enriched(stream.settings, "transaction_id")
    n = 3_000
    ids = stream.produce(n, seed=12, malformed_share=0.01)
    n_bad = n - len(ids)
    assert n_bad == 30
    stream.wait_caught_up()
    after = read_enriched(stream.settings, "transaction_id")
    assert len(after) == len(before) + len(ids)
    assert set(after["transaction_id"]) == set(before["transaction_id"]) | set(ids)
    dead = [json.loads(m.value()) for m in consume_all(stream.settings, stream.topics.dlq)]
    tx_dead = [d for d in dead if d["topic"] == stream.topics.transactions]
    assert len(tx_dead) == n_bad
    assert {d["reason"] for d in tx_dead} <= set(MALFORMATIONS)
    for d in tx_dead:
        assert set(DEAD_LETTER.names) <= set(d)
    dead_events = sum(e.dead_letters for e in stream.events if e.query == "transactions")
    assert dead_events == n_bad


def test_labels_are_ingested_to_parquet(stream: Stream) -> None:
    from tests.spark.helpers import read_parquet_dir

    sent = consume_all(stream.settings, stream.topics.labels)
    assert sent, "the generator sent no labels"
    wait_for(
        lambda: count_rows(stream.settings.labels_dir) >= len(sent),
        timeout=60,
        what="labels in Parquet",
    )
    labels = read_parquet_dir(stream.settings.labels_dir)
    assert len(labels) == len(sent)
    assert set(labels["transaction_id"]) == {json.loads(m.value())["transaction_id"] for m in sent}
    assert "report_date" in labels.columns


def test_progress_reports_rates_latency_and_state(stream: Stream) -> None:
    events = [e for e in stream.events if e.query == "transactions" and e.rows]
    assert events
    assert sum(e.rows for e in events) == len(stream.valid_ids)
    last = events[-1]
    assert last.latency_p50_ms is not None and last.latency_p99_ms is not None
    assert 0 < last.latency_p50_ms <= last.latency_p99_ms
    assert last.state_users and last.state_users > 0
    assert last.state_memory_bytes and last.batch_duration_ms > 0
    # The state a batch writes follows its rows: its redo record, not every user's state.
    assert last.state_bytes_written and last.state_bytes_written < 2_000 * last.rows + 10_000
    assert set(last.steps_ms) >= {"decode", "features", "score", "redo"}
    assert last.offsets_behind is not None
    assert last.model_version


def test_a_promoted_model_is_used_by_later_batches_without_restart(stream: Stream) -> None:
    from rtfd.ml.registry import Registry
    from tests.spark.models import publish_new_version

    registry = Registry(stream.settings.models_dir)
    old = registry.current()
    new = publish_new_version(stream.settings)
    assert new != old and registry.current() == new
    ids = stream.produce(500, seed=13)
    stream.wait_caught_up()
    df = read_enriched(stream.settings, "transaction_id, model_version")
    later = df[df["transaction_id"].isin(ids)]
    assert len(later) == len(ids)
    assert set(later["model_version"]) == {new}
    assert stream.runner.state.phase == "running"


def test_every_port_the_stream_opens_listens_on_loopback_only(stream: Stream) -> None:
    """The JVM (driver, block manager, py4j gateway) and the Python workers: nothing may be
    reachable from another machine."""
    import ipaddress

    from rtfd.stream.procs import checkpoint_tag, tagged_processes
    from rtfd.stream.session import TAG_ENV

    tag = checkpoint_tag(stream.settings.checkpoints_dir)
    pids = set(tagged_processes(tag, TAG_ENV))
    handle = stream.runner._handle
    if handle is not None and handle.jvm_pid:
        pids.add(handle.jvm_pid)
    sockets = listening_sockets(pids)
    assert sockets, f"no listening socket found for the stream's processes {sorted(pids)}"

    def loopback(ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        mapped = getattr(addr, "ipv4_mapped", None)
        return addr.is_loopback or (mapped is not None and mapped.is_loopback)

    exposed = [(ip, port) for ip, port in sockets if not loopback(ip)]
    assert not exposed, f"listening beyond loopback: {exposed} (all: {sockets})"


def test_after_a_query_failure_the_same_runner_restarts_on_its_checkpoint(stream: Stream) -> None:
    """Last in the module: the failed run's clean-up must release the checkpoint lock and its
    Spark session, so that the supervisor's restart (start() on the same runner) succeeds."""
    runner = stream.runner
    runner._queries["transactions"].stop()  # to the runner, the same as a fatal query error
    wait_for(lambda: runner.state.phase == "failed", timeout=60, what="the runner to fail")
    assert runner.state.reason.startswith("transactions query stopped"), runner.state
    runner.start()
    state = runner.wait_running(timeout=300)
    assert state.phase == "running", state
    stream.produce(300, seed=2024)
    stream.wait_caught_up()
