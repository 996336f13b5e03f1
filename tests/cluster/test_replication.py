"""A three-broker cluster under load: kill -9 of a broker loses no acknowledged transaction.

The live generator sends 1,000 tx/s and the stream (local Spark, its default state) scores them
while one broker's JVM is killed with SIGKILL. Topics were created with replication factor 3 and
min.insync.replicas 2 (auto, from the three brokers the metadata lists), and every producer uses
acks=all with idempotence, so:

* every transaction the generator saw acknowledged is in the topic, once (nothing acknowledged
  lived on the dead broker only; no retry wrote twice);
* the topic stays writable with two brokers (min.insync 2): acknowledgements resume on every
  partition;
* every acknowledged transaction reaches the Parquet exactly once, and every flagged one has its
  alert in fraud_alerts.

The figures (recovery after the kill, acked against consumed) are printed for docs/scaling.md.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from rtfd.schemas import Topics
from tests.cluster.conftest import AckTracker, install_model, read_topic, wait_for
from tests.spark.conftest import spark_settings
from tests.spark.helpers import read_enriched

pytestmark = pytest.mark.cluster

RATE = 1_000.0
BEFORE_KILL_S = 8.0
AFTER_KILL_S = 20.0


def describe(config: dict[str, Any], topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, in-sync replicas) from the cluster's metadata."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient(dict(config)).list_topics(topic, timeout=15)
    return {
        p: (m.leader, list(m.replicas), list(m.isrs))
        for p, m in md.topics[topic].partitions.items()
    }


def topic_config(config: dict[str, Any], topic: str, key: str) -> str:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient(dict(config))  # alive until the future is done
    (future,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return str(future.result(30)[key].value)


def test_kill_9_of_a_broker_under_load_loses_no_acknowledged_transaction(
    cluster: Any, trained_models: Any, tmp_path: Any
) -> None:
    from rtfd.broker import client_config
    from rtfd.broker.admin import ensure_topics, topic_specs
    from rtfd.broker.external import ExternalBroker
    from rtfd.generator.live import LiveGenerator
    from rtfd.stream.runner import StreamRunner

    t_test = time.monotonic()
    settings = spark_settings(
        tmp_path / "run",
        broker_bootstrap_servers=cluster.bootstrap_servers,
        generator_merchants=400,
    )
    install_model(trained_models, settings)
    ExternalBroker(settings).start()
    config = client_config(settings)
    ensure_topics(config, topic_specs(settings))
    for name in Topics.ALL:
        assert {len(r) for _, r, _ in describe(config, name).values()} == {3}, name
        assert topic_config(config, name, "min.insync.replicas") == "2", name

    runner = StreamRunner(settings)
    runner.start()
    try:
        state = runner.wait_running(timeout=240)
        assert state.phase == "running", state
        t_stream = time.monotonic()

        tracker = AckTracker(Topics.TRANSACTIONS)
        gen = LiveGenerator(
            settings, rate=RATE, producer_factory=tracker.factory, check_topics=True
        )
        gen.start()
        assert tracker.config["acks"] == "all" and tracker.config["enable.idempotence"] is True
        wait_for(
            lambda: tracker.acked() >= RATE * BEFORE_KILL_S,
            timeout=60,
            what="acknowledgements before the kill",
        )

        parts = describe(config, Topics.TRANSACTIONS)
        victim = parts[0][0]  # the leader of partition 0: a leader and a follower both move
        acked_at_kill = tracker.acked()
        t_kill = time.monotonic()
        cluster.kill(victim)

        # Writable with two brokers: every partition acknowledges a transaction sent after the
        # kill (acks=all, an ISR of 2 = min.insync.replicas).
        recovered = {
            p: wait_for(
                lambda p=p: tracker.writable_again(t_kill, p),
                timeout=60,
                what=f"partition {p} to acknowledge after the kill",
            )
            - t_kill
            for p in parts
        }
        after = describe(config, Topics.TRANSACTIONS)
        assert all(victim not in isr and len(isr) == 2 for _, _, isr in after.values()), after
        assert all(leader != victim and leader >= 0 for leader, _, _ in after.values()), after
        wait_for(lambda: time.monotonic() - t_kill >= AFTER_KILL_S, timeout=60, what="the run")
        stats = gen.stop(timeout=60)

        assert stats.error is None, stats.error
        assert stats.failed == 0
        assert stats.acked == stats.sent == tracker.acked()
        acked = tracker.ids
        assert len(set(acked)) == len(acked)

        t_consume = time.monotonic()
        in_topic = [
            json.loads(m.value())["transaction_id"] for m in read_topic(config, Topics.TRANSACTIONS)
        ]
        consume_s = time.monotonic() - t_consume
        assert len(in_topic) == len(set(in_topic)), "a retry wrote a transaction twice"
        assert set(acked) <= set(in_topic), f"{len(set(acked) - set(in_topic))} acked ids lost"
        assert len(in_topic) == len(acked)  # nothing unacknowledged slipped in either

        def parquet_complete() -> Any:
            df = read_enriched(settings, "transaction_id, is_fraud")
            return [df] if len(df) >= len(acked) else None

        (df,) = wait_for(
            parquet_complete, timeout=120, what="every acked transaction in Parquet", every=1.0
        )
        drained_s = time.monotonic() - t_kill
        assert len(df) == len(acked) and df["transaction_id"].nunique() == len(acked)
        assert set(df["transaction_id"]) == set(acked)
        assert runner.state.phase == "running", runner.state

        flagged = set(df.loc[df["is_fraud"], "transaction_id"])
        alerts = {
            json.loads(m.value())["transaction_id"] for m in read_topic(config, Topics.ALERTS)
        }
        assert flagged, "the model flagged nothing: the alert path was not exercised"
        assert alerts == flagged
    finally:
        runner.stop()

    t_restart = time.monotonic()
    cluster.restart(victim)
    wait_for(
        lambda: all(len(isr) == 3 for _, _, isr in describe(config, Topics.TRANSACTIONS).values()),
        timeout=90,
        what="the restarted broker back in every ISR",
    )
    rejoin_s = time.monotonic() - t_restart
    figures = {
        "cluster_start_s": round(cluster.start_s, 1),
        "stream_start_s": round(t_stream - t_test, 1),
        "killed_node": victim,
        "acked_before_kill": acked_at_kill,
        "recovery_s_per_partition": {p: round(s, 2) for p, s in sorted(recovered.items())},
        "acked": len(acked),
        "sent": stats.sent,
        "in_topic": len(in_topic),
        "in_parquet": len(df),
        "alerts": len(alerts),
        "read_topic_s": round(consume_s, 1),
        "parquet_complete_after_kill_s": round(drained_s, 1),
        "restart_back_in_isr_s": round(rejoin_s, 1),
        "test_s": round(time.monotonic() - t_test, 1),
    }
    print("CLUSTER FIGURES " + json.dumps(figures))
