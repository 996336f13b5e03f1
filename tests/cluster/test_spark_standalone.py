"""The stream on a real Spark standalone cluster: a master and two one-core workers from
pyspark's own ``spark-class`` on 127.0.0.1 (tests/cluster/spark_cluster.py).

With ``spark_master = spark://...`` the stream keeps the per-user state in Spark's state store on
the executors (rtfd.stream.cluster), and the executors run the rtfd the driver ships them as a zip
(rtfd.stream.session.package_zip): the workers get no PYTHONPATH. One stream runs for the module:

* 20,000 transactions land in the Parquet exactly once, and every flagged one has its alert on
  ``fraud_alerts``;
* then 12,000 more, and one worker is killed with SIGKILL together with its executor JVM and
  Python workers while the batches run: Spark runs the lost tasks on the surviving executor, whose
  state store loads the lost partitions from the checkpoint, and every transaction is still there
  exactly once, with the per-user features of the offline kernel (so no state was lost either).

The figures (start, time to the first batch after the kill, counts) are printed for
docs/scaling.md.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.cluster.conftest import install_model, read_topic, wait_for
from tests.cluster.spark_cluster import process_table
from tests.spark.conftest import spark_settings
from tests.spark.helpers import count_rows, read_enriched

pytestmark = pytest.mark.cluster

FIRST_RUN = 20_000
SECOND_RUN = 12_000
# Several micro-batches per run, so the kill lands between and inside batches.
PER_BATCH = 3_000
FIGURES: dict[str, Any] = {}
PRODUCED: list[str] = []


@pytest.fixture(scope="module")
def standalone_stream(
    spark_standalone: Any,
    kafka_broker: Any,
    trained_models: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """A StreamRunner on the standalone cluster, against the session's embedded Kafka."""
    from rtfd.stream.runner import StreamRunner, StreamTopics

    settings = spark_settings(
        tmp_path_factory.mktemp("standalone-stream"),
        spark_master=spark_standalone.url,
        broker_bootstrap_servers=kafka_broker.bootstrap_servers,
        generator_users=1_000,
        generator_merchants=200,
        stream_max_offsets_per_trigger=PER_BATCH,
    ).replace(spark_conf={"spark.executor.memory": "640m"})
    assert not settings.state_in_driver  # a cluster master: the state lives on the executors
    install_model(trained_models, settings)
    runner = StreamRunner(settings, topics=StreamTopics.with_prefix(f"sa-{uuid.uuid4().hex[:8]}-"))
    t0 = time.monotonic()
    runner.start()
    try:
        state = runner.wait_running(timeout=300)
        assert state.phase == "running", state
        FIGURES["cluster_start_s"] = round(spark_standalone.start_s, 1)
        FIGURES["stream_start_s"] = round(time.monotonic() - t0, 1)
        yield runner
    finally:
        runner.stop()
        print("SPARK CLUSTER FIGURES " + json.dumps(FIGURES))


def spark_context() -> Any:
    """The stream's SparkContext (one per process): what the driver sees of the cluster."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate().sparkContext


def executors(sc: Any) -> list[str]:
    """host:port of the executors the driver has now (its own entry left out)."""
    jsc = sc._jsc.sc()
    driver = jsc.env().blockManager().blockManagerId().hostPort()
    infos = jsc.statusTracker().getExecutorInfos()
    return sorted(h for h in (f"{e.host()}:{e.port()}" for e in infos) if h != driver)


def executor_tasks(sc: Any) -> dict[str, tuple[int, int]]:
    """Executor id -> (tasks running now, tasks failed so far), dead executors included, from
    the driver's status store (kept with the UI off)."""
    summaries = sc._jsc.sc().statusStore().executorList(False)
    out = {}
    for i in range(summaries.length()):
        e = summaries.apply(i)
        if e.id() != "driver":
            out[str(e.id())] = (int(e.activeTasks()), int(e.failedTasks()))
    return out


def busy_executor(sc: Any) -> str | None:
    """The id of an executor running a task now (None: all idle)."""
    return next((e for e, (active, _) in executor_tasks(sc).items() if active), None)


def rows_reach(runner: Any, n: int, *, timeout: float, what: str) -> None:
    """Wait until the Parquet holds at least ``n`` rows; fail at once if the stream fails."""

    def check() -> bool:
        assert runner.state.phase == "running", runner.state
        return count_rows(runner.settings.enriched_dir) >= n

    wait_for(check, timeout=timeout, what=what)


def kernel_reference(df: pd.DataFrame) -> pd.DataFrame:
    """The offline kernel's features of the Parquet's rows, folded one micro-batch after the
    other with the state carried (a batch is the rows of one ``processed_at``).

    Why by batch: the generator stamps many transactions of a user with the same millisecond;
    the kernel orders such ties within a batch by content, so a tie split by a batch boundary is
    folded in a different order by one fold over the whole history."""
    from rtfd.features.offline import fold_history

    fields = ["transaction_id", "user_id", "merchant_id", "amount", "location", "lat", "lon"]
    rows = df[[*fields, "channel", "timestamp"]]
    state, parts = None, []
    for _, batch in rows.groupby(df["processed_at"], sort=True):
        state, features = fold_history(batch, state=state)
        parts.append(features)
    return pd.concat(parts).loc[df.index]


def audit(runner: Any, ids: list[str]) -> Any:
    """Every id in the Parquet exactly once, nothing else; every flagged row alerted."""
    from rtfd.broker import client_config

    s = runner.settings
    df = read_enriched(s)
    assert len(df) == len(ids), f"{len(df)} rows for {len(ids)} transactions"
    assert df["transaction_id"].nunique() == len(ids), "a transaction was written twice"
    assert set(df["transaction_id"]) == set(ids)
    flagged = set(df.loc[df["is_fraud"], "transaction_id"])
    alerts = {
        json.loads(m.value())["transaction_id"]
        for m in read_topic(client_config(s), runner.topics.alerts)
    }
    assert flagged, "the model flagged nothing: the alert path was not exercised"
    assert alerts == flagged
    return df


def test_the_executors_run_the_rtfd_the_driver_ships(standalone_stream: Any) -> None:
    """Two executors, one per worker, import rtfd from the shipped zip (the workers have no
    PYTHONPATH and would otherwise find the venv's install)."""
    sc = spark_context()
    assert sc.master.startswith("spark://127.0.0.1:")
    assert len(executors(sc)) == 2

    def where(_: Any) -> str:
        import rtfd

        return str(rtfd.__file__)

    found = set(sc.parallelize(range(8), 8).map(where).collect())
    assert found and all(p.endswith("rtfd-driver.zip/rtfd/__init__.py") for p in found), found


def test_twenty_thousand_transactions_exactly_once_with_alerts(
    standalone_stream: Any, spark_standalone: Any
) -> None:
    from rtfd.generator.live import produce_transactions

    runner = standalone_stream
    s = runner.settings
    t0 = time.monotonic()
    ids = produce_transactions(
        s, FIRST_RUN, seed=31, topic=runner.topics.transactions, labels=False
    )
    assert len(ids) == FIRST_RUN
    PRODUCED.extend(ids)
    rows_reach(runner, FIRST_RUN, timeout=300, what="every transaction in Parquet")
    FIGURES["first_run_s"] = round(time.monotonic() - t0, 1)
    assert runner.state.phase == "running", runner.state
    df = audit(runner, ids)
    FIGURES["first_run_rows"] = len(df)
    FIGURES["first_run_alerts"] = int(df["is_fraud"].sum())
    # The master's own view: our application holds both workers' cores.
    (app,) = [a for a in spark_standalone.state()["activeapps"] if a["name"] == "rtfd-stream"]
    assert app["cores"] == 2


def test_kill_9_of_a_worker_and_its_executor_mid_run_loses_nothing(
    standalone_stream: Any, spark_standalone: Any
) -> None:
    from rtfd.features.names import USER_FEATURES
    from rtfd.generator.live import produce_transactions

    runner = standalone_stream
    s = runner.settings
    before = count_rows(s.enriched_dir)
    assert before == len(PRODUCED)  # the first test's rows (none when run alone)
    sc = spark_context()
    assert len(executors(sc)) == 2

    ids = produce_transactions(
        s, SECOND_RUN, seed=32, topic=runner.topics.transactions, labels=False
    )
    # Kill once the first batch of this run is committed, at a moment when an executor runs a
    # task: its worker goes, with the executor and its Python workers.
    rows_reach(runner, before + 1, timeout=120, what="a batch of run two")
    busy = wait_for(lambda: busy_executor(sc), timeout=60, what="a running task", every=0.005)
    running, failed_before = executor_tasks(sc)[busy]
    victim = spark_standalone.worker_of_executor(busy)
    assert victim is not None, busy
    survivor = spark_standalone.workers[1 - victim]
    survivors = spark_standalone.executor_pids(survivor)
    assert survivors, spark_standalone.descendants(survivor)
    at_kill = count_rows(s.enriched_dir)
    t_kill = time.monotonic()
    killed = spark_standalone.kill_worker(victim)
    assert killed, "the worker had no executor to kill"
    wait_for(
        lambda: not set(killed) & {p for p, *_ in process_table()},
        timeout=10,
        what="the killed executors to be gone",
    )

    rows_reach(runner, at_kill + 1, timeout=180, what="a batch after the kill")
    first_after = time.monotonic() - t_kill
    rows_reach(runner, before + SECOND_RUN, timeout=300, what="every row after the kill")
    complete_after = time.monotonic() - t_kill
    assert runner.state.phase == "running", runner.state
    left = executors(sc)
    assert len(left) == 1 and left[0].startswith("127.0.0.1:"), left
    assert spark_standalone.executor_pids(survivor) == survivors  # the same JVM took the tasks
    df = audit(runner, [*PRODUCED, *ids])

    # The per-user state of the killed executor's partitions came back from the checkpoint:
    # every feature equals the offline kernel's, folded batch by batch as the stream folds.
    expected = kernel_reference(df)
    for name in USER_FEATURES:
        assert np.array_equal(df[name].to_numpy(), expected[name].to_numpy()), name

    log = (s.log_root / "spark.log").read_text(encoding="utf-8", errors="replace")
    assert f"Lost executor {busy} " in log  # the driver saw it go
    dead_s = wait_for(
        lambda: _worker_dead(spark_standalone, t_kill), timeout=60, what="the master to see it"
    )
    FIGURES.update(
        {
            "killed_executor_pids": killed,
            "tasks_running_at_kill": running,
            "tasks_failed_with_the_executor": executor_tasks(sc)[busy][1] - failed_before,
            "rows_at_kill": at_kill,
            "first_batch_after_kill_s": round(first_after, 1),
            "complete_after_kill_s": round(complete_after, 1),
            "master_marks_worker_dead_s": round(dead_s, 1),
            "total_rows": len(df),
            "distinct_rows": int(df["transaction_id"].nunique()),
            "alerts": int(df["is_fraud"].sum()),
        }
    )


def _worker_dead(cluster: Any, t_kill: float) -> float | None:
    """Seconds from the kill until the master lists a worker as DEAD (None: not yet)."""
    state = cluster.state() or {}
    dead = [w for w in state.get("workers", []) if w.get("state") == "DEAD"]
    return time.monotonic() - t_kill if dead else None
