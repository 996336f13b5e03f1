"""Pure formatting helpers of the TUI: numbers, durations, score colours, record fields.

No textual import here (rich only), so these are unit-testable and reusable by the headless CLI.
Records from other components (the stream's progress, the registry's metadata, alert JSON) are
read defensively: a missing or oddly typed field shows as "-", never as a crash.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text

if TYPE_CHECKING:
    from rtfd.ml.train import TrainResult

#: Rates the +/- keys step through (tx/s): a ladder is easier to use than fixed increments.
RATE_STEPS: tuple[float, ...] = (
    1, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
)  # fmt: skip

NA = "-"


def field(record: Any, name: str, default: Any = None) -> Any:
    """``record.name`` or ``record[name]``; ``default`` when absent (records are duck-typed)."""
    if record is None:
        return default
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_int(value: Any) -> str:
    """1234567 -> '1,234,567'."""
    f = number(value)
    return NA if f is None else f"{round(f):,}"


def fmt_rate(value: Any, unit: str = "/s") -> str:
    """Rows or transactions per second, compact: '850/s', '12.3k/s'."""
    f = number(value)
    if f is None:
        return NA
    if abs(f) >= 10_000:
        return f"{f / 1000:.1f}k{unit}"
    if abs(f) >= 100:
        return f"{f:,.0f}{unit}"
    return f"{f:.1f}{unit}"


def fmt_ms(value: Any) -> str:
    """A duration in milliseconds: '850 ms', '1.25 s', '2m05s'."""
    f = number(value)
    if f is None:
        return NA
    if f < 1000:
        return f"{f:.0f} ms"
    if f < 60_000:
        return f"{f / 1000:.2f} s"
    s = int(f // 1000)
    return f"{s // 60}m{s % 60:02d}s"


def fmt_amount(value: Any) -> str:
    f = number(value)
    return NA if f is None else f"{f:,.2f}"


def fmt_score(value: Any) -> str:
    f = number(value)
    return NA if f is None else f"{f:.3f}"


def fmt_metric(value: Any) -> str:
    f = number(value)
    return NA if f is None else f"{f:.3f}"


def fmt_time(value: Any) -> str:
    """An ISO timestamp, datetime or epoch seconds -> 'HH:MM:SS' (UTC); '-' if unreadable."""
    ts: datetime | None = None
    if isinstance(value, datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, str):
        from rtfd.schemas import parse_timestamp

        ts = parse_timestamp(value)
    elif number(value) is not None:
        seconds = float(value)
        if seconds > 1e11:  # epoch milliseconds
            seconds /= 1000
        ts = datetime.fromtimestamp(seconds, tz=UTC)
    return ts.astimezone(UTC).strftime("%H:%M:%S") if ts else NA


def score_style(score: Any, threshold: float | None) -> str:
    """Style of a score cell: red at or above the alert threshold, amber near it, green below."""
    f = number(score)
    if f is None:
        return "dim"
    thr = threshold if threshold is not None else 0.5
    if f >= thr:
        return "bold red"
    if f >= thr * 0.5:
        return "yellow"
    return "green"


def score_text(score: Any, threshold: float | None) -> Text:
    """The score as a coloured, right-aligned cell."""
    return Text(fmt_score(score), style=score_style(score, threshold), justify="right")


def next_rate(current: float, up: bool) -> float:
    """The next step of :data:`RATE_STEPS` above (``up``) or below the current rate."""
    if up:
        return next((r for r in RATE_STEPS if r > current * 1.0001), RATE_STEPS[-1])
    return next((r for r in reversed(RATE_STEPS) if r < current * 0.9999), RATE_STEPS[0])


def stream_summary(progress: Any) -> str:
    """'201 rows/s · cap 1,985/s · batch 412 ms · lag 0 · p99 1.18 s' from a progress record.

    The first figure is the input rate (what arrives); "cap" is Spark's processed rate (rows
    per second of batch time), i.e. how much faster the stream could go.
    """
    lag = field(progress, "lag")
    if lag is None:  # rtfd.stream.progress.StreamProgress calls it offsets_behind
        lag = field(progress, "offsets_behind")
    parts = [
        fmt_rate(field(progress, "input_rows_per_s"), " rows/s"),
        f"cap {fmt_rate(field(progress, 'processed_rows_per_s'))}",
        f"batch {fmt_ms(field(progress, 'batch_duration_ms'))}",
        f"lag {fmt_int(lag)}",
        f"p99 {fmt_ms(field(progress, 'latency_p99_ms'))}",
    ]
    skipped = number(field(progress, "skipped_offsets"))
    if skipped:
        parts.append(f"{fmt_int(skipped)} never read (deleted by retention)")
    return " · ".join(parts)


def parse_alert(value: bytes | str | None) -> dict[str, Any] | None:
    """An alert message value decoded from JSON; None when it is not a JSON object."""
    if value is None:
        return None
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def reasons_text(reasons: Any) -> str:
    """An alert's reasons (a list of phrases) as one line."""
    if isinstance(reasons, str):
        return reasons
    if isinstance(reasons, Sequence):
        return "; ".join(str(r) for r in reasons)
    return ""


def _decimals(value: float) -> int:
    text = repr(round(value, 6))
    return 0 if "e" in text or "." not in text else len(text.split(".")[1].rstrip("0"))


def float_decimals(rows: Sequence[Sequence[Any]]) -> list[int | None]:
    """Per column: the decimals that show every float of it exactly (at most 6), so a column's
    numbers line up ('0.430' above '0.546'); None for a column without floats."""
    width = max((len(r) for r in rows), default=0)
    out: list[int | None] = [None] * width
    for row in rows:
        for i, v in enumerate(row):
            if isinstance(v, float) and math.isfinite(v):
                out[i] = max(out[i] or 0, _decimals(v))
    return out


def result_cells(rows: Sequence[Sequence[Any]]) -> list[tuple[str | Text, ...]]:
    """A query result as DataTable cells (built off the event loop)."""
    decimals = float_decimals(rows)
    return [tuple(cell(v, decimals[i]) for i, v in enumerate(row)) for row in rows]


def cell(value: Any, decimals: int | None = None) -> str | Text:
    """A query result value as a DataTable cell: numbers right-aligned, NULL dimmed."""
    if value is None:
        return Text("NULL", style="dim italic")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return Text(f"{value:,}", justify="right")
    if isinstance(value, float):
        if not math.isfinite(value):
            return Text(str(value), justify="right")
        d = _decimals(value) if decimals is None else decimals
        return Text(f"{value:,.{d}f}", justify="right")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


@dataclass(frozen=True)
class ModelRow:
    """One model version as the model panel shows it."""

    version: str
    live: bool
    algo: str = NA
    mode: str = NA
    threshold: float | None = None
    metrics: Mapping[str, Any] | None = None
    created: str = NA
    note: str = ""
    #: The same-holdout comparison that made it live: short ("AP 0.812 vs 0.790") and whole.
    decided_by: str = ""
    promotion: str = ""

    def metric(self, *names: str) -> Any:
        """The first of ``names`` present in the metrics (registries name them differently)."""
        for name in names:
            value = (self.metrics or {}).get(name)
            if value is not None:
                return value
        return None


def describe_training(result: TrainResult) -> str:
    """'v0004 · avg prec 0.912 · ROC AUC 0.991 · promoted…' from a training result."""
    parts = [result.version]
    for label, name in (
        ("avg prec", "average_precision"),
        ("ROC AUC", "auc_roc"),
        ("precision", "precision"),
        ("recall", "recall"),
    ):
        value = result.metrics.get(name)
        if number(value) is not None:
            parts.append(f"{label} {fmt_metric(value)}")
    if result.promoted:
        parts.append("promoted: the stream switches to it")
    else:
        decision = result.decision
        parts.append(f"kept the champion ({decision})" if decision else "kept the champion")
    return " · ".join(parts)
