"""``rtfd monitor [--json] [--hours N]``: drift, alert volume, precision and the retrain
suggestion, headless (the Monitor tab of the console shows the same report)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rtfd.cli.flags import Number

if TYPE_CHECKING:
    from rtfd.config import Settings
    from rtfd.monitor.report import MonitorReport

#: The longest window --hours accepts: a year.
MAX_HOURS = 24 * 366


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "monitor",
        help="drift of the live traffic against the live model's training data (PSI), alerts "
        "per hour, alert precision per day, and whether a retrain is suggested",
    )
    parser.add_argument(
        "--hours",
        type=Number(float, 0, MAX_HOURS, lo_open=True),
        default=24.0,
        metavar="N",
        help="the live window: transactions processed in the last N hours (default 24)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=cmd_monitor)


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from rtfd.monitor.report import build_report

    report = build_report(settings, hours=args.hours)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(describe(report)))
    return 0


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def describe(report: MonitorReport) -> list[str]:
    """The report as a compact text table (what ``rtfd monitor`` prints)."""
    r = report
    lines = [
        f"model {r.model_version} (threshold {_number(r.threshold)}) · last {r.window_hours:g} h: "
        f"{r.window_rows:,} transactions, {r.window_alerts:,} alerts",
    ]
    if r.advice.suggested:
        lines.append("RETRAIN SUGGESTED: " + "; ".join(r.advice.reasons))
    else:
        lines.append("no retrain suggested")
    lines += [f"  note: {n}" for n in ([r.reference_note] if r.reference_note else [])]
    lines += [f"  note: {n}" for n in r.advice.notes]
    if r.window_rows == 0:
        lines.append(f"  no transaction processed in the last {r.window_hours:g} h")
    elif r.score is not None or r.features:
        lines += ["", f"{'drift vs training data':<26} {'PSI':>6}  {'band':<12} missing"]
        for d in [*([r.score] if r.score else []), *r.features]:
            band = d.band.value if d.band else (d.note or "-")
            lines.append(f"  {d.name:<24} {_number(d.psi):>6}  {band:<12} {d.missing_share:>6.1%}")
    hourly = " ".join(str(h.alerts) for h in r.alerts_per_hour[-24:])
    lines += ["", f"alerts per hour (oldest first, latest hour last): {hourly}"]
    lines += ["", "alert precision per day (UTC)  precision  confirmed/resolved  by analysts"]
    for day in r.precision_per_day:
        lines.append(
            f"  {day.day.isoformat():<28} {_number(day.precision):>9}  "
            f"{day.confirmed:>9}/{day.resolved:<8} {day.by_analyst:>11}"
        )
    if not r.precision_per_day:
        lines.append("  no alert yet")
    lines.append(
        f"{r.rule.days}-day precision of {r.model_version}'s alerts: {_number(r.precision_7d)} "
        f"({r.resolved_7d} resolved) · validation precision {_number(r.validation_precision)}"
    )
    return lines
