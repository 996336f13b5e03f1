"""What makes the driver-held state durable: a redo log, snapshots, and recent ids.

The local stream keeps the per-user state in the process that runs ``foreachBatch`` (see
:mod:`rtfd.stream.engine`), so it must survive a ``kill -9`` by itself, under the same batch-id
protocol Spark uses for its own checkpoint:

* :class:`RedoLog` — before a batch returns (so before Spark commits it), its output rows (the
  enriched transactions: every transaction field, every feature, the score) are appended to a
  log under the checkpoint as one framed, checksummed record. A torn record at the end (the
  process died while writing) is detected and ignored: that batch was not committed, Spark runs
  it again.
* :class:`Snapshots` — now and then, a copy of the whole state taken between two batches is
  written in the background (``snapshot-<batch>.rtfd``, atomically renamed into place).
* Recovery: the newest snapshot at or before Spark's last committed batch, plus the redo records
  after it up to that batch, folded again through the same kernel, is exactly the state the next
  batch saw the first time. The features recomputed during recovery are compared with the ones
  the log holds, bit for bit: a difference stops the start with a clear error instead of
  serving features from a state that is not the one the stream had.
* The redo records are also the Parquet sink's source of truth: rows of committed batches not yet
  in a Parquet file (written every few seconds, see :mod:`rtfd.lake`) are written from the log.

:class:`RecentIds` is the de-duplication window (a transaction id delivered twice within
:data:`DEDUP_WINDOW_S` of event time is dropped), held and snapshotted with the state.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rtfd.errors import RtfdError
from rtfd.features.intmap import Int64Index

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

DEDUP_WINDOW_S = 600.0
_RECORD = struct.Struct("<4sQII")  # magic, batch id, payload length, crc32
_MAGIC = b"RDO1"
_SEGMENT = re.compile(r"^redo-(\d{12})\.log$")
_SNAPSHOT = re.compile(r"^snapshot-(\d{12})\.rtfd$")


class StateError(RtfdError):
    """The stream's saved state cannot be used as it is."""

    title = "Stream state"


# --------------------------------------------------------------------------------------------
# Redo log
# --------------------------------------------------------------------------------------------
class RedoLog:
    """Append-only, framed records of batches, in segments that start at a snapshot."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._fh: io.BufferedWriter | None = None
        self._segment_first: int | None = None
        self.bytes_written = 0

    def segments(self) -> list[tuple[int, Path]]:
        """(first batch, path) of every segment, oldest first."""
        out = []
        for p in self.directory.iterdir():
            m = _SEGMENT.match(p.name)
            if m:
                out.append((int(m.group(1)), p))
        return sorted(out)

    def append(self, batch_id: int, payload: bytes) -> int:
        """Append one record (flushed to the OS before returning); returns its size."""
        if self._fh is None:
            self.start_segment(batch_id)
        assert self._fh is not None
        head = _RECORD.pack(_MAGIC, batch_id, len(payload), zlib.crc32(payload))
        self._fh.write(head)
        self._fh.write(payload)
        self._fh.flush()
        self.bytes_written += len(head) + len(payload)
        return len(head) + len(payload)

    def start_segment(self, first_batch: int) -> None:
        """Write later records to a new segment (called after a snapshot)."""
        self.close()
        path = self.directory / f"redo-{first_batch:012d}.log"
        self._fh = open(path, "ab")  # noqa: SIM115 - held open across batches
        self._segment_first = first_batch

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None

    def records(self, after: int, upto: int) -> Iterator[tuple[int, bytes]]:
        """(batch id, payload) of the records with after < batch id <= upto, in order. A torn or
        corrupt record ends its segment (what follows it was never committed)."""
        for _, path in self.segments():
            for batch_id, payload in _read_segment(path):
                if after < batch_id <= upto:
                    yield batch_id, payload

    def discard_after(self, batch: int) -> int:
        """Drop records of batches after ``batch`` (not committed: Spark runs them again) and
        any torn tail; returns how many records went. Rewrites only the segments concerned."""
        self.close()
        gone = 0
        for first, path in self.segments():
            kept: list[tuple[int, bytes]] = []
            total = 0
            for batch_id, payload in _read_segment(path):
                total += 1
                if batch_id <= batch:
                    kept.append((batch_id, payload))
            size = path.stat().st_size
            intact = sum(_RECORD.size + len(p) for _, p in kept)
            if len(kept) == total and intact == size:
                continue
            gone += total - len(kept)
            if not kept:
                path.unlink()
                continue
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                for batch_id, payload in kept:
                    fh.write(_RECORD.pack(_MAGIC, batch_id, len(payload), zlib.crc32(payload)))
                    fh.write(payload)
            os.replace(tmp, path)
            del first
        return gone

    def prune(self, keep_after: int) -> int:
        """Delete segments whose every record is at or before ``keep_after`` (a snapshot and the
        Parquet files have it all); returns how many went."""
        segments = self.segments()
        gone = 0
        for (first, path), nxt in zip(segments, [*segments[1:], None], strict=True):
            if nxt is not None and nxt[0] - 1 <= keep_after and path.name != self._current_name():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    gone += 1
            del first
        return gone

    def _current_name(self) -> str | None:
        if self._segment_first is None:
            return None
        return f"redo-{self._segment_first:012d}.log"


def _read_segment(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    pos = 0
    while pos + _RECORD.size <= len(data):
        magic, batch_id, length, crc = _RECORD.unpack_from(data, pos)
        start = pos + _RECORD.size
        payload = data[start : start + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            log.warning("redo log %s: torn or corrupt record at byte %d ignored", path.name, pos)
            return
        yield batch_id, payload
        pos = start + length


# --------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------
class Snapshots:
    """``snapshot-<batch>.rtfd`` files: written atomically, the newest few kept."""

    KEEP = 2

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def list(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.directory.iterdir():
            m = _SNAPSHOT.match(p.name)
            if m:
                out.append((int(m.group(1)), p))
        return sorted(out)

    def write(self, batch_id: int, blob: bytes) -> Path:
        path = self.directory / f"snapshot-{batch_id:012d}.rtfd"
        tmp = self.directory / f".{path.name}.tmp"
        try:
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        for _, old in self.list()[: -self.KEEP]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return path

    def latest(self, at_most: int) -> tuple[int, bytes] | None:
        """The newest snapshot at or before batch ``at_most`` (None: start from empty)."""
        for batch_id, path in reversed(self.list()):
            if batch_id <= at_most:
                return batch_id, path.read_bytes()
        return None

    def drop_after(self, batch: int) -> None:
        for batch_id, path in self.list():
            if batch_id > batch:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


# --------------------------------------------------------------------------------------------
# De-duplication window
# --------------------------------------------------------------------------------------------
def id_hashes(ids: np.ndarray) -> np.ndarray:
    """63-bit hashes of transaction ids (pandas' SipHash with its fixed key: stable across
    processes). Two ids colliding among a window's ids has a probability of ~1e-7."""
    import pandas as pd

    h = pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)
    return (h >> np.uint64(1)).astype(np.int64)


class RecentIds:
    """Transaction ids seen in the last :data:`DEDUP_WINDOW_S` of event time.

    A row is a duplicate when an earlier row with the same id was folded with an event time at
    most the window before the newest event time folded so far (``high``): a function of the
    sequence of batches only, so a recovered state decides exactly as the original did. Entries
    that fell out of the window are treated as absent and dropped when the index grows.
    """

    def __init__(self, window_ms: int = int(DEDUP_WINDOW_S * 1000)) -> None:
        self.window_ms = window_ms
        self.high = np.iinfo(np.int64).min // 2
        self._index = Int64Index()
        self._te = np.zeros(1024, dtype=np.int64)
        self._live_at_rebuild = 0

    def __len__(self) -> int:
        return len(self._index)

    def duplicates(self, ids: np.ndarray, te: np.ndarray) -> np.ndarray:
        """Which rows are duplicates (of a recent row, or of an earlier row of this batch);
        the others are recorded."""
        keys = id_hashes(ids)
        n = len(keys)
        dup = np.zeros(n, dtype=bool)
        if not n:
            return dup
        _, first = np.unique(keys, return_index=True)
        dup[:] = True
        dup[first] = False  # repeated within the batch: every later copy
        rows = self._index.get(keys)
        known = rows >= 0
        recent = np.zeros(n, dtype=bool)
        recent[known] = self._te[rows[known]] >= self.high - self.window_ms
        dup |= recent
        fresh = ~dup
        rows_f, new = self._index.get_or_add(keys[fresh])
        self._grow(len(self._index))
        self._te[rows_f] = te[fresh]
        if len(te[fresh]):
            self.high = max(self.high, int(te[fresh].max()))
        if len(self._index) > max(2 * self._live_at_rebuild, 100_000):
            self._rebuild()
        del new
        return dup

    def _grow(self, n: int) -> None:
        if n > len(self._te):
            out = np.zeros(max(n, 2 * len(self._te)), dtype=np.int64)
            out[: len(self._te)] = self._te
            self._te = out

    def _rebuild(self) -> None:
        keys, rows = self._index.items()
        te = self._te[rows]
        keep = te >= self.high - self.window_ms
        self._index = Int64Index.from_keys(keys[keep])
        self._te = te[keep].copy()
        self._grow(max(len(self._te), 1024))
        self._live_at_rebuild = int(keep.sum())

    def to_table(self) -> pa.Table:
        import pyarrow as pa

        keys, rows = self._index.items()
        te = self._te[rows]
        keep = te >= self.high - self.window_ms
        return pa.table({"id": keys[keep], "te": te[keep]})

    @classmethod
    def from_table(cls, table: pa.Table, high: int, window_ms: int) -> RecentIds:
        """Inverse of :meth:`to_table`; ValueError for a table it cannot have written (the
        snapshot came back from disk: torn or tampered)."""
        import pyarrow as pa

        for name in ("id", "te"):
            column = table.column(name)
            if column.type != pa.int64() or column.null_count:
                raise ValueError(
                    f"recent ids: column {name} is {column.type}, not int64 (no nulls)"
                )
        keys = table.column("id").to_numpy()
        if len(np.unique(keys)) != len(keys):
            raise ValueError("recent ids: an id is listed twice")
        out = cls(window_ms)
        out.high = high
        out._index = Int64Index.from_keys(keys)
        out._te = table.column("te").to_numpy().copy()
        out._grow(max(len(out._te), 1024))
        out._live_at_rebuild = len(keys)
        return out

    def copy(self) -> RecentIds:
        out = RecentIds(self.window_ms)
        out.high = self.high
        out._index = self._index.copy()
        out._te = self._te.copy()
        out._live_at_rebuild = self._live_at_rebuild
        return out


@dataclass
class Offsets:
    """Next expected Kafka offset per (topic, partition): a gap is data retention deleted
    before the stream read it."""

    next: dict[str, int]

    @staticmethod
    def key(topic: str, partition: int) -> str:
        return f"{topic}:{partition}"

    def gaps(self, coords: pd.DataFrame) -> list[tuple[str, int, int]]:
        """(topic:partition, first missing, count) for each gap this batch shows; then move on
        past the batch."""
        out: list[tuple[str, int, int]] = []
        if not len(coords):
            return out
        parts = coords["kafka_partition"].to_numpy()
        offs = coords["kafka_offset"].to_numpy()
        topics = coords["kafka_topic"].to_numpy(dtype=object)
        for topic in dict.fromkeys(topics.tolist()):
            in_topic = topics == topic if len(set(topics.tolist())) > 1 else slice(None)
            p, o = parts[in_topic], offs[in_topic]
            for part in np.unique(p).tolist():
                mine = o[p == part]
                k = self.key(str(topic), int(part))
                lo, hi = int(mine.min()), int(mine.max())
                expected = self.next.get(k)
                if expected is not None and lo > expected:
                    out.append((k, expected, lo - expected))
                self.next[k] = max(hi + 1, self.next.get(k, 0))
        return out

    def to_json(self) -> str:
        return json.dumps(self.next, sort_keys=True)
