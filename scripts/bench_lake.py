"""Benchmark section ``lake``: the Parquet files the stream leaves, and how fast SQL reads them.

The stream writes ``enriched_transactions`` through :class:`rtfd.lake.LakeWriter` (one file per
flush, every 2 s) and merges them in the background with :func:`rtfd.lake.compact`. A day at
1,000 tx/s cannot be run in a benchmark, so this section runs an **accelerated hour**: the
flushes of one hour at 1,000 tx/s (1,800 flushes of 2,000 realistic enriched rows, the stream's
cadence) are written back to back, with a compaction pass every 5 flushes (every 10 s of
simulated time, the stream's cadence) on a simulated clock. It reports:

* the visible files after each simulated 10 minutes and at the end of the hour (the file count
  per hour), with the bytes per row;
* files per day at 1,000 tx/s: the hour's files that are done merging (top tier, ≥ 64 MB) × 24
  plus the files still merging at the end of the hour (at most 7 per lower tier): what a day
  leaves, since the top tier never merges again;
* ``SELECT count(*)`` and a filtered aggregate over a **day** of Parquet through the SQL panel's
  own service (:class:`rtfd.query.service.QueryService`): the hour's top-tier files hard-linked
  as 24 hours (24 query ids, so each is visible) plus the files still merging, min / median /
  max of ``--runs`` runs (at least 3).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import bench_models, enriched_table, scale_of, simulated_rows, sub_settings

SECTION = "lake"
RATE = 1_000
FLUSH_S = 2.0  # rtfd.stream.engine.FLUSH_EVERY_S
COMPACT_EVERY = 5  # flushes between compaction passes (COMPACT_EVERY_S = 10 s)


def bench_lake(report: Any, settings: Any, runs: int) -> None:
    """An accelerated hour of flushes and compaction, then SQL over a day of its files."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from rtfd.lake import TIER_BYTES, LakeWriter, compact, tier, visible_files
    from rtfd.query.service import QueryService
    from rtfd.stream.engine import FLUSH_EVERY_S
    from rtfd.stream.sinks import enriched_arrow_schema

    assert FLUSH_EVERY_S == FLUSH_S, "the bench simulates the stream's flush cadence"
    scale = scale_of(report)
    s = sub_settings(settings, "lake")
    s.ensure_dirs()
    quick = bool(report.options.get("quick"))
    sim_s = 600.0 if quick else 3600.0
    rows_per_flush = int(RATE * FLUSH_S)
    flushes = int(sim_s / FLUSH_S)

    _, versions, _ = bench_models(settings, scale)
    history = simulated_rows(s.replace(generator_users=10_000), 20 * rows_per_flush)
    base = enriched_table(history, versions["xgboost"])
    if base.num_rows < 20 * rows_per_flush:
        raise RuntimeError(f"the simulated history has {base.num_rows:,} rows, too few")
    schema = enriched_arrow_schema()
    root = s.enriched_dir
    start = time.time()
    writer = LakeWriter(
        root, partition_column="event_date", date_source="timestamp", query="0" * 8, schema=schema
    )
    ts_type = schema.field("timestamp").type
    counts: list[tuple[float, int]] = []
    written = 0
    t0 = time.perf_counter()
    for i in range(flushes):
        lo = (i % 20) * rows_per_flush
        table = base.slice(lo, rows_per_flush)
        # Event times of the simulated second (one date partition, like the live stream).
        stamp = np.full(table.num_rows, int((start + i * FLUSH_S) * 1000), dtype=np.int64)
        table = table.set_column(
            table.schema.get_field_index("timestamp"), "timestamp", pa.array(stamp).cast(ts_type)
        )
        table = table.set_column(
            table.schema.get_field_index("kafka_offset"),
            "kafka_offset",
            pc.add(table.column("kafka_offset"), i * rows_per_flush),
        )
        writer.add(i, table)
        written += writer.flush(i)
        if (i + 1) % COMPACT_EVERY == 0:
            compact(root, now=start + (i + 1) * FLUSH_S)
        if (i + 1) % 300 == 0:
            counts.append(((i + 1) * FLUSH_S / 60.0, len(visible_files(root))))
    # The hour is over: the stream keeps compacting, so run the passes it would run next.
    for k in range(20):
        if not compact(root, now=start + sim_s + (k + 1) * 10.0).merged:
            break
    wall = time.perf_counter() - t0
    files = [Path(p) for p in visible_files(root)]
    sizes = [p.stat().st_size for p in files]
    by_tier = [0] * (len(TIER_BYTES) + 1)
    for size in sizes:
        by_tier[tier(size)] += 1
    rows = flushes * rows_per_flush
    assert written == rows, (written, rows)
    hours = sim_s / 3600.0
    top = by_tier[-1]
    per_day = top * 24.0 / hours + sum(by_tier[:-1])
    f_hour = report.figure(
        SECTION,
        "visible Parquet files per hour at 1,000 tx/s",
        "files",
        note=f"{flushes:,} flushes of {rows_per_flush:,} rows (simulated {sim_s / 60:.0f} min"
        f" in {wall:.0f} s); by size tier (<1 MB, <8 MB, <64 MB, ≥64 MB): "
        + ", ".join(str(n) for n in by_tier)
        + "; after each 10 min: "
        + ", ".join(f"{m:.0f} min {n}" for m, n in counts),
    )
    f_hour.values = [len(files) / hours]
    f_bytes = report.figure(
        SECTION, "Parquet bytes per enriched row (zstd)", "B", note=f"{sum(sizes) / 1e6:,.0f} MB"
    )
    f_bytes.values = [sum(sizes) / rows]
    f_day = report.figure(
        SECTION,
        "Parquet files a day at 1,000 tx/s (estimated from the hour)",
        "files",
        note="top-tier files of the hour × 24 + the files still merging",
    )
    f_day.values = [per_day]
    report.summary["lake_files_per_hour_at_1000"] = round(len(files) / hours, 1)
    report.summary["lake_files_per_day_at_1000"] = round(per_day, 1)

    # A day of files, as the stream leaves it: the hour's top-tier files (they never merge
    # again) hard-linked as 24 hours (24 query ids, so each is visible), and the files still
    # merging at the end of the hour once.
    day = sub_settings(settings, "lake-day")
    day.ensure_dirs()
    day_rows = 0
    copies = round(24 / hours)
    for p, size in zip(files, sizes, strict=True):
        n = pq.ParquetFile(p).metadata.num_rows
        for h in range(copies if tier(size) == len(TIER_BYTES) else 1):
            name = p.name.replace("part-00000000", f"part-{h:08x}")
            target = day.enriched_dir / p.parent.name / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, target)
            day_rows += n
    day_files = len(visible_files(day.enriched_dir))
    service = QueryService(day)
    try:
        for sql, label in (
            ("SELECT count(*) FROM enriched_transactions", "count(*)"),
            (
                "SELECT count(*), avg(amount) FROM enriched_transactions WHERE is_fraud",
                "count(*), avg(amount) WHERE is_fraud",
            ),
        ):
            fig = report.figure(
                SECTION,
                f"SQL panel: {label} over a day at 1,000 tx/s",
                "s",
                note=f"{day_files:,} files, {day_rows:,} rows",
            )
            for _ in range(max(runs, 3)):
                q0 = time.perf_counter()
                result = service.run(sql)
                fig.values.append(time.perf_counter() - q0)
            if label == "count(*)":
                assert int(result.rows[0][0]) == day_rows, (result.rows, day_rows)
                report.summary["lake_count_day_s"] = round(fig.median, 3)
    finally:
        service.close()
    report.notes[SECTION] = (
        f"An accelerated {sim_s / 60:.0f} minutes of the stream's Parquet at 1,000 tx/s: "
        f"{flushes:,} flushes of {rows_per_flush:,} rows every {FLUSH_S:g} s (the stream's "
        f"cadence), compaction every {COMPACT_EVERY * FLUSH_S:g} s of simulated time "
        "(rtfd.lake.compact: runs of 8 files of one size tier merge into one; the files they "
        "replace stay readable for 2 minutes). A day is the hour's top-tier files hard-linked "
        "as 24 hours plus the files still merging; "
        "SQL runs through the panel's own read-only DuckDB service."
    )


SECTIONS = {SECTION: bench_lake}
BUDGET_S = {SECTION: 240}
