"""The local stream's batch engine without Spark: Spark's part (the Kafka read, the offset and
commit logs) is played by hand, everything else is the real engine on a real checkpoint dir.

What is held: a batch run again after a crash sees exactly the state it saw the first time and is
scored by the same model; recovery refolds the redo log and checks the features; Parquet gets
each committed row exactly once, including rows flushed from the log after a crash; offsets that
retention deleted are counted; a torn redo record is ignored; what readers see during compaction.
"""

from __future__ import annotations

import itertools
import json
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rtfd.config import Settings, load_settings
from rtfd.features.names import FEATURE_NAMES, USER_FEATURES
from rtfd.features.offline import build_features
from rtfd.lake import visible_files
from rtfd.stream.durable import StateError
from rtfd.stream.engine import DriverState, TransactionEngine, committed_batch
from rtfd.stream.progress import ProgressHub
from rtfd.stream.sinks import Outlets

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2026-03-01T12:00:00Z")


@dataclass
class Model:
    """A stand-in model (the real ones are tested by the registry tests and the Spark tier):
    the score is a fixed function of two features, so any difference in features shows."""

    version: str
    threshold: float = 0.7
    features: tuple[str, ...] = tuple(FEATURE_NAMES)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame["amount_log1p"].to_numpy() / 10 + frame["count_1h"].to_numpy() / 50
        return np.clip(x, 0.0, 1.0)

    def explain(self, frame: pd.DataFrame, top: int = 3) -> list[list[str]]:
        return [["big amount"] for _ in range(len(frame))]


class Models:
    """ModelHolder's interface over a dict of versions."""

    def __init__(self) -> None:
        self.versions = {"v0001": Model("v0001")}
        self.live = "v0001"

    def current(self) -> Model:
        return self.versions[self.live]

    def get(self, version: str) -> Model:
        if version not in self.versions:
            raise FileNotFoundError(f"no model {version}")
        return self.versions[version]


class Risk:
    def current(self) -> tuple[int | None, Any]:
        return None, self.table_version(None)

    def table_version(self, version: int | None) -> Any:
        from rtfd.features.merchant_risk import MerchantRiskTable

        return MerchantRiskTable.empty(label_delay_s=60.0, period_s=3600.0)


class Publisher:
    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {}

    def send(self, topic: str, records: Any) -> int:
        got = [r for _, r in records]
        self.sent.setdefault(topic, []).extend(got)
        return len(got)

    def flush(self) -> None:
        pass


def history(n: int, *, users: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = T0 + pd.to_timedelta(np.sort(rng.uniform(0, 7_200_000, n)).astype(np.int64), unit="ms")
    return pd.DataFrame(
        {
            "transaction_id": [f"tx{seed}-{i:05d}" for i in range(n)],
            "user_id": [f"u{int(u)}" for u in rng.integers(0, users, n)],
            "merchant_id": [f"m{int(m)}" for m in rng.integers(0, 30, n)],
            "amount": np.round(rng.lognormal(3, 1, n), 2),
            "currency": "EUR",
            "location": rng.choice(["Berlin", "Paris", "Rome"], n),
            "lat": 52.5,
            "lon": 13.4,
            "channel": rng.choice(["pos", "online"], n),
            "timestamp": ts,
        }
    )


def kafka_batch(
    rows: pd.DataFrame, first_offset: int, extra: list[bytes] | None = None
) -> pa.Table:
    """Rows as the Kafka source hands them to foreachBatch (``toArrow``)."""
    values = []
    for r in rows.to_dict("records"):
        r["timestamp"] = r["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        values.append(json.dumps(r).encode())
    values += extra or []
    n = len(values)
    return pa.table(
        {
            "value": pa.array(values, pa.binary()),
            "topic": ["transactions"] * n,
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(np.arange(first_offset, first_offset + n), pa.int64()),
            "timestamp": pa.array([T0 + pd.Timedelta(hours=3)] * n, pa.timestamp("ms", tz="UTC")),
        }
    )


class Harness:
    """One engine on a checkpoint; ``commit(b)`` plays Spark writing its commit log."""

    def __init__(self, home: Path, models: Models | None = None) -> None:
        self.settings: Settings = load_settings({"home": str(home)}, environ={})
        self.settings.ensure_dirs()
        self.checkpoint = home / "checkpoints" / "transactions"
        (self.checkpoint / "commits").mkdir(parents=True, exist_ok=True)
        self.models = models or Models()
        self.publisher = Publisher()
        self.engine = TransactionEngine(
            self.settings,
            checkpoint=self.checkpoint,
            topic="transactions",
            outlets=Outlets(self.publisher, alerts_topic="alerts", dlq_topic="dlq"),  # type: ignore[arg-type]
            hub=ProgressHub(),
            models=self.models,  # type: ignore[arg-type]
            risk=Risk(),
        )
        self.report = self.engine.recover()

    def commit(self, batch_id: int) -> None:
        (self.checkpoint / "commits" / str(batch_id)).write_text("v1\n{}")

    def run(self, batch_id: int, table: pa.Table, *, commit: bool = True) -> Any:
        stats = self.engine.process(table, batch_id)
        if commit:
            self.commit(batch_id)
        return stats

    def parquet(self) -> pd.DataFrame:
        import duckdb

        files = visible_files(self.settings.enriched_dir)
        if not files:
            return pd.DataFrame()
        with duckdb.connect() as con:
            return con.execute("SELECT * FROM read_parquet(?)", [files]).df()


def slices(rows: pd.DataFrame, k: int) -> list[tuple[pd.DataFrame, int]]:
    """``rows`` cut into ``k`` batches, with their first Kafka offsets."""
    bounds = np.linspace(0, len(rows), k + 1).astype(int)
    return [(rows.iloc[a:b], int(a)) for a, b in itertools.pairwise(bounds)]


def test_features_equal_the_offline_kernel_and_rows_reach_parquet_once(tmp_path: Path) -> None:
    rows = history(1_200)
    h = Harness(tmp_path)
    for b, (part, first) in enumerate(slices(rows, 8)):
        h.run(b, kafka_batch(part, first))
    assert h.engine.lake.flush(committed_batch(h.checkpoint) or -1) > 0
    out = h.parquet().set_index("transaction_id").loc[rows["transaction_id"]]
    assert len(out) == len(rows)
    expected = build_features(rows)
    for name in USER_FEATURES:
        assert np.array_equal(out[name].to_numpy(), expected[name].to_numpy()), name


def test_a_crash_before_the_commit_replays_with_the_state_and_model_of_the_first_run(
    tmp_path: Path,
) -> None:
    """kill -9 after batch 5 ran (redo written, alerts sent) but before Spark's commit, and a
    new model promoted meanwhile: the replay sees the state after batch 4 and uses v0001."""
    rows = history(900, seed=2)
    parts = slices(rows, 6)
    h = Harness(tmp_path)
    for b, (part, first) in enumerate(parts[:5]):
        h.run(b, kafka_batch(part, first))
    first = h.run(5, kafka_batch(*parts[5]), commit=False)
    alerts_first = sorted(
        a["alert_id"] for a in h.publisher.sent.get("alerts", [])[-first.alerts :]
    )
    h.models.versions["v0002"] = Model("v0002", threshold=0.1)
    h.models.live = "v0002"

    again = Harness(tmp_path, h.models)  # the restart: a new engine on the same checkpoint
    assert "batch 4" in again.report
    replay = again.run(5, kafka_batch(*parts[5]))
    assert replay.model_version == "v0001" and replay.rows == first.rows
    alerts_replay = sorted(a["alert_id"] for a in again.publisher.sent.get("alerts", []))
    assert alerts_replay == alerts_first
    again.engine.lake.flush(5)
    out = again.parquet()
    assert len(out) == len(rows) and out["transaction_id"].is_unique
    expected = build_features(rows).set_index(rows["transaction_id"])
    got = out.set_index("transaction_id").loc[rows["transaction_id"]]
    for name in USER_FEATURES:
        assert np.array_equal(got[name].to_numpy(), expected[name].to_numpy()), name
    # The next batch is scored by the new model.
    nxt = history(50, seed=3).assign(timestamp=lambda f: f["timestamp"] + pd.Timedelta(hours=2))
    assert again.run(6, kafka_batch(nxt, 900)).model_version == "v0002"


def test_a_replay_whose_model_is_gone_stops_with_a_clear_error(tmp_path: Path) -> None:
    rows = history(200, seed=4)
    h = Harness(tmp_path)
    h.run(0, kafka_batch(rows.iloc[:100], 0))
    h.run(1, kafka_batch(rows.iloc[100:], 100), commit=False)
    models = Models()
    models.versions = {"v0009": Model("v0009")}
    models.live = "v0009"
    again = Harness(tmp_path, models)
    with pytest.raises(StateError, match="batch 1 was scored by model v0001"):
        again.run(1, kafka_batch(rows.iloc[100:], 100))


def test_recovery_from_a_snapshot_and_the_log_gives_the_uninterrupted_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rtfd.stream.engine as engine_module

    monkeypatch.setattr(engine_module, "SNAPSHOT_EVERY_S", 0.0)
    rows = history(1_500, seed=5)
    parts = slices(rows, 10)
    h = Harness(tmp_path)
    for b, (part, first) in enumerate(parts[:6]):
        h.run(b, kafka_batch(part, first))
        if h.engine._snapshot_thread is not None:
            h.engine._snapshot_thread.join()
    assert h.engine.snapshots.list(), "no snapshot was written"
    again = Harness(tmp_path)
    assert "snapshot" in again.report and "features identical" in again.report
    for b, (part, first) in enumerate(parts[6:], start=6):
        again.run(b, kafka_batch(part, first))
    again.engine.lake.flush(9)
    got = again.parquet().set_index("transaction_id").loc[rows["transaction_id"]]
    expected = build_features(rows)
    for name in USER_FEATURES:
        assert np.array_equal(got[name].to_numpy(), expected[name].to_numpy()), name
    assert len(again.parquet()) == len(rows)


def test_committed_rows_not_yet_in_parquet_are_written_from_the_log(tmp_path: Path) -> None:
    rows = history(600, seed=6)
    h = Harness(tmp_path)
    for b, (part, first) in enumerate(slices(rows, 4)):
        h.run(b, kafka_batch(part, first))
    assert h.parquet().empty  # nothing flushed yet (the process "dies" here)
    again = Harness(tmp_path)
    out = again.parquet()
    assert len(out) == len(rows) and out["transaction_id"].is_unique


def test_a_tampered_log_is_refused_and_a_torn_tail_is_ignored(tmp_path: Path) -> None:
    rows = history(400, seed=7)
    h = Harness(tmp_path)
    for b, (part, first) in enumerate(slices(rows, 4)):
        h.run(b, kafka_batch(part, first))
    segment = h.engine.redo.segments()[-1][1]
    h.engine.redo.close()
    with open(segment, "ab") as fh:
        fh.write(b"RDO1" + b"\x05" * 30)  # a record cut short by kill -9
    assert "batch 3" in Harness(tmp_path).report
    # A record whose bytes changed: its checksum no longer matches, the log ends before it, and
    # the state cannot reach the committed batch: refused, with what to do.
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    with pytest.raises(StateError, match="delete"):
        Harness(tmp_path)


def test_offsets_deleted_by_retention_are_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = history(300, seed=8)
    h = Harness(tmp_path)
    h.run(0, kafka_batch(rows.iloc[:100], 0))
    stats = h.run(1, kafka_batch(rows.iloc[100:], 150))  # offsets 100-149 never arrived
    assert stats.skipped_offsets == 50
    assert any(
        "deleted by retention" in r.message and r.levelname == "ERROR" for r in caplog.records
    )
    # The count survives a restart (the expected offsets are in the log).
    again = Harness(tmp_path)
    more = again.run(2, kafka_batch(history(10, seed=9), 400))
    assert more.skipped_offsets == 100  # 50 then 50 (offsets 350-399), kept across the restart


def test_duplicates_and_bad_records_are_counted_not_written(tmp_path: Path) -> None:
    rows = history(100, seed=10)
    h = Harness(tmp_path)
    h.run(0, kafka_batch(rows, 0))
    # The newest 5 (within the 10-minute window of event time) sent again, and two bad records.
    stats = h.run(1, kafka_batch(rows.iloc[-5:], 100, extra=[b"not json", b'{"amount": 1}']))
    assert (stats.rows, stats.duplicates, stats.dead_letters) == (0, 5, 2)
    reasons = sorted(d["reason"] for d in h.publisher.sent["dlq"])
    assert reasons == ["malformed_json", "missing:transaction_id"]


def test_readers_see_every_row_exactly_once_while_the_lake_compacts(tmp_path: Path) -> None:
    """A reader listing and reading the lake in a loop, while files are flushed and merged,
    always counts each row once: never twice, never missing a flushed one."""
    import duckdb

    from rtfd.lake import compact

    rows = history(4_000, seed=11)
    h = Harness(tmp_path)
    seen: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    flushed = [0]

    def reader() -> None:
        try:
            read()
        except BaseException as e:
            errors.append(e)

    def read() -> None:
        while not stop.is_set():
            before = flushed[0]
            files = visible_files(h.settings.enriched_dir)
            if not files:
                continue
            with duckdb.connect() as con:
                n, distinct = con.execute(
                    "SELECT count(*), count(DISTINCT transaction_id) FROM read_parquet(?)", [files]
                ).fetchall()[0]
            seen.append((before, int(n), int(distinct)))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    total = 0
    for b, (part, first) in enumerate(slices(rows, 40)):
        h.run(b, kafka_batch(part, first))
        total += h.engine.lake.flush(b)
        flushed[0] = total
        compact(h.settings.enriched_dir, fan_in=4, grace_s=5.0)
        time.sleep(0.01)
    stop.set()
    thread.join()
    assert not errors, errors
    assert seen, "the reader never read"
    assert all(n == distinct for _, n, distinct in seen), "a row was read twice"
    assert all(n >= before for before, n, _ in seen), "a flushed row was missing"
    assert len(visible_files(h.settings.enriched_dir)) < 20
    assert len(h.parquet()) == len(rows)


def test_idle_users_leave_the_state_without_changing_a_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Users idle for longer than the TTL (event time) are evicted on a rule of the batch id,
    so recovery evicts the same ones; the features stay those of the offline kernel."""
    import rtfd.stream.engine as engine_module

    monkeypatch.setattr(engine_module, "EVICT_EVERY_BATCHES", 2)
    old = history(300, users=30, seed=12)
    late = history(200, users=5, seed=13).assign(
        timestamp=lambda f: f["timestamp"] + pd.Timedelta(days=9),
        user_id=lambda f: "late-" + f["user_id"],
    )
    rows = pd.concat([old, late], ignore_index=True)
    h = Harness(tmp_path)
    h.run(0, kafka_batch(old, 0))
    assert len(h.engine.state.store) == 30
    stamp = T0 + pd.Timedelta(days=9, hours=3)
    batch = kafka_batch(late, 300).set_column(
        4, "timestamp", pa.array([stamp] * len(late), pa.timestamp("ms", tz="UTC"))
    )
    h.run(1, batch)
    assert len(h.engine.state.store) == 35  # batch 1: no eviction yet
    h.run(2, kafka_batch(late.iloc[:0], 500))
    assert len(h.engine.state.store) == 5  # batch 2: the 30 idle users went
    again = Harness(tmp_path)  # recovery refolds batches 0-2 and evicts the same users
    assert len(again.engine.state.store) == 5
    again.engine.lake.flush(2)
    got = again.parquet().set_index("transaction_id").loc[rows["transaction_id"]]
    expected = build_features(rows)
    for name in USER_FEATURES:
        assert np.array_equal(got[name].to_numpy(), expected[name].to_numpy()), name


def stream_state_blob(tmp_path: Path) -> bytes:
    """The snapshot of an engine that has folded two batches (users, pairs, recent ids)."""
    rows = history(60, users=6, seed=4)
    h = Harness(tmp_path)
    for b, (part, first) in enumerate(slices(rows, 2)):
        h.run(b, kafka_batch(part, first))
    return h.engine.state.to_bytes()


def test_a_torn_or_tampered_stream_snapshot_is_one_clear_error(tmp_path: Path) -> None:
    """A snapshot read back from disk may be torn (a crash, a full disk) or tampered with:
    every prefix, bytes appended, a flipped byte anywhere, lengths and headers that lie, each
    is a ValueError naming the snapshot (the engine turns it into a StateError that says what
    to delete), never another exception."""
    blob = stream_state_blob(tmp_path)
    state = DriverState.from_bytes(blob)
    assert state.to_bytes() == blob and state.batch_id == 1
    state.skipped = 7  # the count of offsets retention deleted survives a restart
    assert DriverState.from_bytes(state.to_bytes()).skipped == 7
    magic, head = blob[:8], 8 + 20  # magic, then <IQQ
    hlen = int.from_bytes(blob[8:12], "little")
    variants: list[bytes] = [blob[:n] for n in range(len(blob))]  # every truncation
    variants += [blob + b"\0", blob + blob]
    variants += [blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1 :] for i in range(len(blob))]
    for lengths in [(2**32 - 1, 0, 0), (hlen, 2**63, 0), (hlen, 0, 2**64 - 1), (0, 0, 0)]:
        variants.append(magic + struct.pack("<IQQ", *lengths) + blob[head:])
    for header in [b"[]", b"1", b'"x"', b"null", b"\xff\xfe", b"[" * 100_000, b'{"batch_id": 1}']:
        slen, ilen = struct.unpack_from("<QQ", blob, 12)
        body = blob[head + hlen :]
        variants.append(magic + struct.pack("<IQQ", len(header), slen, ilen) + header + body)
    refused = 0
    for v in variants:
        try:
            DriverState.from_bytes(v)
        except ValueError as e:
            refused += 1
            message = str(e)
            assert "\n" not in message
            assert "stream state snapshot" in message or "user store snapshot" in message, message
    # Every truncation, every appended byte, every lying length and header is refused; a flipped
    # byte inside compressed data may still decode to another state, never to an exception.
    assert refused >= len(blob) + 2 + 4 + 7
