"""The model registry: tampering is refused, promotion is earned, rollback works, and a reloaded
model scores exactly as the one that was trained (the attacks on artifacts are in
test_artifact_attacks.py)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtfd.cli import main
from rtfd.config import Settings, load_settings
from rtfd.errors import ArtifactError
from rtfd.features import FEATURE_NAMES
from rtfd.ml import models
from rtfd.ml.data import labelled_features, simulated_history
from rtfd.ml.iforest import IsolationTrees
from rtfd.ml.registry import REQUIRED_FILES, LoadedModel, PromotionRefused, Registry, _canonical
from rtfd.ml.train import fit_and_select, time_split, train_model
from tests.spark.models import resave

pytestmark = pytest.mark.unit


@functools.cache
def history() -> pd.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return simulated_history(10, seed=11, users=500, merchants=120, fraud_rate=0.02, start=start)


@pytest.fixture(autouse=True)
def fewer_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "XGB_ROUNDS", 40)


@pytest.fixture
def settings() -> Settings:
    return load_settings({"label_maturity_days": 2})


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained version (v0001, live), built once and copied into each test's home."""
    home = tmp_path_factory.mktemp("registry-template")
    settings = load_settings({"home": str(home), "label_maturity_days": 2}, environ={})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "XGB_ROUNDS", 40)
        train_model(settings, algo="xgboost", data=history())
    return settings.models_dir


@pytest.fixture
def registry(settings: Settings, trained_models: Path) -> Registry:
    shutil.copytree(trained_models, settings.models_dir)
    return Registry(settings.models_dir)


ARTIFACTS = [*REQUIRED_FILES, "holdout.parquet", "manifest.json"]


@pytest.mark.parametrize("name", ARTIFACTS)
@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_flipping_any_byte_of_any_artifact_is_refused(
    registry: Registry, name: str, where: float
) -> None:
    path = registry.root / "v0001" / name
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        registry.load()
    assert "v0001" in err.value.message
    assert name in err.value.message or "manifest" in err.value.message


@pytest.mark.parametrize("name", ARTIFACTS)
def test_a_missing_artifact_makes_the_version_incomplete(registry: Registry, name: str) -> None:
    (registry.root / "v0001" / name).unlink()
    with pytest.raises(ArtifactError, match=r"incomplete|does not exist"):
        registry.load("v0001")


def test_an_unlisted_file_is_refused(registry: Registry) -> None:
    (registry.root / "v0001" / "extra.pkl").write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"extra\.pkl"):
        registry.load()


def test_a_malicious_pickle_is_refused_even_with_a_matching_manifest(registry: Registry) -> None:
    """Someone who rewrites both the pickle and the manifest still cannot run code."""

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    vdir = registry.root / "v0001"
    (vdir / "model.pkl").write_bytes(pickle.dumps(Evil()))
    doc = json.loads((vdir / "manifest.json").read_text())
    doc.pop("manifest_sha256")
    doc["files"]["model.pkl"] = hashlib.sha256((vdir / "model.pkl").read_bytes()).hexdigest()
    doc["manifest_sha256"] = hashlib.sha256(_canonical(doc)).hexdigest()
    (vdir / "manifest.json").write_bytes(_canonical(doc))
    with pytest.raises(ArtifactError, match=r"model\.pkl: a pickle .* is never loaded"):
        registry.load()


def test_loading_an_unknown_or_absent_version(settings: Settings) -> None:
    empty = Registry(settings.models_dir)
    assert empty.versions() == [] and empty.current() is None
    with pytest.raises(ArtifactError, match="rtfd train"):
        empty.load()
    with pytest.raises(ArtifactError, match="not a model version"):
        empty.load("../etc")


def _shuffled_training_labels(seed: int) -> pd.DataFrame:
    """The history with the labels of its training part shuffled and its validation part (the
    holdout the challenger is judged on) left true: a model no better than chance, judged on
    real labels."""
    from rtfd.ml.train import time_split

    train, validation = time_split(history())
    labels = train["label"].to_numpy().copy()
    np.random.default_rng(seed).shuffle(labels)
    return pd.concat([train.assign(label=labels), validation])


def _bad_challenger(settings: Settings) -> str:
    """A model trained on shuffled labels: no better than chance."""
    return train_model(
        settings, algo="xgboost", data=_shuffled_training_labels(0), promote=False
    ).version


def test_champion_challenger_and_rollback(settings: Settings, registry: Registry) -> None:
    assert registry.current() == "v0001"
    worse = _bad_challenger(settings)
    assert worse == "v0002" and registry.current() == "v0001"
    with pytest.raises(PromotionRefused, match="worse than the live v0001"):
        registry.promote(worse)
    assert registry.current() == "v0001"
    assert "forced" in registry.promote(worse, force=True)
    assert registry.current() == "v0002"
    # A retrain on the same data is at least as good as the live (bad) one: promoted on merit.
    again = train_model(settings, algo="xgboost", data=history())
    assert again.promoted and "AP" in again.decision
    assert registry.current() == "v0003"
    assert registry.rollback() == "v0002"
    assert registry.rollback() == "v0001"
    assert registry.current() == "v0001"
    with pytest.raises(ArtifactError, match="nothing to roll back"):
        registry.rollback()
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".")] == []


def test_training_reports_a_refused_promotion(settings: Settings, registry: Registry) -> None:
    result = train_model(settings, algo="xgboost", data=_shuffled_training_labels(1))
    assert not result.promoted and "worse" in result.decision
    assert registry.current() == "v0001"


def test_rollback_refuses_a_broken_target(settings: Settings, registry: Registry) -> None:
    registry.promote(_bad_challenger(settings), force=True)
    (registry.root / "v0001" / "threshold.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"threshold\.json"):
        registry.rollback()
    assert registry.current() == "v0002"


def test_models_cli(
    settings: Settings, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    _bad_challenger(settings)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "* v0001" in out and "  v0002" in out
    assert main(["models", "show", "v0002"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "v0002" and shown["live"] is False
    assert main(["models", "promote", "v0002"]) == 2
    assert "worse" in capsys.readouterr().err
    assert main(["models", "promote", "v0002", "--force"]) == 0
    assert main(["models", "rollback"]) == 0
    assert "v0001 is live" in capsys.readouterr().out
    Path(registry.root / "v0001" / "metrics.json").write_text("{}")
    assert main(["models", "show"]) == 2
    assert "SHA-256" in capsys.readouterr().err


@functools.cache
def feature_frame() -> pd.DataFrame:
    return labelled_features(history(), label_delay_s=2 * 86_400)


@pytest.mark.parametrize("algo", ["xgboost", "logreg", "iforest"])
def test_a_reloaded_model_scores_and_explains_exactly_as_the_trained_one(
    settings: Settings, algo: str
) -> None:
    frame = feature_frame()
    train, validation = time_split(frame)
    mode = "unsupervised" if algo == "iforest" else "supervised"
    fitted = fit_and_select(train, validation, mode=mode, algo=algo)
    threshold = {
        "threshold": fitted.choice.threshold,
        "mode": mode,
        "algo": algo,
        "calibration": fitted.calibration,
    }
    registry = Registry(settings.models_dir)
    version = registry.save(
        model=fitted.model,
        preprocessor=fitted.preprocessor,
        features=list(FEATURE_NAMES),
        threshold=threshold,
        metrics={},
    )
    loaded = registry.load(version)
    assert len(frame) > 5000
    assert np.array_equal(loaded.score(frame), fitted.score(frame))
    in_memory = LoadedModel(
        version="in-memory",
        features=list(FEATURE_NAMES),
        threshold=fitted.choice.threshold,
        mode=mode,
        algo=algo,
        model=fitted.model,
        preprocessor=fitted.preprocessor,
        calibration=fitted.calibration,
    )
    rows = frame.iloc[-2000:]
    reasons = loaded.explain(rows)
    assert reasons == in_memory.explain(rows)
    assert sum(1 for r in reasons if r) > 1000  # explanations are there, not just equal
    # Saving the reloaded model again writes the same bytes: nothing is lost on the way.
    again = registry.save(
        model=loaded.model,
        preprocessor=loaded.preprocessor,
        features=loaded.features,
        threshold=threshold,
        metrics={},
    )
    for name in ("model.pkl", "preprocess_scaler.pkl"):
        first = (registry.root / version / name).read_bytes()
        assert (registry.root / again / name).read_bytes() == first


@pytest.mark.parametrize("algo", ["xgboost", "logreg", "iforest"])
def test_a_large_batch_scored_on_several_threads_scores_as_on_one(
    monkeypatch: pytest.MonkeyPatch, algo: str
) -> None:
    """A drain-sized batch is scored on a few threads (rtfd.parallel): bit for bit the scores
    of one thread, so a replayed batch sends the same alerts whatever the split."""
    import rtfd.parallel

    frame = feature_frame()
    train, validation = time_split(frame)
    mode = "unsupervised" if algo == "iforest" else "supervised"
    fitted = fit_and_select(train, validation, mode=mode, algo=algo)
    model = LoadedModel(
        version="v", features=list(FEATURE_NAMES), threshold=fitted.choice.threshold,
        mode=mode, algo=algo, model=fitted.model, preprocessor=fitted.preprocessor,
        calibration=fitted.calibration,
    )  # fmt: skip
    big = pd.concat([frame] * (1 + 3 * rtfd.parallel.MIN_ROWS_PER_THREAD // len(frame)))
    monkeypatch.setattr(rtfd.parallel, "threads", lambda: 1)
    one = model.score(big)
    monkeypatch.setattr(rtfd.parallel, "threads", lambda: 3)
    assert len(rtfd.parallel.spans(len(big))) == 3
    assert np.array_equal(model.score(big), one)
    if model.model.ROWS_APART:  # logreg: one matrix product, never split
        assert np.array_equal(model.score(big.iloc[:100]), one[:100])


def test_the_stored_logistic_regression_scores_as_scikit_learn_did() -> None:
    """Training behaviour unchanged: the same rows, the same fit, bit-equal scores as the
    scikit-learn estimator (scored with decision_function, as before format 2)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(20_000, 30)) * rng.uniform(0.1, 10.0, size=30)
    y = (X[:, 0] / 10 + rng.normal(size=len(X)) > 2.2).astype(int)
    model = models.fit_model("logreg", X, y, seed=9)
    idx, neg_rate = models.undersample(y, np.random.default_rng(9))
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(X[idx], y[idx])
    margin = lr.decision_function(X) + np.log(neg_rate)
    assert neg_rate < 1.0
    assert np.array_equal(model.raw(X), 1.0 / (1.0 + np.exp(-margin)))
    assert np.array_equal(model.contributions(X), X * lr.coef_[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_isolation_trees_score_bit_for_bit_as_scikit_learn(seed: int) -> None:
    """-IsolationForest.score_samples, reproduced exactly: random rows, rows a float32 step either
    side of every split, missing values, extremes, and batch sizes around the chunk size."""
    from sklearn.ensemble import IsolationForest

    from rtfd.ml.iforest import CHUNK_ROWS

    rng = np.random.default_rng(seed)
    n_features = 12
    X = np.concatenate(
        [rng.normal(size=(3000, n_features)), rng.exponential(3.0, size=(1000, n_features))]
    )
    forest = IsolationForest(n_estimators=80, random_state=seed, n_jobs=1).fit(X)
    trees = IsolationTrees.from_sklearn(forest)
    rows = [rng.normal(size=(5000, n_features)) * 3]
    for estimator in forest.estimators_[:10]:
        tree = estimator.tree_
        inner = tree.children_left >= 0
        at = np.tile(rng.normal(size=n_features), (int(inner.sum()), 1))
        at[np.arange(int(inner.sum())), tree.feature[inner]] = tree.threshold[inner]
        near = at.astype(np.float32)
        rows += [near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, -np.inf)]
    odd = rng.normal(size=(300, n_features))
    odd[::3, 2] = np.nan
    odd[1::3, 5] = 1e30
    odd[2::3, 7] = -np.inf
    rows.append(odd)
    Z = np.concatenate([r.astype(np.float64) for r in rows])
    assert len(Z) > 5000
    assert np.array_equal(trees.raw(Z), -forest.score_samples(Z))
    for n in (0, 1, 2, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 1):
        assert np.array_equal(trees.raw(Z[:n]), -forest.score_samples(Z[:n]) if n else np.zeros(0))


def test_the_trained_isolation_forest_scores_as_scikit_learn_did() -> None:
    """Training behaviour unchanged: fit_model fits the same forest as before format 2 and its
    stored trees score exactly as that forest."""
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(4)
    X = rng.normal(size=(5000, 20))
    model = models.fit_model("iforest", X, None, seed=5)
    forest = IsolationForest(n_estimators=models.IFOREST_TREES, random_state=5, n_jobs=1).fit(X)
    Z = rng.normal(size=(8000, 20)) * 2
    assert np.array_equal(model.raw(Z), -np.asarray(forest.score_samples(Z), dtype=np.float64))


# -- champion/challenger on both holdouts ------------------------------------------------------
def _holdout(rows: pd.DataFrame, *, flip: bool = False) -> pd.DataFrame:
    """Holdout rows as training saves them; ``flip`` inverts the labels, so that a model which
    ranks frauds well ranks them worst there (a window where the two models swap places)."""
    out = rows[[*FEATURE_NAMES, "label", "timestamp"]].reset_index(drop=True)
    if flip:
        out["label"] = 1 - out["label"]
    return out


@pytest.fixture
def good_and_bad(settings: Settings, registry: Registry) -> tuple[LoadedModel, LoadedModel]:
    """The live v0001 (trained on true labels) and v0002 (shuffled labels: chance)."""
    return registry.load("v0001"), registry.load(_bad_challenger(settings))


OLD, NEW = slice(0, 4000), slice(-4000, None)


@pytest.mark.parametrize(
    ("bad_is_challenger", "older_is_challengers"),
    [(True, True), (True, False), (False, True), (False, False)],
)
def test_the_newer_holdout_decides_and_both_are_recorded(
    registry: Registry,
    good_and_bad: tuple[LoadedModel, LoadedModel],
    bad_is_challenger: bool,
    older_is_challengers: bool,
) -> None:
    """Both models are scored on both holdouts. On the older window the labels are flipped, so
    there the weak model wins; the newer window (true labels) decides: a challenger worse on the
    newer data is refused whatever the older says, a better one is promoted."""
    good, bad = good_and_bad
    frame = feature_frame()
    old, new = _holdout(frame.iloc[OLD], flip=True), _holdout(frame.iloc[NEW])
    challenger, champion = (bad, good) if bad_is_challenger else (good, bad)
    mine, theirs = (old, new) if older_is_challengers else (new, old)
    champ = resave(registry, champion, theirs)
    registry.promote(champ, force=True)
    chall = resave(registry, challenger, mine)
    if bad_is_challenger:
        with pytest.raises(PromotionRefused, match=r"worse than the live .* newer holdout"):
            registry.promote(chall)
        assert registry.current() == champ
        decision = registry.promote(chall, force=True)  # the figures are recorded even so
        assert decision.startswith(f"{chall} is live (forced; AP")
    else:
        assert "newer: decides" in registry.promote(chall)
    last = registry.promotions()[-1]
    assert last.version == chall and last.forced is bad_is_challenger
    c = last.comparison
    assert c is not None and (c.challenger, c.champion) == (chall, champ)
    assert [h.holdout_of for h in c.holdouts] == [chall, champ]
    assert [h.role for h in c.holdouts] == ["challenger", "champion"]
    assert [h.rows for h in c.holdouts] == [4000, 4000]
    decider = c.deciding
    assert decider is not None and decider.holdout_of == (champ if older_is_challengers else chall)
    assert decider.end is not None and decider.end == max(h.end for h in c.holdouts if h.end)
    older = next(h for h in c.holdouts if not h.decided)
    assert decider.challenger_ap is not None and decider.champion_ap is not None
    assert older.challenger_ap is not None and older.champion_ap is not None
    # The two windows disagree, which is why the rule names the one that decides.
    newer_says = decider.challenger_ap < decider.champion_ap
    older_says = older.challenger_ap < older.champion_ap
    assert newer_says is bad_is_challenger and older_says is not bad_is_challenger
    assert c.challenger_worse is bad_is_challenger


def test_promotions_are_records_the_tui_can_read(
    settings: Settings, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_challenger(settings)
    with pytest.raises(PromotionRefused):
        registry.promote(bad)
    registry.promote(bad, force=True)
    again = train_model(settings, algo="xgboost", data=history())
    first, forced, earned = registry.promotions()
    assert (first.version, first.reason, first.comparison) == ("v0001", "first model", None)
    assert forced.version == bad and forced.forced and forced.comparison is not None
    h = forced.comparison.holdouts[0]
    assert h.challenger_ap is not None and h.champion_ap is not None
    assert h.challenger_ap < h.champion_ap and h.rows > 1000 and h.positives > 10
    assert earned.version == again.version and not earned.forced
    assert earned.comparison is not None and not earned.comparison.challenger_worse
    # v0003 and v0001 were trained on the same data: one window, scored once, and said so.
    assert len(earned.comparison.holdouts) == 1
    assert "same window" in " ".join(earned.comparison.notes)
    # The CLI prints the same records.
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "promotions" in out and f"vs {bad}: AP" in out and "newer: decides" in out
    assert "first model" in out and "forced; vs v0001: AP" in out
    assert main(["models", "show", bad]) == 0
    shown = json.loads(capsys.readouterr().out)
    (record,) = shown["promotions"]
    assert record["forced"] is True and record["comparison"]["champion"] == "v0001"
    assert record["comparison"]["holdouts"][0]["challenger_ap"] == h.challenger_ap


@pytest.mark.parametrize(
    "entry",
    [
        {"version": "v0001", "at": "2026-01-01T00:00:00+00:00", "reason": "first model"},
        {"version": "v0001", "comparison": "not an object"},
        {"version": "v0001", "comparison": {"holdouts": "x", "notes": [1, "n"]}},
        {
            "version": "v0001",
            "comparison": {"holdouts": [{"rows": "many", "challenger_ap": 1e999}]},
        },
        {"version": "v0001", "forced": "yes", "at": 5},
    ],
)
def test_promotions_written_by_older_versions_or_edited_still_read(
    registry: Registry, entry: dict[str, object]
) -> None:
    """history.json is not covered by a manifest: whatever it holds, promotions() reads it
    without raising, and a field it cannot read is absent rather than wrong."""
    (registry.root / "history.json").write_text(
        json.dumps({"promotions": [entry, ["not", "an", "entry"]]})
    )
    (promotion,) = registry.promotions()
    assert promotion.version == "v0001" and promotion.forced is False
    if promotion.comparison is not None:
        for h in promotion.comparison.holdouts:
            assert isinstance(h.rows, int) and h.challenger_ap is None
        assert all(isinstance(n, str) for n in promotion.comparison.notes)


def test_holdouts_without_the_features_are_left_out_and_none_left_is_refused(
    registry: Registry, good_and_bad: tuple[LoadedModel, LoadedModel]
) -> None:
    good, bad = good_and_bad
    frame = feature_frame()
    full, partial = _holdout(frame.iloc[NEW]), _holdout(frame.iloc[NEW]).drop(columns="count_1h")
    champ = resave(registry, good, partial)
    registry.promote(champ, force=True)
    # Only the challenger's holdout has every feature: it alone is compared on, and it decides.
    decision = registry.promote(resave(registry, good, full))
    assert "newer: decides" in decision and "lacks features" in decision
    registry.promote(champ, force=True)
    lacking = resave(registry, bad, partial)
    with pytest.raises(PromotionRefused, match=r"different features \(use --force"):
        registry.promote(lacking)
    assert registry.current() == champ
    assert "forced; cannot compare" in registry.promote(lacking, force=True)
    assert registry.promotions()[-1].comparison is None
