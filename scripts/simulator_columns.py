"""The simulator's measured tables in docs/simulator.md: the fraud mix and how well each single
column separates fraud.

Simulates the same 30-day history as ``tests/unit/test_generator_history.py`` (default seed) and
measures with the same functions (``rtfd.generator.separability``) the univariate ROC AUC of
every transaction column and of the generator's possible artefacts, and the observed fraud mix;
writes docs/simulator_columns.json and the tables between ``<!-- column-auc:start/end -->`` and
``<!-- fraud-mix:start/end -->`` in docs/simulator.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "simulator.md"
JSON = ROOT / "docs" / "simulator_columns.json"
START = "<!-- column-auc:start -->"
END = "<!-- column-auc:end -->"
MIX_START = "<!-- fraud-mix:start -->"
MIX_END = "<!-- fraud-mix:end -->"
DAYS = 30


def render(data: dict) -> str:
    cols = list(data["columns"].items())
    half = (len(cols) + 1) // 2
    lines = ["| column | AUC | | column | AUC |", "|---|---:|---|---|---:|"]
    for i in range(half):
        left = cols[i]
        right = cols[half + i] if half + i < len(cols) else ("", None)
        r = f"{right[1]:.3f}" if right[1] is not None else ""
        lines.append(f"| {left[0]} | {left[1]:.3f} | | {right[0]} | {r} |")
    lines += [
        "",
        "Generator artefacts: "
        + ", ".join(f"{k} {v:.3f}" for k, v in data["artefacts"].items())
        + ".",
        "",
        f"Measured on a {data['days']}-day history ({data['rows']:,} transactions, seed "
        f"{data['seed']}) by `scripts/simulator_columns.py` on {data['date']} (commit "
        f"{data['commit']}); figures in `docs/simulator_columns.json`.",
    ]
    return "\n".join(lines)


def fraud_mix(history) -> dict:  # type: ignore[no-untyped-def]
    """Per fraud type: configured mix, transactions, and the median of amount / the victim's
    median legitimate amount."""
    from rtfd.generator.fraud import FRAUD_TYPES, FraudParams

    legit = history[history["label"] == 0]
    victim_median = legit.groupby("user_id")["amount"].median()
    fraud = history[history["label"] == 1]
    out = {}
    for name, mix in zip(FRAUD_TYPES, FraudParams().mix, strict=True):
        rows = fraud[fraud["fraud_type"] == name]
        ratio = rows["amount"] / rows["user_id"].map(victim_median)
        out[name] = {
            "mix": mix,
            "transactions": len(rows),
            "median_amount_over_victims_median": round(float(ratio.median()), 2),
        }
    return out


def history_rate(data: dict) -> str:
    return f"{data['rows'] / data['seconds'] * 60 / 1e6:.1f}"


def render_mix(data: dict) -> str:
    mix = data["fraud_mix"]
    frauds = sum(v["transactions"] for v in mix.values())
    lines = [
        f"Observed over {data['days']} days, seed {data['seed']} ({data['rows']:,} transactions, "
        f"{frauds:,} fraudulent = {100 * frauds / data['rows']:.2f} %; "
        f"simulated in {data['seconds']:.1f} s, {history_rate(data)} million tx/min, by "
        "`scripts/simulator_columns.py`):",
        "",
        "| fraud_type | mix | transactions | share of fraud | % of all | median amount / "
        "victim's median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in mix.items():
        n = v["transactions"]
        lines.append(
            f"| {name} | {100 * v['mix']:.0f} % | {n:,} | {100 * n / frauds:.1f} % | "
            f"{100 * n / data['rows']:.3f} % | {v['median_amount_over_victims_median']:.1f} |"
        )
    return "\n".join(lines)


def replace(text: str, start: str, end: str, body: str) -> str:
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise SystemExit(f"{DOC} has no {start} … {end} block")
    return text[: i + len(start)] + "\n" + body + "\n" + text[j:]


def main() -> int:
    import inspect

    from rtfd.generator.history import simulate_history
    from rtfd.generator.separability import artefact_aucs, column_aucs

    seed = inspect.signature(simulate_history).parameters["seed"].default
    t0 = time.perf_counter()
    history = simulate_history(DAYS)  # exactly the test's history
    seconds = time.perf_counter() - t0
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    data = {
        "days": DAYS,
        "seed": seed,
        "rows": len(history),
        "seconds": round(seconds, 2),
        "columns": {k: round(v, 4) for k, v in column_aucs(history).items()},
        "artefacts": {k: round(v, 4) for k, v in artefact_aucs(history).items()},
        "fraud_mix": fraud_mix(history),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": commit,
    }
    JSON.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    text = DOC.read_text(encoding="utf-8")
    text = replace(text, START, END, render(data))
    text = replace(text, MIX_START, MIX_END, render_mix(data))
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {JSON} and the table in {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
