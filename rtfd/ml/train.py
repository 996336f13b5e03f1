"""``rtfd train``: fit a model on a time-ordered split, choose its threshold, register it.

1. Data: by default the enriched Parquet (served features) joined with matured labels; a file
   given with ``--data`` (raw transactions with a label, or a table that already has the
   features); with neither — or with ``--bootstrap`` — a simulated history.
2. Split by time: the first 75 % of transactions train, the last 25 % validate. Never shuffled.
3. With ``--tune``, search the hyperparameters on time-ordered folds of the training part
   (:mod:`rtfd.ml.tuning`).
4. Fit (:mod:`rtfd.ml.models`), calibrate the scores on validation (:mod:`rtfd.ml.calibration`),
   choose the threshold on validation by the configured rule (:mod:`rtfd.ml.thresholds`),
   compute validation metrics and what the threshold promises live.
5. Save a new registry version and promote it if it is at least as good as the live one on the
   newer of the two holdouts (champion/challenger, ``--force`` to override).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rtfd.errors import ConfigError, DataError, RtfdError
from rtfd.features.names import FEATURE_NAMES
from rtfd.progress import Progress, no_progress, scaled

if TYPE_CHECKING:
    from rtfd.config import Settings
    from rtfd.ml.calibration import ScoreMap
    from rtfd.ml.models import Model
    from rtfd.ml.preprocess import Preprocessor
    from rtfd.ml.thresholds import ThresholdChoice
    from rtfd.ml.tuning import TuneSpec

ALGOS = {"xgboost": "supervised", "logreg": "supervised", "iforest": "unsupervised"}
DEFAULT_ALGO = {"supervised": "xgboost", "unsupervised": "iforest"}
VALIDATION_SHARE = 0.25
HOLDOUT_MAX_ROWS = 100_000
CALIBRATION_MAX_ROWS = 200_000
BOOTSTRAP_DAYS = 21
BOOTSTRAP_USERS = 3_000
log = logging.getLogger(__name__)

# Fewer matured frauds than this in the served history and training falls back to simulation.
MIN_SERVED_FRAUDS = 50


class TrainingCancelled(RtfdError):
    """Training was stopped (the app quit) before its model was saved: nothing was written."""

    title = "Training cancelled"


def resolve_mode_algo(
    mode: str | None, algo: str | None, *, default_mode: str, default_algo: str
) -> tuple[str, str]:
    """The (mode, algo) pair: the algorithm implies the mode; an explicit conflict is an error."""
    if algo is not None and algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r} (xgboost, logreg or iforest)")
    if mode is not None and mode not in DEFAULT_ALGO:
        raise ConfigError(f"unknown mode {mode!r} (supervised or unsupervised)")
    if algo is not None:
        if mode is not None and ALGOS[algo] != mode:
            raise ConfigError(f"--algo {algo} is {ALGOS[algo]}, not {mode}")
        return ALGOS[algo], algo
    if mode is not None:
        return mode, default_algo if ALGOS.get(default_algo) == mode else DEFAULT_ALGO[mode]
    return ALGOS.get(default_algo, default_mode), default_algo


@dataclass
class FittedModel:
    """A model fitted on the training part of a frame, with its validation results."""

    model: Model
    preprocessor: Preprocessor
    choice: ThresholdChoice
    score_map: ScoreMap
    metrics: dict[str, Any]
    validation: pd.DataFrame
    validation_scores: np.ndarray
    n_train: int
    params: dict[str, Any] = field(default_factory=dict)
    calibration_report: dict[str, Any] = field(default_factory=dict)

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The score map as threshold.json stores it (``calibration``)."""
        return self.score_map.to_dict()

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores in [0, 1] of a frame with the feature columns (calibrated when the model is)."""
        raw = self.model.raw(self.preprocessor.transform(frame[FEATURE_NAMES].to_numpy()))
        return self.score_map.apply(raw)


def time_split(frame: pd.DataFrame, share: float = VALIDATION_SHARE) -> tuple[pd.DataFrame, ...]:
    """(train, validation): the last ``share`` of transactions by time validate."""
    ordered = frame.sort_values(["timestamp", "transaction_id"], kind="stable")
    cut = round(len(ordered) * (1.0 - share))
    return ordered.iloc[:cut], ordered.iloc[cut:]


def fit_and_select(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    mode: str,
    algo: str,
    rule: str = "f1",
    target_precision: float = 0.9,
    alert_budget: float = 5.0,
    seed: int = 42,
    params: dict[str, Any] | None = None,
    rate_per_s: float | None = None,
    progress: Progress = no_progress,
) -> FittedModel:
    """Fit on ``train``, calibrate, choose the threshold and measure on ``validation``
    (time-ordered). ``params`` override the algorithm's default hyperparameters;
    ``rate_per_s`` (the live traffic's rate) turns the threshold's alert share into expected
    alerts per day."""
    from rtfd.ml.calibration import ScoreMap, fit_calibration
    from rtfd.ml.metrics import summary
    from rtfd.ml.models import default_params, fit_model
    from rtfd.ml.preprocess import Preprocessor
    from rtfd.ml.thresholds import choose_threshold, expected_at

    if len(train) == 0 or len(validation) == 0:
        raise DataError("not enough transactions to split into training and validation")
    y_train = train["label"].to_numpy() if "label" in train else None
    if mode == "supervised" and (y_train is None or (y_train > 0).sum() == 0):
        raise DataError(
            "no fraud label in the training window: supervised training needs some "
            "(use --mode unsupervised, or more data)"
        )
    X_train = train[FEATURE_NAMES].to_numpy(dtype=np.float64)
    linear = algo != "xgboost"
    pre = Preprocessor.fit(X_train, list(FEATURE_NAMES), log=linear, standardise=linear)
    Xt = pre.transform(X_train)
    model = fit_model(
        algo,
        Xt,
        y_train if mode == "supervised" else None,
        seed=seed,
        progress=scaled(progress, 0.0, 0.9),
        params=params,
    )
    score_map = ScoreMap()
    if mode == "unsupervised":
        rows = Xt
        if len(Xt) > CALIBRATION_MAX_ROWS:
            rng = np.random.default_rng(seed)
            rows = Xt[rng.choice(len(Xt), size=CALIBRATION_MAX_ROWS, replace=False)]
        raw = model.raw(rows)
        score_map = ScoreMap(float(raw.min()), float(raw.max()))
    progress("scoring and calibrating the validation window", 0.92)
    X_val = pre.transform(validation[FEATURE_NAMES].to_numpy(dtype=np.float64))
    y_val = validation["label"].to_numpy() if "label" in validation else None
    raw_val = model.raw(X_val)
    calibration = fit_calibration(score_map.normalise(raw_val), y_val)
    score_map = score_map.with_calibrator(calibration.calibrator)
    scores = score_map.apply(raw_val)
    choice = choose_threshold(
        scores, y_val, rule, target_precision=target_precision, alert_budget=alert_budget
    )
    metrics = summary(
        np.zeros(len(scores)) if y_val is None else y_val,
        scores,
        choice.threshold,
        timestamps=validation["timestamp"] if "user_id" in validation else None,
        cards=validation["user_id"].to_numpy() if "user_id" in validation else None,
    )
    expected = expected_at(
        scores, choice.threshold, calibrated=score_map.method is not None, rate_per_s=rate_per_s
    )
    metrics.update(
        calibration=calibration.report,
        expected_precision=expected.precision,
        expected_alerts_per_day=expected.alerts_per_day,
        live_rate_per_s=rate_per_s,
    )
    progress("validation done", 1.0)
    return FittedModel(
        model,
        pre,
        choice,
        score_map,
        metrics,
        validation,
        scores,
        len(train),
        params={**default_params(algo), **(params or {})},
        calibration_report=calibration.report,
    )


@dataclass
class TrainResult:
    """What ``rtfd train`` did."""

    version: str
    promoted: bool
    decision: str
    mode: str
    algo: str
    threshold: float
    metrics: dict[str, Any]
    n_train: int
    n_validation: int
    source: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def bootstrap_cards(settings: Settings) -> int:
    """Cards of the bootstrap history: the first cards of the live world, as many as the
    configured rate makes active, at most :data:`BOOTSTRAP_USERS` (a sample of the live cards,
    each with the same behaviour: same seed, same merchants)."""
    from rtfd.generator.live import cards_for_rate

    return min(cards_for_rate(settings), BOOTSTRAP_USERS)


def _bootstrap_history(settings: Settings, progress: Progress) -> pd.DataFrame:
    """A simulated history that looks like what the live generator will send.

    The live generator is a time-lapse (``generator_time_scale``), so the history is simulated
    with the same ``time_scale``: velocity and recency features then have the same scale in
    training as in serving. Its cards are a sample of the live world's (same seed and merchants,
    so each card behaves as it does live).
    """
    from rtfd.ml.data import simulated_history

    scale = settings.generator_time_scale
    span = timedelta(days=BOOTSTRAP_DAYS) / scale
    now = datetime.now(UTC).replace(microsecond=0)
    return simulated_history(
        BOOTSTRAP_DAYS,
        seed=settings.generator_seed,
        users=bootstrap_cards(settings),
        merchants=settings.generator_merchants,
        fraud_rate=max(settings.generator_fraud_rate, 0.005),
        start=now - span,
        time_scale=scale,
        progress=progress,
    )


def training_frame(
    settings: Settings,
    data: pd.DataFrame | Path | str | None,
    *,
    bootstrap: bool = False,
    progress: Progress = no_progress,
) -> tuple[pd.DataFrame, str]:
    """The labelled feature table to train on, and a description of where it came from."""
    from rtfd.ml.data import has_features, labelled_features, read_transactions
    from rtfd.query.lake_reads import read_training_table

    delay_s = settings.label_maturity_days * 86_400.0
    fallback = ""
    from rtfd.lake import visible_files

    if data is None and not bootstrap and visible_files(settings.enriched_dir):
        progress("reading enriched Parquet and matured labels", 0.0)
        try:
            frame = read_training_table(settings)
        except DataError as e:
            fallback = e.message
        else:
            frauds = int(frame["label"].sum())
            if frauds >= MIN_SERVED_FRAUDS:
                return frame, f"enriched Parquet in {settings.enriched_dir}"
            fallback = (
                f"only {frauds} matured fraud labels in the served history "
                f"(at least {MIN_SERVED_FRAUDS} needed)"
            )
        # A young appliance has too few matured labels to learn from: say so, and train on a
        # simulated history instead of failing (the next retrain will use the served data).
        progress(f"{fallback}; training on a simulated history instead", 0.0)
        log.warning("%s; training on a simulated history instead", fallback)
    if data is None:
        history = _bootstrap_history(settings, scaled(progress, 0.0, 0.5))
        source = f"simulated history ({BOOTSTRAP_DAYS} days, seed {settings.generator_seed})"
        if fallback:
            source += f" — {fallback}"
    elif isinstance(data, pd.DataFrame):
        history, source = data, "a data frame"
    else:
        history = read_transactions(data, required=("transaction_id", "timestamp", "label"))
        source = str(data)
    if "label" not in history.columns:
        raise DataError(f"{source}: no label column to train on")
    if has_features(history):
        for col in ("transaction_id", "timestamp"):
            if col not in history.columns:
                raise DataError(f"{source}: missing column {col}")
        frame = history.copy()
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        return frame, source
    progress(f"computing features of {len(history):,} transactions", 0.5)
    return labelled_features(history, label_delay_s=delay_s), source


def train_model(
    settings: Settings,
    *,
    mode: str | None = None,
    algo: str | None = None,
    data: pd.DataFrame | Path | str | None = None,
    bootstrap: bool = False,
    promote: bool = True,
    force: bool = False,
    tune: TuneSpec | None = None,
    progress: Progress = no_progress,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train, register and (champion/challenger permitting) promote a model.

    ``tune`` searches the hyperparameters first on time-ordered folds of the training part
    (:mod:`rtfd.ml.tuning`); what it found and how is recorded in the manifest.

    ``should_stop`` is asked at every progress step until the model is saved; when it says yes,
    :class:`TrainingCancelled` is raised and the registry is left untouched. Once saving has
    begun the run completes (the save is atomic and takes a moment), so a stop never leaves a
    half-registered version.
    """
    from rtfd.features.arithmetic import DEFAULT_CONFIG
    from rtfd.features.merchant_risk import DEFAULT_PERIOD_S
    from rtfd.ml.reference import build_reference
    from rtfd.ml.registry import PromotionRefused, Registry

    started = time.monotonic()
    report = progress

    def checked(message: str, fraction: float | None) -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelled(
                "training was stopped before its model was saved; the registry is unchanged"
            )
        report(message, fraction)

    progress = checked
    mode, algo = resolve_mode_algo(
        mode, algo, default_mode=settings.model_mode, default_algo=settings.model_algo
    )
    if tune is not None:
        from rtfd.ml.tuning import search_space

        search_space(algo)  # an algorithm --tune cannot search is refused before any work
    frame, source = training_frame(
        settings, data, bootstrap=bootstrap, progress=scaled(progress, 0.0, 0.3)
    )
    train, validation = time_split(frame)
    delay_s = settings.label_maturity_days * 86_400.0
    tuned = None
    fit_from = 0.3
    if tune is not None:
        from rtfd.ml.tuning import tune as search

        fit_from = 0.75
        tuned = search(
            train,
            algo=algo,
            label_delay_s=delay_s,
            spec=tune,
            progress=scaled(progress, 0.3, fit_from),
        )
    progress(f"training {algo} on {len(train):,} transactions", fit_from)
    fitted = fit_and_select(
        train,
        validation,
        mode=mode,
        algo=algo,
        rule=settings.model_threshold_rule,
        target_precision=settings.model_target_precision,
        alert_budget=settings.model_alert_budget,
        seed=settings.generator_seed,
        params=tuned.best_params if tuned is not None else None,
        rate_per_s=settings.generator_rate,
        progress=scaled(progress, fit_from, 0.9),
    )
    metrics = {
        **fitted.metrics,
        "n_train": len(train),
        "n_validation": len(validation),
        "train_positives": int((train["label"] > 0).sum()),
        "threshold": fitted.choice.threshold,
        "threshold_rule": fitted.choice.rule,
        "tuned": tuned is not None,
    }
    ts = frame["timestamp"]
    holdout_cols = [*FEATURE_NAMES, "label", "timestamp"]
    holdout = validation[holdout_cols].iloc[-HOLDOUT_MAX_ROWS:].reset_index(drop=True)
    # What the monitor compares the live traffic with (drift): plain JSON, covered by the manifest.
    reference = build_reference(
        train[FEATURE_NAMES].to_numpy(dtype=np.float64), FEATURE_NAMES, fitted.validation_scores
    )
    progress("saving the model version", 0.92)
    progress = report  # from here on the run completes: no half-registered version
    registry = Registry(settings.models_dir)
    version = registry.save(
        model=fitted.model,
        preprocessor=fitted.preprocessor,
        features=list(FEATURE_NAMES),
        threshold={
            "threshold": fitted.choice.threshold,
            "mode": mode,
            "algo": algo,
            "rule": fitted.choice.rule,
            "choice": fitted.choice.to_dict(),
            "calibration": fitted.calibration,
        },
        metrics=metrics,
        holdout=holdout,
        extra={
            "data": {
                "source": source,
                "start": ts.min().isoformat(),
                "end": ts.max().isoformat(),
                "rows": len(frame),
                "positives": int((frame["label"] > 0).sum()),
                "validation_start": validation["timestamp"].min().isoformat(),
            },
            "kernel": DEFAULT_CONFIG.to_dict(),
            # The live time-lapse the model was trained for (velocity features scale with it):
            # known for the served Parquet and the simulated history, both in the generator's
            # time-lapse; a file or frame runs in its own time, which rtfd cannot know.
            "time_scale": settings.generator_time_scale if data is None else None,
            "merchant_risk": {
                "label_delay_s": delay_s,
                "period_s": DEFAULT_PERIOD_S,
            },
            "params": fitted.params,
            **({"tuning": tuned.to_dict()} if tuned is not None else {}),
        },
        reference=reference.to_dict(),
    )
    promoted, decision = False, "not promoted (--no-promote)"
    if promote:
        progress("champion/challenger check", 0.96)
        try:
            decision = registry.promote(version, force=force)
            promoted = True
        except PromotionRefused as e:
            decision = e.message
    progress(f"{version} saved", 1.0)
    return TrainResult(
        version=version,
        promoted=promoted,
        decision=decision,
        mode=mode,
        algo=algo,
        threshold=fitted.choice.threshold,
        metrics=metrics,
        n_train=len(train),
        n_validation=len(validation),
        source=source,
        seconds=time.monotonic() - started,
        extra={"tuning": tuned.to_dict()} if tuned is not None else {},
    )


def ensure_bootstrap_model(settings: Settings, progress: Progress = no_progress) -> str:
    """The live version; when the registry has none, train one on a simulated history first."""
    from rtfd.ml.registry import Registry

    registry = Registry(settings.models_dir)
    current = registry.current()
    if current is not None:
        return current
    result = train_model(
        settings, mode="supervised", algo="xgboost", bootstrap=True, force=True, progress=progress
    )
    return result.version
