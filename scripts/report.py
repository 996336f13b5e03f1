"""The backtest behind the tables in README.md and docs/ml.md: ``just report``.

    .venv/bin/python scripts/report.py               # run it, then rewrite JSON, plots, tables
    .venv/bin/python scripts/report.py --render-only # rewrite the tables from docs/backtest.json

Simulates the 60-day history of the README (seed 42, 10,000 cards, 2,000 merchants), writes it
to Parquet and reads it back as ``rtfd backtest --data`` would, then backtests each algorithm
with ``rtfd.ml.backtest.run_backtest`` and the CLI's defaults: 21 days train, 7 days of label
delay left out, 7 days test ending with the data's last day, threshold by best F1. Every figure,
the command, the date, the library versions and the seconds taken go to docs/backtest.json; the
PR and score plots to docs/img/; the tables between ``<!-- backtest-table:start -->`` and
``<!-- backtest-table:end -->`` in README.md and docs/ml.md are rendered from that JSON alone,
so tests/unit/test_report_tables.py can check that the committed tables are the committed
JSON's. About 1.5 minutes on 2 cores, 4 GB of memory at peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JSON_PATH = ROOT / "docs" / "backtest.json"
IMG_DIR = ROOT / "docs" / "img"
README = ROOT / "README.md"
ML_DOC = ROOT / "docs" / "ml.md"
START = "<!-- backtest-table:start -->"
END = "<!-- backtest-table:end -->"


@dataclass(frozen=True)
class HistorySpec:
    """The simulated history the README quotes."""

    days: int = 60
    seed: int = 42
    cards: int = 10_000
    merchants: int = 2_000
    fraud_rate: float = 0.01


HISTORY = HistorySpec()
SPLIT = {"train_days": 21, "delay_days": 7, "test_days": 7}
ALGORITHMS = {"xgboost": "XGBoost", "logreg": "logistic regression", "iforest": "IsolationForest"}
# The project's acceptance bar for the 60-day backtest: (algo, figure, bar, bar's description).
ACCEPTANCE: list[tuple[str, str, float | None, str]] = [
    ("xgboost", "average_precision", 0.80, "XGBoost average precision ≥ 0.80"),
    ("xgboost", "auc_roc", 0.95, "XGBoost ROC AUC ≥ 0.95"),
    ("iforest", "average_precision", None, "IsolationForest average precision ≥ 5 × fraud rate"),
]
FRAUD_TYPES = {
    "account_takeover": "account takeover",
    "card_testing": "card testing",
    "amount_outlier": "amount outlier",
    "stolen_card_spree": "stolen-card spree",
    "compromised_merchant": "compromised merchant",
}


def run_report(progress: Callable[[str, float | None], None]) -> dict[str, Any]:
    """Simulate, backtest every algorithm, save the plots; every figure in one dict."""
    from rtfd.config import Settings
    from rtfd.generator.history import write_history
    from rtfd.ml.backtest import run_backtest
    from rtfd.ml.data import read_transactions, simulated_history
    from rtfd.ml.progress import scaled
    from rtfd.ml.registry import library_versions

    started = time.monotonic()
    defaults = Settings()  # the CLI's defaults, whatever the local config file says
    history = simulated_history(
        HISTORY.days,
        seed=HISTORY.seed,
        users=HISTORY.cards,
        merchants=HISTORY.merchants,
        fraud_rate=HISTORY.fraud_rate,
        progress=scaled(progress, 0.0, 0.05),
    )
    # Through a file, as `rtfd backtest --data history60.parquet` reads it.
    with tempfile.TemporaryDirectory() as tmp:
        frame = read_transactions(write_history(history, Path(tmp) / "history60.parquet"))
    del history
    simulated_s = time.monotonic() - started
    labels = frame["label"]
    report: dict[str, Any] = {
        "command": "just report (scripts/report.py)",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": _git_commit(),
        "machine": {"cores": os.cpu_count(), "cpu": _cpu(), "platform": platform.platform()},
        "libraries": {**library_versions(), "matplotlib": _matplotlib_version()},
        "history": {
            **asdict(HISTORY),
            "transactions": len(frame),
            "frauds": int(labels.sum()),
            "observed_fraud_rate": float(labels.mean()),
            "first": frame["timestamp"].min().isoformat(),
            "last": frame["timestamp"].max().isoformat(),
            "seconds": round(simulated_s, 1),
        },
        "split": {
            **SPLIT,
            "threshold_rule": defaults.model_threshold_rule,
            "model_seed": defaults.generator_seed,
        },
        "algorithms": {},
    }
    share = 0.95 / len(ALGORITHMS)
    for i, algo in enumerate(ALGORITHMS):
        result = run_backtest(
            frame,
            train_days=SPLIT["train_days"],
            delay_days=SPLIT["delay_days"],
            test_days=SPLIT["test_days"],
            algo=algo,
            rule=defaults.model_threshold_rule,
            target_precision=defaults.model_target_precision,
            alert_budget=defaults.model_alert_budget,
            seed=defaults.generator_seed,
            plots_dir=IMG_DIR,
            progress=scaled(progress, 0.05 + i * share, 0.05 + (i + 1) * share),
        )
        report["split"]["windows"] = result.windows.to_dict()
        report["algorithms"][algo] = {
            "name": ALGORITHMS[algo],
            "mode": result.mode,
            "metrics": result.to_json(),
            "details": result.details,
            "plots": [str(p.relative_to(ROOT)) for p in result.plots],
        }
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def _git_commit() -> str | None:
    """The commit the figures come from, with ``-dirty`` when the tree had local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _matplotlib_version() -> str:
    import matplotlib

    return str(matplotlib.__version__)


def _day(iso: str) -> str:
    return iso[:10]


def _last_day(iso_end_exclusive: str) -> str:
    """The last day of a window whose end is exclusive midnight."""
    return (date.fromisoformat(iso_end_exclusive[:10]) - timedelta(days=1)).isoformat()


def _lift(entry: dict[str, Any]) -> float:
    """Average precision as a multiple of the test fraud rate (what a random score gets)."""
    return float(entry["metrics"]["average_precision"] / entry["details"]["fraud_rate_test"])


def _percent(share: float, digits: int = 2) -> str:
    return f"{100 * share:.{digits}f} %"


def readme_table(report: dict[str, Any]) -> str:
    """The README's block: one sentence and one row per algorithm, three decimals."""
    h, s = report["history"], report["split"]
    first = next(iter(report["algorithms"].values()))
    lines = [
        f"Backtest on a {h['days']}-day simulated history (seed {h['seed']}; "
        f"{s['train_days']} days train, {s['delay_days']} days of label delay left out, "
        f"{s['test_days']} days test; {first['metrics']['n_test']:,} test transactions, "
        f"{_percent(first['details']['fraud_rate_test'])} fraud), written by `just report` on "
        f"{report['date'][:10]} from [docs/backtest.json](docs/backtest.json); what each figure "
        "means: [docs/ml.md](docs/ml.md#what-the-figures-mean):",
        "",
        "| algorithm | ROC AUC | average precision | AP ÷ fraud rate | card precision@100 "
        "| precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in report["algorithms"].values():
        m = entry["metrics"]
        lines.append(
            f"| {entry['name']} ({entry['mode']}) | {m['auc_roc']:.3f} "
            f"| {m['average_precision']:.3f} "
            f"| {_lift(entry):.0f}× | {m['card_precision_at_100']:.3f} | {m['precision']:.3f} "
            f"| {m['recall']:.3f} |"
        )
    return "\n".join(lines)


def ml_doc_block(report: dict[str, Any]) -> str:
    """docs/ml.md's block: the data, the full table, recall by fraud type, acceptance, plots."""
    h, s = report["history"], report["split"]
    w = s["windows"]
    first = next(iter(report["algorithms"].values()))
    d = first["details"]
    algos = report["algorithms"]
    lines = [
        f"`simulate_history({h['days']}, seed={h['seed']})` ({h['cards']:,} cards, "
        f"{h['merchants']:,} merchants): {h['transactions']:,} transactions, fraud rate "
        f"{_percent(h['observed_fraud_rate'], 3)}. Train {_day(w['train_start'])} … "
        f"{_last_day(w['train_end'])}, delay {_day(w['train_end'])} … "
        f"{_last_day(w['test_start'])}, test {_day(w['test_start'])} … {_last_day(w['test_end'])}: "
        f"{first['metrics']['n_train']:,} training and {first['metrics']['n_test']:,} test "
        f"transactions ({d['test_positives']:,} frauds, rate {_percent(d['fraud_rate_test'])}). "
        f"Threshold rule: {s['threshold_rule']}; model seed {s['model_seed']}.",
        "",
        "| algorithm | ROC AUC | average precision | AP ÷ fraud rate | card precision@100 "
        "| precision | recall | threshold | alerts per 1,000 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in algos.values():
        m, dd = entry["metrics"], entry["details"]
        lines.append(
            f"| {entry['name']} ({entry['mode']}) | {m['auc_roc']:.4f} "
            f"| {m['average_precision']:.4f} "
            f"| {_lift(entry):.0f}× | {m['card_precision_at_100']:.4f} | {m['precision']:.4f} "
            f"| {m['recall']:.4f} | {m['threshold']:.4f} | {dd['alerts_per_1000']:.1f} |"
        )
    # Easiest first, by the first algorithm's recall.
    by_type = d.get("recall_by_fraud_type", {})
    kinds = sorted(by_type, key=lambda k: -by_type[k])
    if kinds:
        lines += [
            "",
            "Recall at the threshold by fraud type (the same test window):",
            "",
            "| fraud type | " + " | ".join(e["name"] for e in algos.values()) + " |",
            "|---|" + "---|" * len(algos),
        ]
        for kind in kinds:
            cells = [
                f"{e['details']['recall_by_fraud_type'][kind]:.2f}"
                if kind in e["details"].get("recall_by_fraud_type", {})
                else "—"
                for e in algos.values()
            ]
            lines.append(f"| {FRAUD_TYPES.get(kind, kind)} | " + " | ".join(cells) + " |")
    lines += ["", "Acceptance: " + "; ".join(_acceptance(report)) + "."]
    seconds = ", ".join(f"{e['name']} {e['details']['seconds']:.0f} s" for e in algos.values())
    lines += [
        "",
        f"Written by `just report` (`scripts/report.py`) on {report['date']}, every figure in "
        f"[backtest.json](backtest.json): {report['seconds'] / 60:.1f} minutes in all on "
        f"{report['machine']['cores']} cores (simulation {h['seconds']:.0f} s; each backtest, "
        f"features included: {seconds}). The figures are deterministic (fixed seeds, "
        "single-threaded XGBoost).",
        "",
    ]
    for entry in algos.values():
        name = entry["name"]
        for plot in entry["plots"]:
            kind = "precision-recall" if plot.endswith("_pr.png") else "score distribution"
            lines.append(f"![{name} {kind}]({Path(plot).relative_to('docs')})")
    return "\n".join(lines)


def _acceptance(report: dict[str, Any]) -> list[str]:
    out = []
    for algo, figure, bar, text in ACCEPTANCE:
        entry = report["algorithms"][algo]
        value = entry["metrics"][figure]
        need = bar if bar is not None else 5 * entry["details"]["fraud_rate_test"]
        verdict = "met" if value >= need else "**not met**"
        bar_text = "" if bar is not None else f" ({need:.3f})"
        out.append(f"{text}{bar_text}: {value:.3f}, {verdict}")
    return out


def replace_block(text: str, body: str, *, where: str) -> str:
    """``text`` with what lies between the markers replaced by ``body``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"report: {where} has no {START} … {END} block")
    return text[: start + len(START)] + "\n" + body + "\n" + text[end:]


def block(text: str) -> str:
    """What lies between the markers (stripped), for the staleness test."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip()


def rewrite_docs(report: dict[str, Any]) -> None:
    """Rewrite the README's and docs/ml.md's blocks from ``report``."""
    for path, body in ((README, readme_table(report)), (ML_DOC, ml_doc_block(report))):
        text = path.read_text(encoding="utf-8")
        path.write_text(replace_block(text, body, where=str(path)), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the tables from the committed docs/backtest.json; run nothing",
    )
    args = parser.parse_args(argv)
    if not args.render_only:
        from rtfd.ml.progress import StderrProgress

        report = run_report(StderrProgress("report", min_interval_s=5.0))
        JSON_PATH.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report: {JSON_PATH.relative_to(ROOT)} written in {report['seconds']:.0f} s")
    report = json.loads(JSON_PATH.read_text(encoding="utf-8"))
    rewrite_docs(report)
    print("report: tables rewritten in README.md and docs/ml.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
