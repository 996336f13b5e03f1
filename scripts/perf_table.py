"""README's "Performance and reliability" table, rendered from docs/benchmarks.json (`just bench`)
and docs/reliability.json (`just chaos`) alone, between ``<!-- perf-table:start -->`` and
``<!-- perf-table:end -->``. Both scripts rewrite it after they write their JSON; a test holds the
README to the committed JSON, so a figure there cannot be typed by hand or go stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCH_JSON = ROOT / "docs" / "benchmarks.json"
CHAOS_JSON = ROOT / "docs" / "reliability.json"
START = "<!-- perf-table:start -->"
END = "<!-- perf-table:end -->"


def _n(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "not measured"
    return f"{v:,.{digits}f}"


def render(bench: dict[str, Any], chaos: dict[str, Any] | None) -> str:
    b = bench.get
    sustained = _n(b("sustained_tx_per_s"))
    if b("sustained_verified") is False:
        sustained += " (the lag still grew: not verified)"
    rows = [
        "| | figure |",
        "|---|---|",
        f"| sustained rate, 3 minutes, lag not growing, load generator on the same cores | "
        f"**{sustained} tx/s** with {_n(b('sustained_users_in_state'))} cards in state |",
        f"| produce → alert latency at 1,000 tx/s (50,000 cards), per transaction | "
        f"p50 **{_n(b('alert_latency_p50_ms_at_1000'))} ms**, "
        f"p99 **{_n(b('alert_latency_p99_ms_at_1000'))} ms** |",
        f"| the same with 10,000 / 100,000 cards | p99 "
        f"{_n(b('alert_latency_p99_ms_at_1000_10k_users'))} / "
        f"{_n(b('alert_latency_p99_ms_at_1000_100k_users'))} ms |",
        f"| produce → visible in Parquet (SQL) at 1,000 tx/s | p99 "
        f"{_n(b('parquet_latency_p99_ms_at_1000'))} ms |",
        f"| backlog drain: ours / naive Spark pipeline without state / no Spark at all | "
        f"{_n(b('drain_rows_per_s'))} / {_n(b('naive_drain_rows_per_s'))} / "
        f"{_n(b('limit_drain_rows_per_s'))} rows/s |",
        f"| peak memory of the whole appliance at 1,000 tx/s (`rtfd up`: Python, Spark and "
        f"Kafka JVMs) | {_n(b('peak_rss_mb'))} MB |",
        f"| Parquet files a day at 1,000 tx/s (compacted) / `count(*)` over a day | "
        f"{_n(b('lake_files_per_day_at_1000'))} files / {_n(b('lake_count_day_s'), 2)} s |",
    ]
    if chaos:
        c = chaos.get
        rows.append(
            f"| `just chaos`: {c('stream_kills')} kill -9 of the stream and {c('broker_kills')} "
            f"of the broker at {_n(c('rate'))} tx/s | **{_n(c('lost'))} lost, "
            f"{_n(c('duplicated_rows'))} duplicated** of {_n(c('transactions_acknowledged'))} "
            f"transactions; {_n(c('feature_mismatches'))} per-user feature values differ from "
            f"the offline kernel; recovery p50 {_n(c('stream_recovery_p50_s'), 1)} s (stream), "
            f"{_n(c('broker_recovery_p50_s'), 1)} s (broker) |"
        )
    machine = bench.get("machine") or {}
    rows += [
        "",
        f"`just bench` of {str(machine.get('date', '?'))[:10]} on {machine.get('cores', '?')} "
        f"cores ({machine.get('cpu', '?')}), pyspark {machine.get('pyspark', '?')}"
        + (f"; `just chaos` of {str(chaos.get('date', '?'))[:10]}" if chaos else "")
        + ".",
    ]
    return "\n".join(rows)


def load(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def block(text: str) -> str:
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip()


def rewrite_readme(readme: Path = README) -> None:
    """Render the table from the JSON files in docs/ into README.md."""
    bench = load(BENCH_JSON) or {}
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme} has no {START} … {END} block")
    body = render(bench, load(CHAOS_JSON))
    readme.write_text(text[: start + len(START)] + "\n" + body + "\n" + text[end:], "utf-8")
