"""Hyperparameter search on time-ordered folds: ``rtfd train --tune``, ``rtfd backtest --tune``.

The search runs on the rows the model is then fitted on (the first 75 % of the training data),
so the validation window — threshold, calibration, the champion/challenger holdout — and a
backtest's test window are never seen by it. Those rows are cut into expanding-window folds by
event time, with the label delay left out between each fold's train and validation part (a
model trained at time t has labels only up to t - delay, and scores from t); never a random
split::

    |<- train 1 ->|<- delay ->|<- val 1 ->|
    |<------ train 2 ------>|<- delay ->|<- val 2 ->|
    |<----------- train 3 ----------->|<- delay ->|<- val 3 ->|

With K folds over [t0, t1) and a gap D, each validation part is V = (t1 - t0 - D) / (K + 1)
long: fold k trains on [t0, t0 + kV) and validates on [t0 + kV + D, t0 + (k + 1)V + D). D is
the label delay, capped at half the window only when the window is shorter than two delays (a
time-lapse history can be shorter than one delay); the manifest records both.

A trial fits the model on each fold's train part (undersampled as in training) and scores its
validation part by average precision; the trial's score is the mean over folds. The search is
Optuna's TPE sampler with the given seed; its first trial is the defaults
(:func:`rtfd.ml.models.default_params`), so the best parameters are never worse than the
defaults on the folds. After each fold a trial reports its running mean and Optuna's median
pruner stops one that is clearly behind. The search stops at the trial budget or the time budget,
whichever comes first; a trial under way when time runs out stops at its next fold.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rtfd.errors import ConfigError, DataError
from rtfd.features.names import FEATURE_NAMES
from rtfd.progress import Progress, no_progress

if TYPE_CHECKING:  # imported where used: the CLI reads this module's defaults at parse time
    import numpy as np
    import pandas as pd

DEFAULT_BUDGET_S = 120.0
DEFAULT_TRIALS = 60
DEFAULT_FOLDS = 3
# (kind, low, high[, step]): "int" and "float" sample uniformly, "*_log" on a log scale.
SPACES: dict[str, dict[str, tuple[Any, ...]]] = {
    "xgboost": {
        "max_depth": ("int", 3, 10),
        "eta": ("float_log", 0.02, 0.3),
        "rounds": ("int", 100, 800, 50),
        "min_child_weight": ("float_log", 0.5, 20.0),
        "subsample": ("float", 0.5, 1.0),
        "colsample_bytree": ("float", 0.4, 1.0),
        "lambda": ("float_log", 0.1, 20.0),
        "neg_per_pos": ("int_log", 10, 150),
    },
    "logreg": {
        "C": ("float_log", 1e-3, 100.0),
        "neg_per_pos": ("int_log", 10, 150),
    },
}


@dataclass(frozen=True)
class TuneSpec:
    """How long and how widely to search (``--budget-s``, ``--trials``)."""

    budget_s: float = DEFAULT_BUDGET_S
    trials: int = DEFAULT_TRIALS
    folds: int = DEFAULT_FOLDS
    seed: int = 42


@dataclass(frozen=True)
class Fold:
    """One time-ordered fold: the row positions of its train and validation parts."""

    train: np.ndarray
    validation: np.ndarray
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    validation_start: pd.Timestamp
    validation_end: pd.Timestamp

    def describe(self, labels: np.ndarray) -> dict[str, Any]:
        """The fold's time bounds and its rows and frauds, for the manifest."""

        def at(t: pd.Timestamp) -> str:
            return str(t.isoformat(timespec="seconds"))

        return {
            "train": [at(self.train_start), at(self.train_end)],
            "validation": [at(self.validation_start), at(self.validation_end)],
            "train_rows": len(self.train),
            "train_positives": int(labels[self.train].sum()),
            "validation_rows": len(self.validation),
            "validation_positives": int(labels[self.validation].sum()),
        }


@dataclass
class TuneResult:
    """What the search found; :meth:`to_dict` is what the manifest records."""

    algo: str
    space: dict[str, dict[str, Any]]
    defaults: dict[str, Any]
    default_fold_scores: list[float]
    best_params: dict[str, Any]
    best_fold_scores: list[float]
    folds: list[dict[str, Any]]
    gap_s: float
    label_delay_s: float
    trials: int
    trials_pruned: int
    seconds: float
    stopped_by: str
    spec: TuneSpec
    metric: str = "average precision on each fold's validation part, mean over folds"

    @property
    def best_score(self) -> float:
        return sum(self.best_fold_scores) / len(self.best_fold_scores)

    @property
    def default_score(self) -> float:
        return sum(self.default_fold_scores) / len(self.default_fold_scores)

    def to_dict(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "metric": self.metric,
            "sampler": f"optuna TPE, seed {self.spec.seed}; first trial = the defaults",
            "pruner": "optuna median pruner on the running mean after each fold",
            "space": self.space,
            "defaults": self.defaults,
            "default_score": self.default_score,
            "default_fold_scores": self.default_fold_scores,
            "best_params": self.best_params,
            "best_score": self.best_score,
            "best_fold_scores": self.best_fold_scores,
            "folds": self.folds,
            "gap_s": self.gap_s,
            "label_delay_s": self.label_delay_s,
            "trials": self.trials,
            "trials_pruned": self.trials_pruned,
            "seconds": round(self.seconds, 1),
            "stopped_by": self.stopped_by,
            "budget": asdict(self.spec),
        }


def search_space(algo: str) -> dict[str, dict[str, Any]]:
    """The space searched for ``algo``, widened where needed to hold its default."""
    from rtfd.ml.models import default_params

    if algo not in SPACES:
        raise ConfigError(
            f"--tune works for the supervised algorithms (xgboost, logreg), not {algo}"
        )
    defaults = default_params(algo)
    space = {}
    for name, (kind, low, high, *step) in SPACES[algo].items():
        d = defaults[name]
        entry: dict[str, Any] = {"type": kind, "low": min(low, d), "high": max(high, d)}
        if step and (d - low) % step[0] == 0:
            entry["step"] = step[0]
        space[name] = entry
    return space


def time_folds(
    timestamps: pd.Series, *, folds: int, label_delay_s: float
) -> tuple[list[Fold], float]:
    """The expanding-window folds (see the module docstring) and the gap used, in seconds."""
    import numpy as np
    import pandas as pd

    ts = pd.to_datetime(timestamps, utc=True).reset_index(drop=True)
    if not ts.is_monotonic_increasing:
        raise ValueError("time_folds needs rows in time order")
    t0 = ts.iloc[0]
    offset = (ts - t0).dt.total_seconds().to_numpy()  # seconds since the first row
    window_s = float(offset[-1]) + 1e-6  # the window ends just after its last row
    gap_s = min(max(label_delay_s, 0.0), window_s / 2)
    step_s = (window_s - gap_s) / (folds + 1)
    out = []
    for k in range(1, folds + 1):
        train_end = k * step_s
        val_start = train_end + gap_s
        val_end = val_start + step_s if k < folds else window_s
        train = np.flatnonzero(offset < train_end)
        val = np.flatnonzero((offset >= val_start) & (offset < val_end))
        at = [t0 + pd.Timedelta(seconds=x) for x in (train_end, val_start, val_end)]
        out.append(Fold(train, val, t0, *at))
    return out, gap_s


def _check_folds(folds: list[Fold], labels: np.ndarray) -> None:
    for i, fold in enumerate(folds, 1):
        for part, rows in (("train", fold.train), ("validation", fold.validation)):
            positives = int(labels[rows].sum()) if len(rows) else 0
            if positives == 0 or positives == len(rows):
                raise DataError(
                    f"cannot tune: fold {i}'s {part} part ({len(rows):,} rows from "
                    f"{fold.train_start if part == 'train' else fold.validation_start}) has "
                    f"{'no fraud' if positives == 0 else 'only frauds'}; use more data, or "
                    "train without --tune"
                )


def _suggest(trial: Any, name: str, entry: dict[str, Any]) -> Any:
    kind, low, high = entry["type"], entry["low"], entry["high"]
    if kind.startswith("int"):
        return trial.suggest_int(
            name, int(low), int(high), step=int(entry.get("step", 1)), log=kind.endswith("_log")
        )
    return trial.suggest_float(name, float(low), float(high), log=kind.endswith("_log"))


def tune(
    train: pd.DataFrame,
    *,
    algo: str,
    label_delay_s: float,
    spec: TuneSpec = TuneSpec(),
    progress: Progress = no_progress,
) -> TuneResult:
    """Search ``algo``'s hyperparameters on time-ordered folds of ``train`` (time-sorted rows
    with the feature columns and ``label``); see the module docstring."""
    import numpy as np
    import optuna
    from sklearn.metrics import average_precision_score

    from rtfd.ml.models import default_params, fit_model
    from rtfd.ml.preprocess import Preprocessor

    started = time.monotonic()
    deadline = started + spec.budget_s
    space = search_space(algo)
    defaults = default_params(algo)
    labels = (train["label"].to_numpy() > 0).astype(np.int8)
    folds, gap_s = time_folds(train["timestamp"], folds=spec.folds, label_delay_s=label_delay_s)
    _check_folds(folds, labels)
    X = train[FEATURE_NAMES].to_numpy(dtype=np.float64)
    linear = algo != "xgboost"
    fold_scores: dict[int, list[float]] = {}
    out_of_time = False

    def _done(trials: int) -> float:
        return min(1.0, max(trials / spec.trials, (time.monotonic() - started) / spec.budget_s))

    def objective(trial: Any) -> float:
        nonlocal out_of_time
        params = {name: _suggest(trial, name, entry) for name, entry in space.items()}
        scores: list[float] = []
        for step, fold in enumerate(folds):
            if time.monotonic() > deadline and trial.number > 0:
                out_of_time = True
                raise optuna.TrialPruned()
            progress(
                f"tuning {algo}: trial {trial.number + 1}, fold {step + 1} of {len(folds)}",
                _done(trial.number),
            )
            pre = Preprocessor.fit(
                X[fold.train], list(FEATURE_NAMES), log=linear, standardise=linear
            )
            model = fit_model(
                algo, pre.transform(X[fold.train]), labels[fold.train], seed=spec.seed,
                params=params,
            )  # fmt: skip
            raw = model.raw(pre.transform(X[fold.validation]))
            scores.append(float(average_precision_score(labels[fold.validation], raw)))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        fold_scores[trial.number] = scores
        return float(np.mean(scores))

    def report(study: Any, trial: Any) -> None:
        done = len(study.trials)
        fraction = _done(done)
        best = f", best {study.best_value:.4f}" if fold_scores else ""
        state = "pruned" if trial.value is None else f"AP {trial.value:.4f}"
        progress(f"tuning {algo}: trial {done} of at most {spec.trials} {state}{best}", fraction)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=spec.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    )
    study.enqueue_trial({name: defaults[name] for name in space})
    progress(f"tuning {algo} on {len(folds)} time-ordered folds", 0.0)
    # The defaults run in full whatever the budget: they are what the best is measured against.
    study.optimize(objective, n_trials=1, callbacks=[report])
    remaining = spec.budget_s - (time.monotonic() - started)
    if spec.trials > 1 and remaining > 0:
        study.optimize(objective, n_trials=spec.trials - 1, timeout=remaining, callbacks=[report])
    complete = [t for t in study.trials if t.number in fold_scores]
    best = max(complete, key=lambda t: (float(np.mean(fold_scores[t.number])), -t.number))
    stopped_by = "trials" if len(study.trials) >= spec.trials and not out_of_time else "time"
    return TuneResult(
        algo=algo,
        space=space,
        defaults={name: defaults[name] for name in space},
        default_fold_scores=fold_scores[0],
        best_params=dict(best.params),
        best_fold_scores=fold_scores[best.number],
        folds=[fold.describe(labels) for fold in folds],
        gap_s=gap_s,
        label_delay_s=label_delay_s,
        trials=len(complete),
        trials_pruned=len(study.trials) - len(complete),
        seconds=time.monotonic() - started,
        stopped_by=stopped_by,
        spec=spec,
    )
