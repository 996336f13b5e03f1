"""The backtest behind the tables in README.md and docs/ml.md: ``just report``.

    .venv/bin/python scripts/report.py               # run it, then rewrite JSON, plots, tables
    .venv/bin/python scripts/report.py --tune        # the same, plus tuned XGBoost (~15 min)
    .venv/bin/python scripts/report.py --render-only # rewrite the tables from docs/backtest.json

Simulates the 60-day history of the README (seed 42, 10,000 cards, 2,000 merchants), writes it
to Parquet and reads it back as ``rtfd backtest --data`` would, then backtests each algorithm
with ``rtfd.ml.backtest.run_backtest`` and the CLI's defaults: 21 days train, 7 days of label
delay left out, 7 days test ending with the data's last day, threshold by best F1. Every figure,
the command, the date, the library versions and the seconds taken go to docs/backtest.json; the
PR and score plots to docs/img/; the tables between ``<!-- backtest-table:start -->`` and
``<!-- backtest-table:end -->`` in README.md and docs/ml.md are rendered from that JSON alone,
so tests/unit/test_report_tables.py can check that the committed tables are the committed
JSON's. About 2 minutes on 2 cores, 4 GB of memory at peak.

``--tune`` also backtests XGBoost with ``--tune`` on the same split (:data:`TUNE_SPEC`: a trial
budget, with a time budget wide enough that the trials, not the clock, stop the search, so the
figures do not depend on the machine's load) and writes the default-vs-tuned comparison to the
JSON's ``tuning`` and to docs/ml.md between ``<!-- tuning-table:start -->`` and
``<!-- tuning-table:end -->``. A run without ``--tune`` keeps the committed ``tuning`` section
(it carries its own date, commit and the default figures it was compared with).
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
TUNE_START = "<!-- tuning-table:start -->"
TUNE_END = "<!-- tuning-table:end -->"


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
# The tuned run of --tune: 40 trials, seed 42; the 30-minute budget is a safety net only.
TUNE_SPEC = {"budget_s": 1800.0, "trials": 40, "seed": 42}
TUNED_ALGO = "xgboost"
FRAUD_TYPES = {
    "account_takeover": "account takeover",
    "card_testing": "card testing",
    "amount_outlier": "amount outlier",
    "stolen_card_spree": "stolen-card spree",
    "compromised_merchant": "compromised merchant",
}


def run_report(progress: Callable[[str, float | None], None], *, tune: bool) -> dict[str, Any]:
    """Simulate, backtest every algorithm (and tuned XGBoost with ``tune``), save the plots;
    every figure in one dict."""
    from rtfd.config import Settings
    from rtfd.generator.history import write_history
    from rtfd.ml.backtest import BacktestResult, run_backtest
    from rtfd.ml.data import read_transactions, simulated_history
    from rtfd.ml.registry import library_versions
    from rtfd.ml.tuning import TuneSpec
    from rtfd.progress import scaled

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
    report["split"]["alert_budget_per_1000"] = defaults.model_alert_budget
    runs = [*ALGORITHMS, *([TUNED_ALGO] if tune else [])]
    share = 0.95 / len(runs)

    def backtest(i: int, algo: str, spec: TuneSpec | None) -> BacktestResult:
        return run_backtest(
            frame,
            train_days=SPLIT["train_days"],
            delay_days=SPLIT["delay_days"],
            test_days=SPLIT["test_days"],
            algo=algo,
            rule=defaults.model_threshold_rule,
            target_precision=defaults.model_target_precision,
            alert_budget=defaults.model_alert_budget,
            seed=defaults.generator_seed,
            tune=spec,
            plots_dir=IMG_DIR if spec is None else None,
            progress=scaled(progress, 0.05 + i * share, 0.05 + (i + 1) * share),
        )

    for i, algo in enumerate(ALGORITHMS):
        result = backtest(i, algo, None)
        report["split"]["windows"] = result.windows.to_dict()
        report["algorithms"][algo] = {
            "name": ALGORITHMS[algo],
            "mode": result.mode,
            "metrics": result.to_json(),
            "details": result.details,
            "plots": [str(p.relative_to(ROOT)) for p in result.plots],
        }
    # The default run's time (what `just report` costs); a tuned run records its own.
    report["seconds"] = round(time.monotonic() - started, 1)
    if tune:
        tune_started = time.monotonic()
        spec = TuneSpec(
            budget_s=float(TUNE_SPEC["budget_s"]),
            trials=int(TUNE_SPEC["trials"]),
            seed=int(TUNE_SPEC["seed"]),
        )
        tuned = backtest(len(ALGORITHMS), TUNED_ALGO, spec)
        default = report["algorithms"][TUNED_ALGO]
        report["tuning"] = {
            "command": "just report --tune (scripts/report.py --tune)",
            "date": report["date"],
            "git_commit": report["git_commit"],
            "algo": TUNED_ALGO,
            "name": ALGORITHMS[TUNED_ALGO],
            "spec": TUNE_SPEC,
            "default": {"metrics": default["metrics"], "params": default["details"]["params"]},
            "tuned": {
                "metrics": tuned.to_json(),
                "params": tuned.details["params"],
                "details": {k: v for k, v in tuned.details.items() if k != "tuning"},
            },
            "search": tuned.details["tuning"],
            "seconds": round(time.monotonic() - tune_started, 1),
        }
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


def _cell(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


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
        "| card precision@100, new cards | daily budget precision | precision | recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["algorithms"].values():
        m = entry["metrics"]
        lines.append(
            f"| {entry['name']} ({entry['mode']}) | {m['auc_roc']:.3f} "
            f"| {m['average_precision']:.3f} "
            f"| {_lift(entry):.0f}× | {m['card_precision_at_100']:.3f} "
            f"| {m['card_precision_at_100_new_cards']:.3f} | {_cell(m['budget_precision'], 3)} "
            f"| {m['precision']:.3f} | {m['recall']:.3f} |"
        )
    tuning = report.get("tuning")
    if tuning:
        d, t = tuning["default"]["metrics"], tuning["tuned"]["metrics"]
        lines += [
            "",
            f"Tuned {tuning['name']} (`--tune`, {tuning['search']['trials']} trials on "
            f"time-ordered folds): average precision {t['average_precision']:.3f} against "
            f"{d['average_precision']:.3f} with the defaults "
            "([details](docs/ml.md#tuning-measured)).",
        ]
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
        "| card precision@100, new cards | daily budget precision | precision | recall "
        "| threshold | alerts per 1,000 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in algos.values():
        m, dd = entry["metrics"], entry["details"]
        lines.append(
            f"| {entry['name']} ({entry['mode']}) | {m['auc_roc']:.4f} "
            f"| {m['average_precision']:.4f} "
            f"| {_lift(entry):.0f}× | {m['card_precision_at_100']:.4f} "
            f"| {m['card_precision_at_100_new_cards']:.4f} | {_cell(m['budget_precision'], 4)} "
            f"| {m['precision']:.4f} | {m['recall']:.4f} | {m['threshold']:.4f} "
            f"| {dd['alerts_per_1000']:.1f} |"
        )
    budget = s.get("alert_budget_per_1000")
    if budget is not None:
        per_day = d.get("budget_alerts_per_day")
        lines += [
            "",
            f"Daily budget: {budget:g} alerts per 1,000 transactions (the `model_alert_budget` "
            f"setting), about {per_day:,.0f} alerts a test day."
            if per_day is not None
            else f"Daily budget: {budget:g} alerts per 1,000 transactions.",
        ]
    lines += ["", *calibration_tables(report)]
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


def calibration_tables(report: dict[str, Any]) -> list[str]:
    """How probable the calibrated scores are: the method each algorithm's data chose, the
    test window's Brier score with and without it, and the reliability deciles."""
    algos = report["algorithms"]
    lines = [
        "Calibration (fitted on the validation window, measured on the test window):",
        "",
        "| algorithm | calibration | Brier | Brier, uncalibrated | ECE | expected precision "
        "| precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in algos.values():
        c, m = entry["details"]["calibration"], entry["metrics"]
        lines.append(
            f"| {entry['name']} ({entry['mode']}) | {c.get('method') or 'none'} "
            f"| {c['test']['brier']:.5f} | {c['test_uncalibrated']['brier']:.5f} "
            f"| {c['test']['ece']:.5f} | {_cell(c.get('expected_precision_validation'), 4)} "
            f"| {m['precision']:.4f} |"
        )
    lines += [
        "",
        "Reliability on the test window — mean predicted probability / observed fraud rate in "
        "each tenth of the transactions, ranked by calibrated score:",
        "",
        "| decile | " + " | ".join(e["name"] for e in algos.values()) + " |",
        "|---|" + "---|" * len(algos),
    ]
    for i in range(10):
        cells = []
        for e in algos.values():
            b = e["details"]["calibration"]["test"]["deciles"][i]
            cells.append(f"{b['mean_predicted']:.4f} / {b['observed_rate']:.4f}")
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return lines


def tuning_block(report: dict[str, Any]) -> str:
    """docs/ml.md's tuning block: defaults against tuned on the same split, the parameters,
    the folds and how long the search took (from the JSON's ``tuning``)."""
    t = report.get("tuning")
    if not t:
        return "Not measured yet: run `just report --tune`."
    search, spec = t["search"], t["spec"]
    rows = (("defaults", t["default"]["metrics"], search["default_score"]),
            ("tuned", t["tuned"]["metrics"], search["best_score"]))  # fmt: skip
    lines = [
        f"{t['name']} on the split above, defaults against `--tune` ({search['trials']} trials "
        f"completed and {search['trials_pruned']} pruned, of a budget of {spec['trials']} "
        f"trials or {spec['budget_s']:.0f} s, seed {spec['seed']}; stopped by the "
        f"{search['stopped_by']}; the search took {search['seconds']:.0f} s):",
        "",
        "| algorithm | fold AP | ROC AUC | average precision | card precision@100 "
        "| card precision@100, new cards | daily budget precision | precision | recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m, fold_ap in rows:
        lines.append(
            f"| {t['name']}, {label} | {fold_ap:.4f} | {m['auc_roc']:.4f} "
            f"| {m['average_precision']:.4f} | {m['card_precision_at_100']:.4f} "
            f"| {m['card_precision_at_100_new_cards']:.4f} | {_cell(m['budget_precision'], 4)} "
            f"| {m['precision']:.4f} | {m['recall']:.4f} |"
        )
    capped = ", capped at half the window" if search["gap_s"] < search["label_delay_s"] else ""
    lines += [
        "",
        "| hyperparameter | searched | default | tuned |",
        "|---|---|---|---|",
    ]
    for name, space in search["space"].items():
        scale = " (log)" if space["type"].endswith("_log") else ""
        step = f", step {space['step']}" if "step" in space else ""
        lines.append(
            f"| `{name}` | {space['low']:g} … {space['high']:g}{scale}{step} "
            f"| {_param(search['defaults'][name])} | {_param(search['best_params'][name])} |"
        )
    lines += [
        "",
        "Folds (expanding window over the fitting part, "
        f"{search['gap_s'] / 86_400:.2f} days left out between each fold's train and "
        f"validation part: the label delay{capped}), and each one's AP with the defaults and "
        "tuned:",
        "",
        "| fold | train | validation | validation frauds | AP, defaults | AP, tuned |",
        "|---|---|---|---|---|---|",
    ]
    for i, fold in enumerate(search["folds"]):
        lines.append(
            f"| {i + 1} | {_day(fold['train'][0])} … {fold['train'][1][:16]} "
            f"| {fold['validation'][0][:16]} … {fold['validation'][1][:16]} "
            f"| {fold['validation_positives']:,} | {search['default_fold_scores'][i]:.4f} "
            f"| {search['best_fold_scores'][i]:.4f} |"
        )
    gain = t["tuned"]["metrics"]["average_precision"] - t["default"]["metrics"]["average_precision"]
    verdict = "met" if gain > 0 else "**not met**"
    lines += [
        "",
        f"Acceptance: tuned {t['name']} average precision above the defaults' on the test "
        f"window: {gain:+.4f}, {verdict}.",
        "",
        f"Written by `{t['command']}` on {t['date']} (commit {str(t['git_commit'])[:12]}); "
        f"the tuned backtest took {t['seconds'] / 60:.1f} minutes, search included.",
    ]
    return "\n".join(lines)


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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


def replace_block(
    text: str, body: str, *, where: str, markers: tuple[str, str] = (START, END)
) -> str:
    """``text`` with what lies between the markers replaced by ``body``."""
    start, end = text.find(markers[0]), text.find(markers[1])
    if start < 0 or end < start:
        raise SystemExit(f"report: {where} has no {markers[0]} … {markers[1]} block")
    return text[: start + len(markers[0])] + "\n" + body + "\n" + text[end:]


def block(text: str, markers: tuple[str, str] = (START, END)) -> str:
    """What lies between the markers (stripped), for the staleness test."""
    start, end = text.index(markers[0]) + len(markers[0]), text.index(markers[1])
    return text[start:end].strip()


def rewrite_docs(report: dict[str, Any]) -> None:
    """Rewrite the README's and docs/ml.md's blocks from ``report``."""
    blocks = (
        (README, readme_table(report), (START, END)),
        (ML_DOC, ml_doc_block(report), (START, END)),
        (ML_DOC, tuning_block(report), (TUNE_START, TUNE_END)),
    )
    for path, body, markers in blocks:
        text = path.read_text(encoding="utf-8")
        path.write_text(
            replace_block(text, body, where=str(path), markers=markers), encoding="utf-8"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the tables from the committed docs/backtest.json; run nothing",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="also backtest tuned XGBoost (about 15 more minutes on 2 cores); without it the "
        "committed tuning figures are kept",
    )
    args = parser.parse_args(argv)
    if not args.render_only:
        from rtfd.progress import StderrProgress

        started = time.monotonic()
        report = run_report(StderrProgress("report", min_interval_s=5.0), tune=args.tune)
        if not args.tune and JSON_PATH.exists():
            previous = json.loads(JSON_PATH.read_text(encoding="utf-8")).get("tuning")
            if previous:
                report["tuning"] = previous
        JSON_PATH.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(
            f"report: {JSON_PATH.relative_to(ROOT)} written in {time.monotonic() - started:.0f} s"
        )
    report = json.loads(JSON_PATH.read_text(encoding="utf-8"))
    rewrite_docs(report)
    print("report: tables rewritten in README.md and docs/ml.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
