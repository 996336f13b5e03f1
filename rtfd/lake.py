"""The Parquet lake: how the stream names its files, which files a reader sees, and compaction.

Layout: ``<root>/<partition>=<YYYY-MM-DD>/part-<query>-<first>-<last>.parquet``: the rows of
micro-batches ``first`` to ``last`` (inclusive) of stream query ``query`` (8 hex digits of
Spark's query id) for that date. Older files named ``part-<query>-<batch>.parquet`` cover one
batch. A file is written under a hidden temporary name and renamed into place, so it appears
whole or not at all; files are never changed afterwards.

**What a reader sees** (:func:`visible_files`): for each query, the files whose batch range is not
inside a wider file's range. Compaction merges consecutive files into one that covers their
ranges, so from the instant the merged file exists every reader that lists the directory sees it
*instead of* the files it replaces — never both, never neither. The replaced files are deleted
only after :data:`GRACE_S` (a reader that listed before the merge may still be reading them; the
SQL panel stops a query after 30 s).

**Why files cover batch ranges.** The stream flushes every few seconds (rows visible to SQL
within seconds) and compacts in the background, size-tiered (:func:`compact`): eight files of a
tier become one of the next, up to :data:`MAX_TIER`. A day at 1,000 tx/s is then ~100 files, not
the ~80,000 of a file per micro-batch, and DuckDB's scans stay fast.

Readers (the query panel, training, the merchant-risk table) take the file list from
:func:`visible_files` rather than a ``**/*.parquet`` glob. This module imports only pyarrow (for
writing and merging), never Spark or DuckDB.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

GRACE_S = 120.0
FAN_IN = 8
MAX_TIER = 3
TIER_BYTES = (1 << 20, 8 << 20, 64 << 20)  # below 1 MB: tier 0; below 8 MB: 1; 64 MB: 2; else 3
_NAME = re.compile(r"^part-([0-9a-f]{8})-(\d{10})(?:-(\d{10}))?\.parquet$")


@dataclass(frozen=True, order=True)
class LakeFile:
    """One data file and the batch range it covers."""

    query: str
    first: int
    last: int
    path: Path

    @property
    def span(self) -> int:
        return self.last - self.first


def file_name(query: str, first: int, last: int) -> str:
    """The name of the file holding batches ``first`` to ``last`` of ``query``."""
    return f"part-{query[:8]}-{first:010d}-{last:010d}.parquet"


def parse_name(path: Path) -> LakeFile | None:
    """The LakeFile a path names, or None for anything else (temporaries, foreign files)."""
    m = _NAME.match(path.name)
    if m is None:
        return None
    first = int(m.group(2))
    last = int(m.group(3)) if m.group(3) is not None else first
    return LakeFile(m.group(1), first, last, path) if last >= first else None


def _covering(files: list[LakeFile]) -> tuple[list[LakeFile], list[tuple[LakeFile, LakeFile]]]:
    """(visible, hidden): files of one query not inside a wider file, and each hidden file
    with a file that covers it."""
    ordered = sorted(files, key=lambda f: (f.first, -f.last))
    visible: list[LakeFile] = []
    hidden: list[tuple[LakeFile, LakeFile]] = []
    for f in ordered:
        cover = next(
            (v for v in reversed(visible) if v.first <= f.first and f.last <= v.last), None
        )
        if cover is not None and cover.path != f.path:
            hidden.append((f, cover))
        else:
            visible.append(f)
    return visible, hidden


def partition_files(directory: Path) -> tuple[list[LakeFile], list[tuple[LakeFile, LakeFile]]]:
    """(visible, hidden) files of one partition directory, all queries."""
    by_query: dict[str, list[LakeFile]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            f = parse_name(Path(entry.path))
            if f is not None:
                by_query.setdefault(f.query, []).append(f)
    visible: list[LakeFile] = []
    hidden: list[tuple[LakeFile, LakeFile]] = []
    for files in by_query.values():
        v, h = _covering(files)
        visible += v
        hidden += h
    return sorted(visible), hidden


def partitions(root: Path) -> list[Path]:
    """The partition directories (``<column>=<value>``) under ``root``."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and "=" in p.name)


def visible_files(root: Path) -> list[str]:
    """Every data file a reader should read under ``root``: each row exactly once. Files named
    by the stream follow the covering rule; any other ``*.parquet`` (not hidden) is read too."""
    if not root.is_dir():
        return []
    out: list[str] = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(directory)
        ours = [n for n in names if _NAME.match(n)]
        if ours:
            out += [str(f.path) for f in partition_files(here)[0]]
        out += sorted(
            str(here / n)
            for n in names
            if n.endswith(".parquet") and not n.startswith(".") and not _NAME.match(n)
        )
    return out


def query_watermark(root: Path, query: str) -> int | None:
    """The highest batch of ``query`` any file under ``root`` covers (None: no file)."""
    best: int | None = None
    for d in partitions(root):
        for f in partition_files(d)[0]:
            if f.query == query[:8] and (best is None or f.last > best):
                best = f.last
    return best


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def write_file(directory: Path, name: str, table: pa.Table) -> int:
    """Write ``table`` as ``directory/name`` atomically (hidden temporary, then rename). A
    failed write (a full disk) leaves nothing behind and raises an RtfdError that says so."""
    import pyarrow.parquet as pq

    tmp = directory / f".{name}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, compression="zstd", row_group_size=256_000)
        os.replace(tmp, directory / name)
    except BaseException as e:
        # A full disk: the half-written temporary would keep the space taken (and the retry
        # would meet a full disk again), so it goes.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(e, directory / name) from e
        raise
    return int(table.num_rows)


def write_error(e: OSError, path: Path) -> Exception:
    """A one-line error that names the disk problem and the file (nothing of it is visible;
    the stream writes it again)."""
    from rtfd.errors import RtfdError

    what = f"writing {path} (nothing of it is visible; it is written again once this is fixed)"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return RtfdError(
            f"the disk is full ({e.strerror or 'no space left'}) while {what}: free some space",
            title="Disk full",
        )
    return RtfdError(f"cannot write ({e.strerror or e}) while {what}", title="Write failed")


def drop_after(root: Path, query: str, batch: int) -> int:
    """Delete the files of ``query`` that cover any batch after ``batch`` (they are written
    again from the redo log); returns how many went."""
    gone = 0
    for d in partitions(root):
        for f in partition_files(d)[0] + [h for h, _ in partition_files(d)[1]]:
            if f.query == query[:8] and f.last > batch:
                with contextlib.suppress(FileNotFoundError):
                    f.path.unlink()
                    gone += 1
    return gone


# --------------------------------------------------------------------------------------------
# Compaction
# --------------------------------------------------------------------------------------------
def tier(size: int) -> int:
    """The size tier of a file of ``size`` bytes."""
    return next((i for i, limit in enumerate(TIER_BYTES) if size < limit), MAX_TIER)


@dataclass
class CompactionStats:
    merged: int = 0  # new files
    replaced: int = 0  # files they replace (hidden now)
    deleted: int = 0  # hidden files deleted after the grace period
    seconds: float = 0.0


def compact(
    root: Path,
    *,
    fan_in: int = FAN_IN,
    grace_s: float = GRACE_S,
    now: float | None = None,
    until: float | None = None,
) -> CompactionStats:
    """One pass over ``root``: merge runs of ``fan_in`` consecutive files of one tier, delete
    hidden files whose cover is older than ``grace_s`` and temporaries left by a crash.

    ``until`` (a ``time.monotonic()`` deadline) ends the pass early; the next one goes on.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    stats = CompactionStats()
    started = time.monotonic()
    clock = time.time() if now is None else now
    for directory in partitions(root):
        visible, hidden = partition_files(directory)
        for f, cover in hidden:
            with contextlib.suppress(FileNotFoundError):
                if clock - cover.path.stat().st_mtime >= grace_s:
                    f.path.unlink()
                    stats.deleted += 1
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(directory):
                stale = entry.name.startswith(".") and entry.name.endswith(".tmp")
                if stale and clock - entry.stat().st_mtime >= grace_s:
                    os.unlink(entry.path)
        for group in _mergeable(visible, fan_in):
            if until is not None and time.monotonic() > until:
                stats.seconds = time.monotonic() - started
                return stats
            tables = [pq.read_table(f.path) for f in group]
            merged = pa.concat_tables(tables, promote_options="permissive")
            name = file_name(group[0].query, group[0].first, group[-1].last)
            write_file(directory, name, merged)
            stats.merged += 1
            stats.replaced += len(group)
    stats.seconds = time.monotonic() - started
    if stats.merged or stats.deleted:
        log.info(
            "lake %s: %d merged file(s) replace %d; %d old file(s) deleted (%.1f s)",
            root.name,
            stats.merged,
            stats.replaced,
            stats.deleted,
            stats.seconds,
        )
    return stats


def _mergeable(visible: list[LakeFile], fan_in: int) -> Iterable[list[LakeFile]]:
    """Runs of ``fan_in`` consecutive visible files (per query, in batch order) of one tier
    below :data:`MAX_TIER`."""
    by_query: dict[str, list[tuple[LakeFile, int]]] = {}
    for f in sorted(visible, key=lambda f: (f.query, f.first)):
        try:
            size = f.path.stat().st_size
        except FileNotFoundError:
            continue
        by_query.setdefault(f.query, []).append((f, tier(size)))
    for files in by_query.values():
        run: list[LakeFile] = []
        run_tier = -1
        for f, t in files:
            if t != run_tier or (run and f.first <= run[-1].last):
                run, run_tier = [], t
            run.append(f)
            if len(run) == fan_in and t < MAX_TIER:
                yield run
                run = []


# --------------------------------------------------------------------------------------------
# The stream's writer
# --------------------------------------------------------------------------------------------
class LakeWriter:
    """Buffers the rows of micro-batches and writes each flush as one file per partition value
    (``part-<query>-<first>-<last>``). Thread-safe: the stream adds, a timer flushes."""

    def __init__(
        self,
        root: Path,
        *,
        partition_column: str,
        date_source: str,
        query: str,
        schema: pa.Schema,
    ) -> None:
        import threading

        self.root = root
        self.partition_column = partition_column
        self.date_source = date_source
        self.query = query[:8]
        self.schema = schema
        self._lock = threading.Lock()
        self._pending: list[tuple[int, pa.Table]] = []  # (batch id, rows)
        self.flushed: int | None = query_watermark(root, query)

    @property
    def pending_rows(self) -> int:
        with self._lock:
            return sum(t.num_rows for _, t in self._pending)

    def add(self, batch_id: int, table: pa.Table) -> None:
        """Queue one batch's rows (an Arrow table with the schema's columns)."""
        with self._lock:
            self._pending.append((batch_id, table))

    def flush(self, upto: int) -> int:
        """Write the queued batches up to ``upto`` (committed ones); returns the rows written.
        A failed write keeps them queued (retried at the next flush)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        with self._lock:
            take = [(b, t) for b, t in self._pending if b <= upto]
        if not take:
            return 0
        first, last = take[0][0], take[-1][0]
        tables = [t.select(self.schema.names) for _, t in take if t.num_rows]
        rows = 0
        if tables:
            table = pa.concat_tables(tables).combine_chunks()
            dates = pc.strftime(table.column(self.date_source), format="%Y-%m-%d")
            name = file_name(self.query, first, last)
            for date in sorted(set(dates.to_pylist())):
                part = table.filter(pc.equal(dates, date))
                rows += write_file(self.root / f"{self.partition_column}={date}", name, part)
        with self._lock:
            self._pending = [(b, t) for b, t in self._pending if b > last]
            self.flushed = last if self.flushed is None else max(self.flushed, last)
        return rows

    def discard(self) -> None:
        """Forget queued rows (a stop: Spark runs the uncommitted batches again)."""
        with self._lock:
            self._pending = []
