"""The stream's logic that needs no JVM: bucket state, sinks, scoring, progress, lock, orphans.

These live beside the Spark tests they support but start no Spark (marker ``unit``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def transactions(n: int, *, users: int = 5, seed: int = 1, start: datetime = T0) -> pd.DataFrame:
    """Valid parsed rows as the stateful operator receives them (naive UTC timestamps)."""
    rng = np.random.default_rng(seed)
    ts = [start + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 3600, n))]
    return pd.DataFrame(
        {
            "transaction_id": [f"tx{seed}_{i:05d}" for i in range(n)],
            "user_id": [f"u{int(u)}" for u in rng.integers(0, users, n)],
            "merchant_id": [f"m{int(m)}" for m in rng.integers(0, 20, n)],
            "amount": np.round(rng.lognormal(3, 1, n), 2),
            "currency": "EUR",
            "location": rng.choice(["Berlin", "Paris", "Rome"], n),
            "lat": 52.5,
            "lon": 13.4,
            "channel": "pos",
            "timestamp": pd.Series(ts).dt.tz_convert("UTC").dt.tz_localize(None),
            "kafka_topic": "transactions",
            "kafka_partition": 0,
            "kafka_offset": np.arange(n, dtype=np.int64),
            "kafka_ts": pd.Series(ts).dt.tz_convert("UTC").dt.tz_localize(None),
        }
    )


# -- bucket state ------------------------------------------------------------------------------
def test_bucket_state_over_batches_equals_the_offline_kernel() -> None:
    """Folding batch after batch, through the serialised state, gives the offline features."""
    from rtfd.features.names import USER_FEATURES
    from rtfd.features.offline import build_features
    from rtfd.stream.state import BucketState, step_bucket

    rows = transactions(600, users=7)
    state = BucketState.empty()
    outs = []
    for part in np.array_split(np.arange(len(rows)), 5):
        state = BucketState.from_row(state.to_row())
        state, out, dupes = step_bucket(state, rows.iloc[part], ttl_s=8 * 86_400)
        assert dupes.empty
        outs.append(out)
    online = pd.concat(outs).sort_values("transaction_id")
    history = rows.assign(timestamp=rows["timestamp"].dt.tz_localize("UTC"))
    offline = build_features(history).loc[online.index]
    np.testing.assert_allclose(
        online[USER_FEATURES].to_numpy(float), offline[USER_FEATURES].to_numpy(float), rtol=1e-12
    )
    assert len(state.kernel) == 7


def test_a_redelivered_transaction_is_dropped_not_counted_twice() -> None:
    from rtfd.stream.state import BucketState, step_bucket

    rows = transactions(50, users=2)
    state, first, _ = step_bucket(BucketState.empty(), rows, ttl_s=8 * 86_400)
    again = rows.iloc[[47, 49]].assign(kafka_offset=[100, 101])  # within the dedup window
    twice_in_batch = pd.concat([rows.iloc[[10]], rows.iloc[[10]].assign(kafka_offset=102)])
    later = transactions(5, users=2, seed=2, start=T0 + timedelta(hours=1))
    batch = pd.concat([again, later])
    _, out, dupes = step_bucket(state, batch, ttl_s=8 * 86_400)
    assert sorted(dupes["transaction_id"]) == sorted(again["transaction_id"])
    assert list(out["transaction_id"]) == list(later["transaction_id"])
    _, _, dupes2 = step_bucket(BucketState.empty(), twice_in_batch, ttl_s=8 * 86_400)
    assert list(dupes2["kafka_offset"]) == [102]
    assert len(first) == 50


def test_idle_users_are_evicted_by_event_time() -> None:
    from rtfd.stream.state import BucketState, step_bucket

    old = transactions(20, users=4)
    state, _, _ = step_bucket(BucketState.empty(), old, ttl_s=3600)
    assert len(state.kernel) == 4
    new = transactions(3, users=1, seed=3, start=T0 + timedelta(days=2)).assign(user_id="fresh")
    state, _, _ = step_bucket(state, new, ttl_s=3600)
    assert len(state.kernel) == 1
    # The dedup window moved on with event time: nothing older than 10 minutes is kept.
    assert 1 <= len(state.seen_hash) <= 3
    assert (state.seen_ts >= state.max_ts_ms - 600_000).all()


def test_bucket_values_are_distinct_and_balanced() -> None:
    from rtfd.stream.state import bucket_values, shuffle_partition

    for n, p in ((16, 2), (16, 4), (5, 3), (1, 1), (64, 2)):
        values = bucket_values(n, p)
        assert len(set(values)) == n and min(values) >= 0
        counts = np.bincount([shuffle_partition(v, p) for v in values], minlength=p)
        assert counts.max() - counts.min() <= 1


def test_the_bucket_function_passes_dead_letters_through_without_state() -> None:
    from rtfd.stream.state import DEAD_BUCKET, KIND_DEAD, KIND_VALID, make_bucket_function

    class FakeState:
        exists = False
        updated = None

        def update(self, row: Any) -> None:
            self.updated = row

    fn = make_bucket_function(ttl_s=3600)
    dead = transactions(3).assign(reason="malformed_json")
    st = FakeState()
    out = pd.concat(list(fn((DEAD_BUCKET,), iter([dead]), st)))
    assert set(out["row_kind"]) == {KIND_DEAD} and st.updated is None
    st2 = FakeState()
    out2 = pd.concat(list(fn((7,), iter([transactions(10)]), st2)))
    assert st2.updated is not None
    assert set(out2["row_kind"]) == {KIND_VALID} and len(out2) == 10
    assert set(out2["state_users"]) == {5} and set(out2["bucket"]) == {7}


# -- sinks -------------------------------------------------------------------------------------
def enriched_frame(n: int = 6) -> pd.DataFrame:
    from rtfd.features.names import FEATURE_NAMES

    df = transactions(n)
    start = pd.Timestamp("2026-03-01 23:59:58", tz="UTC")
    df["timestamp"] = start + pd.to_timedelta(np.arange(n), unit="s")  # crosses midnight
    for f in FEATURE_NAMES:
        df[f] = 0.5
    df["fraud_score"] = np.linspace(0, 1, n)
    df["is_fraud"] = df["fraud_score"] >= 0.5
    df["model_version"] = "v0001"
    df["processed_at"] = T0
    return df


def test_a_replayed_batch_replaces_its_own_files(tmp_path: Path) -> None:
    """The lake's writer names a flush by its batches: the same batches written again (a
    replay) replace the same files."""
    import duckdb
    import pyarrow as pa

    from rtfd.lake import LakeWriter
    from rtfd.stream.sinks import enriched_arrow_schema

    schema = enriched_arrow_schema()
    frame = enriched_frame()
    for _ in range(2):
        writer = LakeWriter(
            tmp_path,
            partition_column="event_date",
            date_source="timestamp",
            query="abcdef0123",
            schema=schema,
        )
        writer.add(7, pa.Table.from_pandas(frame[schema.names], schema=schema, safe=False))
        writer.flush(7)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert files == [
        "event_date=2026-03-01",
        "event_date=2026-03-01/part-abcdef01-0000000007-0000000007.parquet",
        "event_date=2026-03-02",
        "event_date=2026-03-02/part-abcdef01-0000000007-0000000007.parquet",
    ]
    n = duckdb.execute(f"SELECT count(*) FROM read_parquet('{tmp_path}/**/*.parquet')").fetchall()
    assert n == [(len(frame),)]


def test_alerts_have_the_alert_schema_and_deterministic_ids() -> None:
    from rtfd.schemas import ALERT
    from rtfd.stream.batch import alert_id, alert_records
    from rtfd.stream.sinks import format_alert_line

    rows = enriched_frame(3)
    recs = alert_records(
        rows,
        rows["fraud_score"].to_numpy(),
        [["a", "b"], ["c"], []],
        model_version="v0002",
        threshold=0.4,
        scored_at=T0,
    )
    assert [list(r) for r in recs] == [ALERT.names] * 3
    assert recs[0]["alert_id"] == alert_id(rows["transaction_id"][0], "v0002")
    assert recs[0]["alert_id"] != alert_id(rows["transaction_id"][0], "v0003")
    assert recs[0]["timestamp"].endswith("Z") and recs[1]["reasons"] == ["c"]
    ALERT.validate(recs[0], now=datetime(2030, 1, 1, tzinfo=UTC))
    line = format_alert_line(recs[0])
    assert line.startswith("ALERT ") and "v0002" in line and "a, b" in line


def test_dead_letters_have_the_dead_letter_schema() -> None:
    from rtfd.schemas import DEAD_LETTER
    from rtfd.stream.batch import dead_letter_records

    rows = transactions(1).assign(reason="type:amount", raw_b64="eyJ9", raw_preview="{}")
    (rec,) = dead_letter_records(rows, seen_at=T0)
    assert list(rec) == DEAD_LETTER.names
    DEAD_LETTER.validate(rec, now=datetime(2030, 1, 1, tzinfo=UTC))


# -- scoring -----------------------------------------------------------------------------------
class FakeRegistry:
    def __init__(self) -> None:
        self.live = "v0001"
        self.loads: list[str] = []

    def current(self) -> str:
        return self.live

    def load(self, version: str | None = None) -> Any:
        v = version or self.live
        if v == "broken":
            raise ValueError("hash mismatch")
        self.loads.append(v)
        return SimpleNamespace(version=v)


def test_the_model_follows_current_and_replays_keep_their_model(tmp_path: Path) -> None:
    from rtfd.stream.scoring import BatchLog, ModelHolder

    reg = FakeRegistry()
    holder = ModelHolder(settings=None, registry=reg)  # type: ignore[arg-type]
    log = BatchLog(tmp_path)
    assert holder.for_batch(log, 0).version == "v0001"
    reg.live = "v0002"
    assert holder.for_batch(log, 1).version == "v0002"
    assert holder.for_batch(log, 0).version == "v0001"  # a replay of batch 0
    reg.live = "broken"
    assert holder.for_batch(log, 2).version == "v0002"  # a broken promotion keeps the last one
    assert reg.loads.count("v0001") == 1  # loaded once, then cached


# -- progress ----------------------------------------------------------------------------------
def test_progress_joins_sink_stats_with_spark_progress() -> None:
    from rtfd.stream.progress import BatchStats, ProgressHub

    hub = ProgressHub()
    seen: list[Any] = []
    hub.add_listener(seen.append)

    def failing(_event: Any) -> None:
        raise RuntimeError("observer bug")

    hub.add_listener(failing)  # a failing observer does not stop the others
    hub.record_batch(
        BatchStats(
            "transactions",
            4,
            rows=90,
            alerts=2,
            dead_letters=1,
            latency_p50_ms=800.0,
            latency_p99_ms=1200.0,
            state_users=33,
            model_version="v0001",
        )
    )
    source = SimpleNamespace(
        endOffset='{"t": {"0": 10, "1": 5}}', latestOffset='{"t": {"0": 15, "1": 5}}'
    )
    progress = SimpleNamespace(
        batchId=4,
        timestamp="2026-03-01T12:00:00.000Z",
        numInputRows=91,
        inputRowsPerSecond=100.0,
        processedRowsPerSecond=120.0,
        batchDuration=750,
        durationMs={"addBatch": 600},
        sources=[source],
        stateOperators=[SimpleNamespace(numRowsTotal=16, memoryUsedBytes=4096)],
    )
    hub.on_spark_progress("transactions", progress)
    (event,) = seen
    assert (event.rows, event.alerts, event.dead_letters, event.input_rows) == (90, 2, 1, 91)
    assert event.offsets_behind == 5 and event.state_rows == 16 and event.state_users == 33
    assert event.batch_duration_ms == 750 and event.latency_p99_ms == 1200.0
    assert hub.latest("transactions") == event
    assert "batch 4" in event.summary()


# -- lock and orphans --------------------------------------------------------------------------
def test_two_streams_never_share_a_checkpoint(tmp_path: Path) -> None:
    from rtfd.stream.procs import CheckpointLock, StreamBusy

    first = CheckpointLock(tmp_path)
    first.acquire()
    with pytest.raises(StreamBusy, match=str(os.getpid())):
        CheckpointLock(tmp_path).acquire()
    first.release()
    second = CheckpointLock(tmp_path)
    second.acquire()
    second.release()


def test_orphans_carrying_the_tag_are_ended(tmp_path: Path) -> None:
    from rtfd.stream.procs import checkpoint_tag, end_orphans, tagged_processes

    tag = checkpoint_tag(tmp_path)
    env = {**os.environ, "RTFD_TEST_TAG": tag}
    orphan = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        ],
        env=env,
    )
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while orphan.pid not in tagged_processes(tag, "RTFD_TEST_TAG"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ended = end_orphans(tag, "RTFD_TEST_TAG", grace_s=0.5)
        assert ended == [orphan.pid]
        assert orphan.wait(5) is not None  # it ignored SIGTERM and got SIGKILL
        assert other.poll() is None
    finally:
        for p in (orphan, other):
            p.kill()
            p.wait()


# -- session and connector ---------------------------------------------------------------------
def test_spark_conf_is_quiet_local_and_overridable(tmp_path: Path) -> None:
    from rtfd.config import load_settings
    from rtfd.stream.session import STATE_PROVIDER, spark_conf_items

    settings = load_settings(
        {"home": str(tmp_path), "spark_master": "local[2]"},
        environ={"RTFD_CONFIG": str(tmp_path / "none.toml")},
    ).replace(spark_conf={"spark.sql.shuffle.partitions": "8", "spark.executor.memory": "2g"})
    conf = spark_conf_items(
        settings, app_name="t", jars=[Path("/j/a.jar")], log4j2=tmp_path / "l.xml", tag="abc"
    )
    assert conf["spark.master"] == "local[2]" and conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.shuffle.partitions"] == "8" and conf["spark.executor.memory"] == "2g"
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert conf["spark.sql.streaming.stateStore.providerClass"] == STATE_PROVIDER
    assert conf["spark.pyspark.python"] == sys.executable
    assert conf["spark.jars"] == "/j/a.jar" and conf["spark.driver.host"] == "127.0.0.1"
    assert "log4j2.configurationFile" in conf["spark.driver.extraJavaOptions"]
    cluster = settings.replace(spark_master="spark://h:7077")
    assert "spark.driver.host" not in spark_conf_items(
        cluster, app_name="t", jars=[], log4j2=None, tag="abc"
    )


def test_connector_jar_names_map_to_artifacts() -> None:
    from rtfd.stream.connector import _artifact_of

    assert _artifact_of("kafka-clients-3.9.2.jar") == "kafka-clients"
    assert _artifact_of("spark-tags_2.13-4.3.0.jar") == "spark-tags_2.13"
    assert _artifact_of("commons-pool2-2.13.1.jar") == "commons-pool2"


def test_the_stream_command_is_registered_and_import_light() -> None:
    code = (
        "import sys; from rtfd.cli import build_parser; p = build_parser();"
        "a = p.parse_args(['stream', '--console', '--topic-prefix', 'x-']);"
        "assert a.console and a.topic_prefix == 'x-';"
        "assert 'pyspark' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_alert_flood_explains_the_highest_scores_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import rtfd.stream.batch as batch

    monkeypatch.setattr(batch, "MAX_EXPLAINED_ALERTS", 2)

    class Model:
        features = ("f",)

        def explain(self, df: pd.DataFrame, top: int = 3) -> list[list[str]]:
            return [[f"f={v}"] for v in df["f"]]

    flagged = pd.DataFrame({"f": [1, 2, 3, 4]})
    reasons = batch.explain_alerts(Model(), flagged, np.array([0.6, 0.9, 0.7, 0.95]))
    assert reasons == [[batch.UNEXPLAINED], ["f=2"], [batch.UNEXPLAINED], ["f=4"]]


def test_a_checkpoint_with_another_state_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from rtfd.config import load_settings
    from rtfd.errors import ConfigError
    from rtfd.stream.runner import StreamRunner
    from rtfd.stream.state import STATE_VERSION

    settings = load_settings(
        {"home": str(tmp_path)}, environ={"RTFD_CONFIG": str(tmp_path / "none.toml")}
    )
    runner = StreamRunner(settings)
    checkpoint = tmp_path / "ck"
    values = runner._layout(checkpoint)  # creates the layout
    assert runner._layout(checkpoint) == values and len(values) == settings.stream_state_buckets
    stored = json.loads((checkpoint / "rtfd" / "layout.json").read_text())
    assert stored["state_format"] == STATE_VERSION
    stored.pop("state_format")  # written before the format was recorded: format 1
    (checkpoint / "rtfd" / "layout.json").write_text(json.dumps(stored))
    assert runner._layout(checkpoint) == values
    stored["state_format"] = STATE_VERSION + 1
    (checkpoint / "rtfd" / "layout.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="delete the checkpoint directory"):
        runner._layout(checkpoint)
    stored["state_format"] = STATE_VERSION
    stored["buckets"] = [*values, 999]
    (checkpoint / "rtfd" / "layout.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="stream_state_buckets"):
        runner._layout(checkpoint)
