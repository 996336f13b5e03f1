"""The local stream's batch engine: per-user state beside ``foreachBatch``.

In local mode the query is only Kafka -> ``foreachBatch``: one stage, no shuffle, no Python
workers, a tiny plan. Each micro-batch is collected once as Arrow and this engine does the rest
in the driver process, where the per-user state lives (:class:`~rtfd.features.store.UserStore`,
whose work per batch follows the batch's rows, not the users in state):

1. decode and validate (:mod:`rtfd.stream.decode`; bad records become dead letters);
2. drop re-delivered transaction ids (:class:`~rtfd.stream.durable.RecentIds`) and notice
   offsets that retention deleted before the stream read them (counted, logged as an error,
   shown in the status: never silent);
3. per-user features (the one kernel), then the pure batch step (:mod:`rtfd.stream.batch`):
   merchant-risk features, one vectorised score, the threshold;
4. durability: the enriched rows go to the redo log (:mod:`rtfd.stream.durable`) before the
   batch returns — Spark commits only after that;
5. alerts and dead letters to Kafka, flushed (at least once, deterministic ``alert_id``), through
   :class:`~rtfd.stream.sinks.Outlets`;
6. the rows are queued for Parquet: :class:`~rtfd.lake.LakeWriter` writes committed batches
   every few seconds and compacts in the background (exactly once, few files).

Which model and which merchant-risk table scored a batch is in its redo record, written before
any alert goes out. A batch run again after a crash (its record is there, Spark's commit is not)
is scored by that model with that risk table: the same rows, scores and alert ids. If that model
cannot be loaded the batch stops with a clear error instead of being scored by another. (A batch
that crashed before its record was written sent nothing: any model may score it.)
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfd.config import Settings
from rtfd.errors import RtfdError
from rtfd.features.names import USER_FEATURES
from rtfd.features.store import UserStore
from rtfd.schemas import LABEL, TRANSACTION
from rtfd.stream.durable import Offsets, RecentIds, RedoLog, Snapshots, StateError
from rtfd.stream.progress import BatchStats, ProgressHub
from rtfd.stream.sinks import (
    LABEL_PARTITION_COLUMN,
    PARTITION_COLUMN,
    enriched_arrow_schema,
    labels_arrow_schema,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from rtfd.stream.scoring import ModelHolder
    from rtfd.stream.sinks import Outlets

log = logging.getLogger(__name__)

Clock = Callable[[], float]

SNAPSHOT_EVERY_S = 60.0
# Every this many batches, users idle for the state TTL (event time, from the newest event in
# state) leave it. A rule of the batch id and the state alone, so recovery evicts identically.
EVICT_EVERY_BATCHES = 256
FLUSH_EVERY_S = 2.0
COMPACT_EVERY_S = 10.0
_TXN = TRANSACTION.names
_SNAP_MAGIC = b"RTFDSN1\n"


def committed_batch(checkpoint: Path) -> int | None:
    """The last batch Spark committed in ``checkpoint`` (None: none yet)."""
    commits = checkpoint / "commits"
    if not commits.is_dir():
        return None
    ids = [int(p.name) for p in commits.iterdir() if p.name.isdigit()]
    return max(ids) if ids else None


def lake_id(checkpoint: Path) -> str:
    """The id that names this checkpoint's Parquet files (8 hex digits, made once and kept in
    ``<checkpoint>/rtfd/lake_id``): a new checkpoint writes new files, never an old one's."""
    import secrets

    path = checkpoint / "rtfd" / "lake_id"
    try:
        text = path.read_text(encoding="ascii").strip()
        if len(text) == 8 and all(c in "0123456789abcdef" for c in text):
            return text
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(4)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)
    return text


def refuse_other_layout(checkpoint: Path) -> None:
    """A checkpoint written by the Spark-managed state operator (an earlier rtfd, or
    ``stream_state = spark``) holds its state in Spark's store, not here: say so."""
    if (checkpoint / "rtfd" / "layout.json").exists():
        raise StateError(
            f"the checkpoint {checkpoint} keeps its per-user state in Spark's state store "
            "(written by an earlier rtfd or with stream_state = spark); this stream keeps it in "
            "the driver. Set stream_state = spark to go on with it, or delete the checkpoint "
            "directory to start the per-user features afresh (Parquet, models and topics are kept)"
        )


@dataclass(frozen=True)
class Intent:
    """What scores one batch: recorded before the batch does anything else."""

    model_version: str
    risk_version: int | None


# --------------------------------------------------------------------------------------------
# The state and its durability
# --------------------------------------------------------------------------------------------
@dataclass
class DriverState:
    """Everything a batch folds into: per-user state, recent ids, Kafka offsets."""

    store: UserStore
    ids: RecentIds
    offsets: Offsets
    batch_id: int  # the last batch folded (-1: none)
    skipped: int = 0  # offsets retention deleted before they were read, since the start

    @classmethod
    def empty(cls) -> DriverState:
        return cls(UserStore(), RecentIds(), Offsets({}), -1)

    def copy(self) -> DriverState:
        return DriverState(
            self.store.copy(),
            self.ids.copy(),
            Offsets(dict(self.offsets.next)),
            self.batch_id,
            self.skipped,
        )

    def to_bytes(self) -> bytes:
        import pyarrow as pa

        header = json.dumps(
            {
                "batch_id": self.batch_id,
                "skipped": self.skipped,
                "offsets": self.offsets.next,
                "ids_high": self.ids.high,
                "ids_window_ms": self.ids.window_ms,
            }
        ).encode()
        store = self.store.to_bytes()
        sink = io.BytesIO()
        table = self.ids.to_table()
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        ids = sink.getvalue()
        return b"".join(
            [
                _SNAP_MAGIC,
                struct.pack("<IQQ", len(header), len(store), len(ids)),
                header,
                store,
                ids,
            ]
        )

    @classmethod
    def from_bytes(cls, blob: bytes) -> DriverState:
        import pyarrow as pa

        if blob[: len(_SNAP_MAGIC)] != _SNAP_MAGIC:
            raise ValueError("not a stream state snapshot")
        try:
            pos = len(_SNAP_MAGIC)
            hlen, slen, ilen = struct.unpack_from("<IQQ", blob, pos)
            pos += struct.calcsize("<IQQ")
            if pos + hlen + slen + ilen != len(blob):  # torn, or bytes appended
                raise ValueError(
                    f"its parts need {pos + hlen + slen + ilen} bytes, it has {len(blob)}"
                )
            header = json.loads(blob[pos : pos + hlen])
            if not isinstance(header, dict):
                raise ValueError(f"header is a {type(header).__name__}, not an object")
            pos += hlen
            store = UserStore.from_bytes(blob[pos : pos + slen])
            pos += slen
            table = pa.ipc.open_stream(pa.py_buffer(blob[pos : pos + ilen])).read_all()
            ids = RecentIds.from_table(table, int(header["ids_high"]), int(header["ids_window_ms"]))
            return cls(
                store,
                ids,
                Offsets({str(k): int(v) for k, v in header["offsets"].items()}),
                int(header["batch_id"]),
                int(header.get("skipped", 0)),
            )
        # Arrow's I/O errors are OSErrors; a header nested past Python's limit a RecursionError.
        except (
            struct.error,
            KeyError,
            TypeError,
            AttributeError,
            ValueError,
            OSError,
            RecursionError,
            pa.ArrowException,
        ) as e:
            raise ValueError(f"corrupt stream state snapshot: {' '.join(str(e).split())}") from e


def redo_payload(enriched: pa.Table, meta: dict[str, Any]) -> bytes:
    """One batch's redo record: its output rows (Arrow IPC, zstd) with ``meta`` (offsets)."""
    import pyarrow as pa

    table = enriched.replace_schema_metadata({"rtfd": json.dumps(meta)})
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_redo(payload: bytes) -> tuple[pa.Table, dict[str, Any]]:
    import pyarrow as pa

    table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    meta = json.loads((table.schema.metadata or {}).get(b"rtfd", b"{}"))
    return table, meta


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------
class TransactionEngine:
    """``foreachBatch`` of the local transactions query (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        checkpoint: Path,
        topic: str,
        outlets: Outlets,
        hub: ProgressHub,
        models: ModelHolder,
        risk: Any,
        clock: Clock = time.time,
        name: str = "transactions",
    ) -> None:
        from rtfd.lake import LakeWriter

        self.settings = settings
        self.checkpoint = checkpoint
        self.topic = topic
        self.outlets = outlets
        self.hub = hub
        self.models = models
        self.risk = risk
        self.clock = clock
        self.name = name
        root = checkpoint / "rtfd"
        self.redo = RedoLog(root / "redo")
        self.snapshots = Snapshots(root / "state")
        self.schema = enriched_arrow_schema()
        refuse_other_layout(checkpoint)
        self.lake_id = lake_id(checkpoint)
        self.lake = LakeWriter(
            settings.enriched_dir,
            partition_column=PARTITION_COLUMN,
            date_source="timestamp",
            query=self.lake_id,
            schema=self.schema,
        )
        self.state = DriverState.empty()
        self._replays: dict[int, Intent] = {}  # uncommitted batches' intents, from the log
        self._last_snapshot = time.monotonic()
        self._snapshot_thread: threading.Thread | None = None
        self._snapshot_done = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._errors: list[Exception] = []

    # -- start: recovery ---------------------------------------------------------------------
    def recover(self) -> str:
        """Restore the state Spark's last committed batch left, and the Parquet it implies;
        returns a one-line account. Raises StateError when the saved state cannot be used."""
        t0 = time.monotonic()
        committed = committed_batch(self.checkpoint)
        upto = -1 if committed is None else committed
        for batch_id, payload in self.redo.records(upto, 2**62):
            meta = read_redo(payload)[1]
            if "model" in meta:
                risk = meta.get("risk")
                self._replays[batch_id] = Intent(
                    str(meta["model"]), None if risk is None else int(risk)
                )
        dropped = self.redo.discard_after(upto)
        self.snapshots.drop_after(upto)
        from rtfd.lake import drop_after, query_watermark

        drop_after(self.settings.enriched_dir, self.lake_id, upto)
        self.lake.flushed = query_watermark(self.settings.enriched_dir, self.lake_id)
        snap = self.snapshots.latest(upto)
        if snap is not None:
            try:
                self.state = DriverState.from_bytes(snap[1])
            except ValueError as e:
                raise StateError(
                    f"the stream state snapshot of batch {snap[0]} in {self.snapshots.directory} "
                    f"is unreadable ({e}); delete {self.checkpoint} to start the per-user "
                    "features afresh (Parquet, models and topics are kept)"
                ) from e
        else:
            self.state = DriverState.empty()
        start = self.state.batch_id
        replayed = rows = 0
        flushed = -1 if self.lake.flushed is None else self.lake.flushed
        missing: list[int] = []  # committed batches whose rows are in no Parquet file
        for batch_id, payload in self.redo.records(min(start, flushed), upto):
            table, meta = read_redo(payload)
            if batch_id > flushed:
                missing.append(batch_id)
                if table.num_rows:
                    self.lake.add(batch_id, table.replace_schema_metadata(None))
            if batch_id <= start:
                continue
            if batch_id != self.state.batch_id + 1:
                raise StateError(
                    f"the redo log in {self.redo.directory} misses batch "
                    f"{self.state.batch_id + 1} (found {batch_id}); delete {self.checkpoint} to "
                    "start the per-user features afresh"
                )
            self._refold(table, meta, batch_id)
            replayed += 1
            rows += table.num_rows
        if missing and missing[0] != flushed + 1:
            raise StateError(
                f"the rows of batches {flushed + 1}-{missing[0] - 1} are neither in Parquet nor "
                f"in the redo log ({self.redo.directory}): they cannot be written exactly once"
            )
        if self.state.batch_id != upto and committed is not None:
            raise StateError(
                f"Spark committed batch {upto} but the stream state reaches only batch "
                f"{self.state.batch_id} (snapshot and redo log in {self.checkpoint / 'rtfd'}); "
                f"delete {self.checkpoint} to start the per-user features afresh"
            )
        written = self.lake.flush(upto)
        self._snapshot_done = snap[0] if snap else -1
        return (
            f"state restored: batch {upto}, {len(self.state.store):,} users "
            f"({'snapshot ' + str(snap[0]) if snap else 'no snapshot'}, {replayed} batch(es) "
            f"from the redo log, {rows:,} rows, features identical); {written:,} rows written to "
            f"Parquet, {dropped} uncommitted record(s) dropped, {time.monotonic() - t0:.1f} s"
        )

    def _refold(self, table: pa.Table, meta: dict[str, Any], batch_id: int) -> None:
        """Fold a logged batch again and check its features equal the logged ones."""
        frame = table.select(_TXN).to_pandas()
        if len(frame):
            feats = self.state.store.step(frame)
            for name in USER_FEATURES:
                got = feats[name].to_numpy()
                want = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
                if not np.array_equal(got, want, equal_nan=True):
                    bad = int(
                        np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want))))[0]
                    )
                    raise StateError(
                        f"recovery: batch {batch_id} refolded gives {name} = {got[bad]!r} for "
                        f"transaction {frame['transaction_id'].iloc[bad]} where the stream served "
                        f"{want[bad]!r}; the saved state is not the one the stream had. Delete "
                        f"{self.checkpoint} to start the per-user features afresh"
                    )
            ids = frame["transaction_id"].to_numpy(dtype=object)
            from rtfd.features.kernel import timestamps_ms

            self.state.ids.duplicates(ids, timestamps_ms(frame["timestamp"]))
        self._evict(batch_id)
        for key, nxt in (meta.get("offsets") or {}).items():
            self.state.offsets.next[key] = max(int(nxt), self.state.offsets.next.get(key, 0))
        self.state.skipped = int(meta.get("skipped", self.state.skipped))
        self.state.batch_id = batch_id

    def _evict(self, batch_id: int) -> int:
        """Drop users idle longer than the state TTL (never shorter than the kernel's, so no
        feature changes), every :data:`EVICT_EVERY_BATCHES` batches."""
        if batch_id % EVICT_EVERY_BATCHES:
            return 0
        store = self.state.store
        newest = store.newest_ms()
        if newest is None:
            return 0
        ttl_s = max(self.settings.stream_state_ttl_hours * 3600.0, store.config.ttl_s)
        gone = store.evict(newest, ttl_s)
        if gone:
            log.info("batch %d: %d idle user(s) left the state", batch_id, gone)
        return gone

    # -- background work -----------------------------------------------------------------------
    def start_background(self) -> None:
        """The flusher: committed rows to Parquet every few seconds, compaction now and then."""
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name="rtfd-lake", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        from rtfd.lake import compact

        next_compact = time.monotonic() + COMPACT_EVERY_S
        while not self._stop.wait(FLUSH_EVERY_S):
            try:
                # Only what Spark's commit log holds: a batch it would run again never reaches
                # Parquet twice.
                upto = committed_batch(self.checkpoint)
                if upto is not None:
                    self.lake.flush(upto)
                self._prune_redo()
                if time.monotonic() >= next_compact:
                    for root in (self.settings.enriched_dir, self.settings.labels_dir):
                        compact(root, until=time.monotonic() + 30.0)
                    next_compact = time.monotonic() + COMPACT_EVERY_S
            except Exception as e:  # a full disk: kept queued, tried again, shown meanwhile
                log.exception("writing Parquet failed")
                with self._lock:
                    self._errors.append(e)

    def _prune_redo(self) -> None:
        flushed = self.lake.flushed
        keep = min(self._snapshot_done, -1 if flushed is None else flushed)
        if keep >= 0:
            self.redo.prune(keep)

    def stop(self, timeout: float = 30.0) -> None:
        """Flush what Spark committed, wait for a running snapshot, stop the threads."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout)
        committed = committed_batch(self.checkpoint)
        try:
            if committed is not None:
                self.lake.flush(committed)
        except Exception:
            log.exception("final Parquet flush failed (the next start writes it from the log)")
        self.lake.discard()
        if self._snapshot_thread is not None:
            self._snapshot_thread.join(timeout)
        self.redo.close()

    def _maybe_snapshot(self) -> None:
        if time.monotonic() - self._last_snapshot < SNAPSHOT_EVERY_S:
            return
        if self._snapshot_thread is not None and self._snapshot_thread.is_alive():
            return
        self._last_snapshot = time.monotonic()
        copy = self.state.copy()
        # Later records go to a new segment, so the old ones can go once the snapshot is down.
        self.redo.close()
        self._snapshot_thread = threading.Thread(
            target=self._write_snapshot, args=(copy,), name="rtfd-snapshot", daemon=True
        )
        self._snapshot_thread.start()

    def _write_snapshot(self, state: DriverState) -> None:
        t0 = time.monotonic()
        try:
            self.snapshots.write(state.batch_id, state.to_bytes())
            self._snapshot_done = state.batch_id
            log.info(
                "state snapshot at batch %d: %d users in %.1f s",
                state.batch_id,
                len(state.store),
                time.monotonic() - t0,
            )
        except Exception:
            log.exception("state snapshot failed (the redo log keeps everything meanwhile)")

    # -- the batch -----------------------------------------------------------------------------
    def __call__(self, df: Any, batch_id: int) -> None:
        t0 = time.monotonic()
        raw = df.toArrow()
        self.process(raw, int(batch_id), started=t0)

    def process(self, raw: pa.Table, batch_id: int, *, started: float | None = None) -> BatchStats:
        """One micro-batch: everything in the module docstring, in that order. ``started`` is
        when Spark handed the batch over (before collecting it), for the timings."""

        from rtfd.features.kernel import timestamps_ms
        from rtfd.stream.batch import batch_records, latency_percentiles, score_rows
        from rtfd.stream.decode import decode, kafka_columns

        t0 = time.monotonic() if started is None else started
        marks: dict[str, float] = {}

        def mark(step: str) -> None:
            marks[step] = time.monotonic()

        if started is not None:
            mark("collect")

        if batch_id != self.state.batch_id + 1:
            raise StateError(
                f"batch {batch_id} arrived but the state is at batch {self.state.batch_id}; "
                "restart the stream (it recovers from its checkpoint)"
            )
        s = self.settings
        values, kafka_ms, coords = kafka_columns(raw, self.topic)
        intent, model, risk = self._intent(batch_id)
        mark("model")
        decoded = decode(
            values,
            kafka_ms,
            coords,
            TRANSACTION,
            max_future_s=s.stream_max_future_s,
            max_amount=s.stream_max_amount,
        )
        mark("decode")
        gaps = self.state.offsets.gaps(coords)
        for where, first, count in gaps:
            self.state.skipped += count
            log.error(
                "%s offsets %d-%d were deleted by retention before the stream read them: %d "
                "transaction(s) never scored (raise topic_retention_hours, or keep the stream "
                "running)",
                where,
                first,
                first + count - 1,
                count,
            )
        valid = decoded.valid
        te = timestamps_ms(valid["timestamp"]) if len(valid) else np.zeros(0, np.int64)
        dup = self.state.ids.duplicates(valid["transaction_id"].to_numpy(dtype=object), te)
        n_dupes = int(dup.sum())
        if n_dupes:
            valid = valid[~dup].reset_index(drop=True)
            log.warning("batch %d: dropped %d duplicate transaction(s)", batch_id, n_dupes)
        mark("dedup")
        feats = self.state.store.step(valid[_TXN])
        self._evict(batch_id)
        mark("features")
        now = datetime.fromtimestamp(self.clock(), tz=UTC)
        scored = score_rows(
            valid, feats, model=model, risk=risk, processed_at=now, schema=self.schema
        )
        mark("score")
        meta = {
            "offsets": self.state.offsets.next,
            "model": intent.model_version,
            "risk": intent.risk_version,
            "skipped": self.state.skipped,
        }
        # The redo record before any alert goes out: a replay then scores with the same model.
        state_bytes = self.redo.append(batch_id, redo_payload(scored.table, meta))
        self.state.batch_id = batch_id
        mark("redo")
        self.lake.add(batch_id, scored.table)
        records = batch_records(
            scored, valid, decoded.dead, model=model, model_version=intent.model_version, at=now
        )
        if len(scored.flagged):
            mark("explain")
        if self.outlets.write(records):
            mark("flush")
        lat50, lat99, ev50, ev99 = latency_percentiles(valid, self.clock() * 1000.0)
        self._maybe_snapshot()
        with self._lock:
            errors, self._errors = self._errors, []
        for e in errors:
            if isinstance(e, RtfdError):
                raise e  # "Disk full" keeps its title
            raise RtfdError(f"writing Parquet: {e}", title="Parquet") from e
        steps: dict[str, float] = {}
        prev = t0
        for step, when in marks.items():
            steps[step] = round(1000 * (when - prev), 2)
            prev = when
        stats = BatchStats(
            query=self.name,
            batch_id=batch_id,
            rows=len(valid),
            alerts=len(records.alerts),
            dead_letters=len(decoded.dead),
            duplicates=n_dupes,
            skipped_offsets=self.state.skipped,
            state_users=len(self.state.store),
            state_bytes=self.state.store.nbytes,
            state_bytes_written=state_bytes,
            model_version=intent.model_version,
            latency_p50_ms=lat50,
            latency_p99_ms=lat99,
            event_latency_p50_ms=ev50,
            event_latency_p99_ms=ev99,
            sink_ms=(time.monotonic() - t0) * 1000.0,
            steps_ms=steps,
        )
        # scripts/bench_common.py reads this line: keep its shape.
        log.info(
            "batch %d: %d rows, %d alerts, %d dead, %.0f ms (%s ms)",
            batch_id,
            len(valid),
            len(records.alerts),
            len(decoded.dead),
            stats.sink_ms,
            ", ".join(f"{k} {v:.1f}" for k, v in steps.items()),
        )
        self.hub.record_batch(stats)
        return stats

    def _intent(self, batch_id: int) -> tuple[Intent, Any, Any]:
        """The model and risk table of a batch: the ones its redo record names when it is run
        again after a crash, else the current ones."""
        recorded = self._replays.pop(batch_id, None)
        if recorded is not None:
            try:
                model = self.models.get(recorded.model_version)
            except Exception as e:
                raise StateError(
                    f"batch {batch_id} was scored by model {recorded.model_version}, which cannot "
                    f"be loaded now ({e}); it must score the batch again so that the same alerts "
                    f"go out: restore that version in {self.settings.models_dir}"
                ) from e
            return recorded, model, self.risk.table_version(recorded.risk_version)
        model = self.models.current()
        version, table = self.risk.current()
        return Intent(str(model.version), version), model, table


class LabelEngine:
    """``foreachBatch`` of the labels query: valid labels to Parquet (one file per batch and
    report date, named by the batch: a replay rewrites the same files — exactly once; the
    compactor merges them), the rest to the DLQ."""

    def __init__(
        self,
        settings: Settings,
        *,
        checkpoint: Path,
        topic: str,
        outlets: Outlets,
        hub: ProgressHub,
        clock: Clock = time.time,
        name: str = "labels",
    ) -> None:
        self.settings = settings
        self.checkpoint = checkpoint
        self.topic = topic
        self.outlets = outlets
        self.hub = hub
        self.clock = clock
        self.name = name
        self.schema = labels_arrow_schema()
        self.lake_id = lake_id(checkpoint)

    def __call__(self, df: Any, batch_id: int) -> None:
        self.process(df.toArrow(), int(batch_id))

    def process(self, raw: pa.Table, batch_id: int) -> BatchStats:
        import pyarrow as pa

        from rtfd.lake import file_name
        from rtfd.stream.batch import BatchRecords, dead_letter_records
        from rtfd.stream.decode import decode, kafka_columns
        from rtfd.stream.sinks import write_by_date

        s = self.settings
        values, kafka_ms, coords = kafka_columns(raw, self.topic)
        decoded = decode(
            values,
            kafka_ms,
            coords,
            LABEL,
            max_future_s=s.stream_max_future_s,
            max_amount=s.stream_max_amount,
        )
        valid = decoded.valid
        if len(valid):
            table = pa.Table.from_pandas(
                valid[self.schema.names], schema=self.schema, preserve_index=False, safe=False
            )
            dates = valid["reported_at"].dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
            name = file_name(self.lake_id, batch_id, batch_id)
            write_by_date(s.labels_dir, LABEL_PARTITION_COLUMN, name, table, dates)
        if len(decoded.dead):
            at = datetime.fromtimestamp(self.clock(), tz=UTC)
            self.outlets.write(BatchRecords([], dead_letter_records(decoded.dead, seen_at=at)))
        stats = BatchStats(
            query=self.name, batch_id=batch_id, rows=len(valid), dead_letters=len(decoded.dead)
        )
        self.hub.record_batch(stats)
        return stats
