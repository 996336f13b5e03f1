"""``rtfd train``, ``rtfd models`` and ``rtfd backtest`` (argparse only at import time)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtfd.cli.flags import Number, add_settings_flag, output_dir, output_file

if TYPE_CHECKING:
    from rtfd.config import Settings
    from rtfd.ml.registry import Promotion

# How many of the latest promotions `rtfd models list` prints.
PROMOTIONS_LISTED = 10


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = sub.add_parser(
        "train",
        help="train a model and register it (promoted if at least as good as the live one)",
        description="Train on the enriched Parquet joined with matured labels (default), on a "
        "file (--data), or on a simulated history (--bootstrap, or when there is no data yet).",
    )
    add_settings_flag(train, "--mode", "model_mode", "supervised or unsupervised")
    add_settings_flag(train, "--algo", "model_algo", "xgboost, logreg or iforest")
    add_settings_flag(train, "--threshold-rule", "model_threshold_rule", "f1, precision, budget")
    add_settings_flag(
        train, "--target-precision", "model_target_precision", "for --threshold-rule precision"
    )
    add_settings_flag(
        train, "--alert-budget", "model_alert_budget", "alerts per 1,000 for the budget rule"
    )
    train.add_argument("--data", metavar="PATH", help="transactions file with a label column")
    train.add_argument("--bootstrap", action="store_true", help="train on a simulated history")
    train.add_argument("--force", action="store_true", help="promote even if worse than live")
    train.add_argument(
        "--no-promote", action="store_true", help="register the version but do not promote it"
    )
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_tune_flags(train)
    train.set_defaults(func=cmd_train)

    models = sub.add_parser("models", help="list, show, promote or roll back model versions")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    msub.add_parser("list", help="every version, the live one marked").set_defaults(
        func=cmd_models_list
    )
    show = msub.add_parser("show", help="one version's metrics and manifest (verified)")
    # dest is not "version": that would shadow the global --version flag.
    show.add_argument("model_version", metavar="VERSION", nargs="?", help="default: the live one")
    show.set_defaults(func=cmd_models_show)
    promote = msub.add_parser("promote", help="make a version live (champion/challenger)")
    promote.add_argument("model_version", metavar="VERSION")
    promote.add_argument("--force", action="store_true", help="even if worse than the live one")
    promote.set_defaults(func=cmd_models_promote)
    msub.add_parser("rollback", help="make the previously live version live again").set_defaults(
        func=cmd_models_rollback
    )
    models.set_defaults(func=lambda args, settings: _usage(models))

    bt = sub.add_parser(
        "backtest",
        help="train on one window, skip the label delay, test on the next",
        description="Backtest on a transactions file (CSV or Parquet) with columns "
        "transaction_id, timestamp, user_id, merchant_id, amount, label (location, lat, lon "
        "and channel optional).",
    )
    bt.add_argument("--data", metavar="FILE", required=True, help="transactions with labels")
    bt.add_argument("--train-start", metavar="DATE", help="first training day (YYYY-MM-DD)")
    days = Number(float, lo=0, lo_open=True, hi=36500)
    bt.add_argument("--train-days", type=days, default=21.0, metavar="N")
    bt.add_argument("--delay-days", type=Number(float, lo=0, hi=36500), default=7.0, metavar="N")
    bt.add_argument("--test-days", type=days, default=7.0, metavar="N")
    bt.add_argument("--algo", choices=("xgboost", "logreg", "iforest"), default=None)
    bt.add_argument("--mode", choices=("supervised", "unsupervised"), default=None)
    bt.add_argument("--json", metavar="OUT", help="write the metrics as JSON to OUT")
    bt.add_argument("--plots", metavar="DIR", help="where the PNGs go (default: <data>/backtests)")
    _add_tune_flags(bt)
    bt.set_defaults(func=cmd_backtest)


def _add_tune_flags(parser: argparse.ArgumentParser) -> None:
    from rtfd.ml.tuning import DEFAULT_BUDGET_S, DEFAULT_TRIALS

    parser.add_argument(
        "--tune",
        action="store_true",
        help="search the hyperparameters first (Optuna, on time-ordered folds with the label "
        "delay left out; xgboost and logreg)",
    )
    parser.add_argument(
        "--budget-s",
        type=Number(float, lo=0, lo_open=True, hi=7 * 86_400),
        default=None,
        metavar="N",
        help=f"seconds --tune may search (default {DEFAULT_BUDGET_S:g})",
    )
    parser.add_argument(
        "--trials",
        type=Number(int, lo=1, hi=100_000),
        default=None,
        metavar="N",
        help=f"most trials --tune runs (default {DEFAULT_TRIALS})",
    )


def _tune_spec(args: argparse.Namespace, seed: int) -> Any:
    """The TuneSpec of --tune, --budget-s and --trials (None without --tune)."""
    from rtfd.errors import ConfigError
    from rtfd.ml.tuning import TuneSpec

    if not args.tune:
        if args.budget_s is not None or args.trials is not None:
            raise ConfigError("--budget-s and --trials set the search of --tune: add --tune")
        return None
    spec = TuneSpec(seed=seed)
    if args.budget_s is not None:
        spec = replace(spec, budget_s=args.budget_s)
    if args.trials is not None:
        spec = replace(spec, trials=args.trials)
    return spec


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _progress(name: str) -> Any:
    from rtfd.progress import StderrProgress

    return StderrProgress(f"rtfd {name}")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.ml.train import train_model

    mode = settings.model_mode if args.set_model_mode is not None else None
    algo = settings.model_algo if args.set_model_algo is not None else None
    if mode is None and algo is None:
        algo = settings.model_algo
    result = train_model(
        settings,
        mode=mode,
        algo=algo,
        data=args.data,
        bootstrap=args.bootstrap,
        promote=not args.no_promote,
        force=args.force,
        tune=_tune_spec(args, settings.generator_seed),
        progress=_progress("train"),
    )
    if args.json:
        print(json.dumps(result.__dict__, indent=2, default=str))
        return 0
    m = result.metrics
    print(f"{result.version}: {result.algo} ({result.mode}) trained on {result.source}")
    print(f"  train {result.n_train:,} / validation {result.n_validation:,} transactions, "
          f"{result.seconds:.0f} s")  # fmt: skip
    if "tuning" in result.extra:
        print(f"  {_tuning_line(result.extra['tuning'])}")
    print(f"  validation: ROC AUC {_fmt(m.get('auc_roc'))}, AP {_fmt(m.get('average_precision'))}, "
          f"precision {_fmt(m.get('precision'))}, recall {_fmt(m.get('recall'))} "
          f"at threshold {result.threshold:.4f} ({m.get('threshold_rule')})")  # fmt: skip
    print(f"  {_expected_line(m)}")
    print(f"  {result.decision}")
    return 0


def _tuning_line(t: dict[str, Any]) -> str:
    return (
        f"tuned: {t['trials']} trials ({t['trials_pruned']} pruned) in {t['seconds']:.0f} s on "
        f"{len(t['folds'])} time-ordered folds, fold AP {t['best_score']:.4f} "
        f"(defaults {t['default_score']:.4f})"
    )


def _expected_line(m: dict[str, Any]) -> str:
    """Calibration and what the threshold promises, from a model's metrics."""
    method = (m.get("calibration") or {}).get("method")
    if method is None:
        return "scores not calibrated (" + str((m.get("calibration") or {}).get("reason")) + ")"
    per_day = m.get("expected_alerts_per_day")
    rate = m.get("live_rate_per_s")
    day = (
        f", about {per_day:,.0f} alerts a day at {rate:g} transactions/s"
        if per_day is not None and rate is not None
        else ""
    )
    return (
        f"scores calibrated ({method}): expected precision {_fmt(m.get('expected_precision'))} "
        f"at the threshold{day}"
    )


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.ml.registry import PROMOTION_RULE, Registry

    registry = Registry(settings.models_dir)
    current = registry.current()
    versions = registry.versions()
    if not versions:
        print(f"no model in {settings.models_dir} (run `rtfd train`)")
        return 0
    print(f"{'':2}{'version':9}{'algo':9}{'mode':14}{'AP':>8}{'AUC':>8}{'threshold':>11}  created")
    for info in (registry.info(v) for v in versions):  # oldest first; digests checked
        mark = "*" if info.version == current else " "
        if info.note:
            note = info.note if info.note.startswith("unreadable") else f"unreadable: {info.note}"
            print(f"{mark} {info.version:9}({note})")
            continue
        print(
            f"{mark} {info.version:9}{info.algo or '?':9}{info.mode or '?':14}"
            f"{_fmt(info.metrics.get('average_precision')):>8}"
            f"{_fmt(info.metrics.get('auc_roc')):>8}"
            f"{_fmt(info.threshold):>11}  {info.created_at or ''}"
        )
    promotions = registry.promotions()
    if promotions:
        print(f"\npromotions (newest last; rule: {PROMOTION_RULE}):")
        for p in promotions[-PROMOTIONS_LISTED:]:
            print(f"  {p.at or '?':26}{p.version:7}{_promotion_line(p)}")
    return 0


def _promotion_line(p: Promotion) -> str:
    """What decided a promotion, one line: each holdout's two figures, or the reason."""
    if p.comparison is None or not p.comparison.holdouts:
        return p.reason
    c = p.comparison
    forced = "forced; " if p.forced else ""
    return f"{forced}vs {c.champion}: {c.describe()}"


def cmd_models_show(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.ml.registry import Registry

    registry = Registry(settings.models_dir)
    model = registry.load(args.model_version)
    doc = model.describe()
    doc["live"] = model.version == registry.current()
    doc["promotions"] = [asdict(p) for p in registry.promotions() if p.version == model.version]
    doc["manifest"] = model.manifest
    print(json.dumps(doc, indent=2, default=str))
    return 0


def cmd_models_promote(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.ml.registry import Registry

    print(Registry(settings.models_dir).promote(args.model_version, force=args.force))
    return 0


def cmd_models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.ml.registry import Registry

    version = Registry(settings.models_dir).rollback()
    print(f"rolled back: {version} is live")
    return 0


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from pandas.errors import OutOfBoundsDatetime, OutOfBoundsTimedelta

    from rtfd.config import short_path
    from rtfd.errors import DataError
    from rtfd.ml.backtest import JSON_KEYS, make_windows, run_backtest, write_json
    from rtfd.ml.data import read_transactions

    # Every argument is checked before the data is read and the model trained.
    if args.json is not None:
        output_file(args.json, "--json")
    plots = output_dir(args.plots, "--plots") if args.plots is not None else (
        settings.data_dir / "backtests" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    )  # fmt: skip
    try:
        start = datetime.strptime(args.train_start, "%Y-%m-%d").date() if args.train_start else None
    except ValueError as e:
        raise DataError(f"--train-start {args.train_start!r}: expected YYYY-MM-DD") from e
    tune = _tune_spec(args, settings.generator_seed)
    progress = _progress("backtest")
    progress(f"reading {short_path(args.data)}", None)
    frame = read_transactions(args.data)
    try:
        make_windows(
            frame["timestamp"],
            train_start=start,
            train_days=args.train_days,
            delay_days=args.delay_days,
            test_days=args.test_days,
        )
    except (OverflowError, OutOfBoundsDatetime, OutOfBoundsTimedelta) as e:
        raise DataError(
            f"--train-start and the --*-days put a window outside the dates pandas can hold "
            f"(1677 to 2262): {e}"
        ) from e
    algo = args.algo or ("iforest" if args.mode == "unsupervised" else settings.model_algo)
    result = run_backtest(
        frame,
        train_start=start,
        train_days=args.train_days,
        delay_days=args.delay_days,
        test_days=args.test_days,
        algo=algo,
        mode=args.mode,
        rule=settings.model_threshold_rule,
        target_precision=settings.model_target_precision,
        alert_budget=settings.model_alert_budget,
        seed=settings.generator_seed,
        tune=tune,
        plots_dir=plots,
        progress=progress,
    )
    w = result.windows
    print(f"backtest {result.algo} ({result.mode}): train {w.train_start.date()} .. "
          f"{w.train_end.date()}, delay, test {w.test_start.date()} .. {w.test_end.date()} "
          "(end exclusive)")  # fmt: skip
    if "tuning" in result.details:
        print(f"  {_tuning_line(result.details['tuning'])}")
    for key in JSON_KEYS:
        print(f"  {key:32}{_fmt(result.metrics[key])}")
    print(f"  calibration: {result.details['calibration'].get('method') or 'none'}")
    print(f"  plots: {', '.join(str(p) for p in result.plots)}")
    if args.json is not None:
        write_json(result, Path(args.json))
        print(f"  metrics written to {args.json}", file=sys.stderr)
    return 0
