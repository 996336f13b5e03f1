"""The three model kinds behind one small interface, and how each is fitted and stored.

Every model maps the preprocessed feature matrix to a raw score (higher = more suspicious) and
to per-feature contributions for explanations:

* ``xgboost`` — gradient-boosted trees; contributions are XGBoost's own SHAP values
  (``pred_contribs``);
* ``logreg`` — logistic regression on scaled features; contributions are coefficient x value;
* ``iforest`` — IsolationForest, unsupervised (labels never used to fit); the raw score is the
  negated ``score_samples`` (normalised to [0, 1] by the training min/max at load time), and
  contributions are each feature's deviation from the training mean (absolute z-score).

Class imbalance: supervised models are fitted on all frauds and a random sample of at most
:data:`NEG_PER_POS` legitimate transactions per fraud; the sampling is undone on the odds
(``odds x sampling rate``), so scores stay comparable with the true fraud rate.

Storage (``model.pkl``, a format-2 artifact, see :mod:`rtfd.ml.artifact`): a model keeps only
what it scores with — the XGBoost booster (saved in XGBoost's JSON format, see
:mod:`rtfd.ml.booster`), the logistic regression's coefficients and intercept, the
IsolationForest's tree arrays (:mod:`rtfd.ml.iforest`) — so what is scored in training is exactly
what is saved and reloaded, and loading never unpickles anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from rtfd.ml.artifact import MODEL, ArtifactFormatError, Payload, pack, unpack
from rtfd.ml.iforest import ARRAYS as TREE_ARRAYS
from rtfd.ml.iforest import IsolationTrees
from rtfd.progress import Progress, no_progress

NEG_PER_POS = 25
XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "aucpr",
    "tree_method": "hist",
    "max_depth": 6,
    "eta": 0.1,
    "subsample": 0.9,
    "colsample_bytree": 0.8,
    "min_child_weight": 1.0,
    "max_bin": 128,
    "nthread": 1,  # OpenMP threads thrash on a busy 2-core machine (measured: 12x slower)
}
XGB_ROUNDS = 300
LOGREG_C = 1.0
IFOREST_TREES = 200
IFOREST_MAX_ROWS = 200_000


class Model(Protocol):
    """What the registry stores in model.pkl."""

    algo: str
    mode: str
    #: Whether a row's raw score is the same bits whatever rows are scored with it, so that a
    #: large batch may be scored in parts on several threads (:mod:`rtfd.parallel`).
    ROWS_APART: bool

    @property
    def n_features(self) -> int:
        """Columns of the preprocessed matrix the model scores."""
        ...

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Raw scores of preprocessed rows (higher = more suspicious)."""
        ...

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(rows x features) contributions towards a higher score."""
        ...

    def to_bytes(self) -> bytes:
        """The model as a format-2 artifact (plain arrays, no pickle)."""
        ...


def _from_training_odds(p: np.ndarray, neg_rate: float) -> np.ndarray:
    """Undo negative sampling: true odds = training odds x the share of negatives kept."""
    p = np.clip(p, 0.0, 1.0)
    return p * neg_rate / (p * neg_rate + (1.0 - p))


def _neg_rate(payload: Payload) -> float:
    rate = payload.field("neg_rate", float)
    if not 0.0 < rate <= 1.0:
        raise ArtifactFormatError(f"neg_rate {rate} is not in (0, 1]")
    return rate


class XGBoostModel:
    """A trained XGBoost booster."""

    algo = "xgboost"
    mode = "supervised"
    ROWS_APART = True  # each row walks the trees alone
    ARRAYS = frozenset({"booster_json"})

    def __init__(self, booster: Any, neg_rate: float) -> None:
        self.booster = booster
        self.neg_rate = neg_rate

    @property
    def n_features(self) -> int:
        return int(self.booster.num_features())

    def raw(self, X: np.ndarray) -> np.ndarray:
        p = np.asarray(self.booster.inplace_predict(X), dtype=np.float64)
        return _from_training_odds(p, self.neg_rate)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-path (Saabas) contributions: exact TreeSHAP cost 2.2 ms per row with the
        bootstrap model (300 trees), which stalled the stream in an alert burst; the
        approximation costs 0.03 ms and ranks the same few dominant features for an alert."""
        import xgboost as xgb

        # nthread=1: a DMatrix with the default threads costs ~7 ms to build, even for 10 rows.
        matrix = xgb.DMatrix(X, nthread=1)
        contrib = self.booster.predict(matrix, pred_contribs=True, approx_contribs=True)
        return np.asarray(contrib[:, :-1], dtype=np.float64)  # last column: the bias

    def to_bytes(self) -> bytes:
        from rtfd.ml.booster import booster_to_json

        text = np.frombuffer(booster_to_json(self.booster), dtype=np.uint8)
        header = {"algo": self.algo, "neg_rate": self.neg_rate, "n_features": self.n_features}
        return pack(MODEL, header, {"booster_json": text})

    @classmethod
    def from_payload(cls, payload: Payload) -> XGBoostModel:
        from rtfd.ml.booster import booster_from_json

        text = payload.array("booster_json", "|u1").tobytes()
        booster = booster_from_json(text, payload.field("n_features", int))
        return cls(booster, _neg_rate(payload))


class LogRegModel:
    """A logistic regression on standardised features: its coefficients and intercept."""

    algo = "logreg"
    mode = "supervised"
    # BLAS's matrix product may round a row differently with another number of rows beside
    # it; scoring is a few milliseconds anyway.
    ROWS_APART = False
    ARRAYS = frozenset({"coef", "intercept"})

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, neg_rate: float) -> None:
        self.coef = coef  # (1, features), as scikit-learn's coef_ for two classes
        self.intercept = intercept  # (1,)
        self.neg_rate = neg_rate

    @classmethod
    def from_estimator(cls, estimator: Any, neg_rate: float) -> LogRegModel:
        """The parameters of a fitted ``sklearn.linear_model.LogisticRegression``."""
        coef = np.array(estimator.coef_, dtype=np.float64)
        return cls(coef, np.array(estimator.intercept_, dtype=np.float64), neg_rate)

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    def raw(self, X: np.ndarray) -> np.ndarray:
        # scikit-learn's decision_function, the same operations in the same order (bit-equal).
        decision = (X @ self.coef.T + self.intercept).reshape(-1)
        margin = decision + math.log(self.neg_rate)
        return 1.0 / (1.0 + np.exp(-margin))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return X * self.coef[0]

    def to_bytes(self) -> bytes:
        header = {"algo": self.algo, "neg_rate": self.neg_rate}
        return pack(MODEL, header, {"coef": self.coef, "intercept": self.intercept})

    @classmethod
    def from_payload(cls, payload: Payload) -> LogRegModel:
        coef = payload.array("coef", "<f8", ndim=2)
        intercept = payload.array("intercept", "<f8")
        if coef.shape[0] != 1 or not 1 <= coef.shape[1] <= 100_000 or intercept.shape != (1,):
            raise ArtifactFormatError("coef must be 1 x features and intercept one number")
        if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
            raise ArtifactFormatError("coef and intercept must be finite")
        return cls(coef, intercept, _neg_rate(payload))


class IForestModel:
    """An IsolationForest on standardised features, as plain tree arrays."""

    algo = "iforest"
    ROWS_APART = True  # each row walks the trees alone
    mode = "unsupervised"
    ARRAYS = TREE_ARRAYS

    def __init__(self, trees: IsolationTrees) -> None:
        self.trees = trees

    @property
    def n_features(self) -> int:
        return self.trees.n_features

    def raw(self, X: np.ndarray) -> np.ndarray:
        return self.trees.raw(X)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return np.abs(X)

    def to_bytes(self) -> bytes:
        header, arrays = self.trees.to_payload()
        return pack(MODEL, {"algo": self.algo, **header}, arrays)

    @classmethod
    def from_payload(cls, payload: Payload) -> IForestModel:
        return cls(IsolationTrees.from_payload(payload))


_KINDS: dict[str, type[XGBoostModel] | type[LogRegModel] | type[IForestModel]] = {
    k.algo: k for k in (XGBoostModel, LogRegModel, IForestModel)
}


def model_from_bytes(blob: bytes) -> Model:
    """A model from :meth:`Model.to_bytes`'s bytes; :class:`ArtifactFormatError` for anything
    else (a pickle included: it is refused, never loaded)."""
    payload = unpack(blob, MODEL)
    algo = payload.header.get("algo")
    kind = _KINDS.get(algo) if isinstance(algo, str) else None
    if kind is None:
        raise ArtifactFormatError(f"unknown algorithm {algo!r}")
    payload.expect(kind.ARRAYS)
    return kind.from_payload(payload)


def undersample(
    y: np.ndarray, rng: np.random.Generator, neg_per_pos: int | None = None
) -> tuple[np.ndarray, float]:
    """Row indices keeping every positive and at most ``neg_per_pos`` (default
    :data:`NEG_PER_POS`) negatives per positive, and the share of negatives kept."""
    pos = np.flatnonzero(y > 0)
    neg = np.flatnonzero(y <= 0)
    want = (NEG_PER_POS if neg_per_pos is None else neg_per_pos) * max(len(pos), 1)
    if len(neg) <= want:
        return np.arange(len(y)), 1.0
    kept = np.sort(rng.choice(neg, size=want, replace=False))
    return np.sort(np.concatenate([pos, kept])), want / len(neg)


def default_params(algo: str) -> dict[str, Any]:
    """The hyperparameters :func:`fit_model` uses when it is given none (what ``--tune``
    starts from); IsolationForest has none to tune."""
    if algo == "xgboost":
        return {
            "max_depth": XGB_PARAMS["max_depth"],
            "eta": XGB_PARAMS["eta"],
            "rounds": XGB_ROUNDS,
            "min_child_weight": XGB_PARAMS["min_child_weight"],
            "subsample": XGB_PARAMS["subsample"],
            "colsample_bytree": XGB_PARAMS["colsample_bytree"],
            "lambda": 1.0,  # XGBoost's own default L2 penalty
            "neg_per_pos": NEG_PER_POS,
        }
    if algo == "logreg":
        return {"C": LOGREG_C, "neg_per_pos": NEG_PER_POS}
    if algo == "iforest":
        return {}
    raise ValueError(f"unknown algorithm {algo!r}")


def fit_model(
    algo: str,
    X: np.ndarray,
    y: np.ndarray | None,
    *,
    seed: int = 42,
    progress: Progress = no_progress,
    params: Mapping[str, Any] | None = None,
) -> Model:
    """Fit ``algo`` on the preprocessed training matrix ``X`` (labels ``y`` for supervised),
    with :func:`default_params` overridden by ``params`` (from ``--tune``)."""
    p = default_params(algo)
    unknown = sorted(set(params or {}) - set(p))
    if unknown:
        raise ValueError(f"{algo} has no hyperparameter {unknown[0]!r}")
    p.update(params or {})
    rng = np.random.default_rng(seed)
    if algo == "iforest":
        from sklearn.ensemble import IsolationForest

        rows = X
        if len(X) > IFOREST_MAX_ROWS:
            rows = X[np.sort(rng.choice(len(X), size=IFOREST_MAX_ROWS, replace=False))]
        progress(f"fitting IsolationForest ({IFOREST_TREES} trees)", 0.0)
        forest = IsolationForest(n_estimators=IFOREST_TREES, random_state=seed, n_jobs=1)
        forest.fit(rows)
        progress("IsolationForest fitted", 1.0)
        return IForestModel(IsolationTrees.from_sklearn(forest))
    if y is None:
        raise ValueError(f"{algo} needs labels")
    idx, neg_rate = undersample(y, rng, int(p["neg_per_pos"]))
    Xs, ys = X[idx], y[idx]
    if algo == "logreg":
        from sklearn.linear_model import LogisticRegression

        progress(f"fitting logistic regression on {len(idx):,} rows", 0.0)
        lr = LogisticRegression(C=float(p["C"]), max_iter=1000)
        lr.fit(Xs, ys)
        progress("logistic regression fitted", 1.0)
        return LogRegModel.from_estimator(lr, neg_rate)
    import xgboost as xgb

    rounds = int(p["rounds"])

    class _Report(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if epoch % 25 == 0:
                progress(f"boosting round {epoch}/{rounds}", epoch / rounds)
            return False

    booster_params = {
        **XGB_PARAMS,
        **{k: v for k, v in p.items() if k not in ("rounds", "neg_per_pos")},
        "max_depth": int(p["max_depth"]),
        "seed": seed,
    }
    dtrain = xgb.QuantileDMatrix(Xs, label=ys, max_bin=XGB_PARAMS["max_bin"])
    booster = xgb.train(booster_params, dtrain, num_boost_round=rounds, callbacks=[_Report()])
    progress("boosting done", 1.0)
    return XGBoostModel(booster, neg_rate)
