"""The registry's read API (``Registry.info``, ``live``, ``catalog``): what the status bar, the
model panel and ``rtfd models list`` show of each version, from digest-checked JSON files only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtfd.config import Settings
from rtfd.ml.registry import Registry, VersionInfo
from rtfd.supervisor import Supervisor

pytestmark = pytest.mark.unit


def make_registry(settings: Settings, versions: int) -> Registry:
    """Real versions of a tiny logistic regression, each promoted in turn."""
    from rtfd.ml.models import fit_model
    from rtfd.ml.preprocess import Preprocessor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + rng.normal(scale=0.5, size=200) > 1.2).astype(int)
    registry = Registry(settings.models_dir)
    for i in range(versions):
        pre = Preprocessor.fit(X, ["a", "b", "c"], log=False, standardise=True)
        version = registry.save(
            model=fit_model("logreg", pre.transform(X), y, seed=i),
            preprocessor=pre,
            features=["a", "b", "c"],
            threshold={"threshold": 0.4 + i / 100, "mode": "supervised", "algo": "logreg"},
            metrics={"auc_roc": 0.90 + i / 100, "average_precision": 0.70 + i / 100},
        )
        registry.promote(version, force=True)
    return registry


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_catalog_lists_every_version_newest_first_with_typed_figures(
    settings: Settings,
) -> None:
    registry = make_registry(settings, 3)
    rows = registry.catalog()
    assert [(r.version, r.live) for r in rows] == [
        ("v0003", True),
        ("v0002", False),
        ("v0001", False),
    ]
    top = rows[0]
    assert (top.algo, top.mode, top.note) == ("logreg", "supervised", "")
    assert top.threshold == pytest.approx(0.42)
    assert top.metrics["auc_roc"] == pytest.approx(0.92)
    assert top.created_at


def test_an_empty_registry_has_no_live_version(settings: Settings) -> None:
    registry = Registry(settings.models_dir)
    assert registry.live() is None and registry.catalog() == []


@pytest.mark.parametrize("file", ["manifest.json", "threshold.json", "metrics.json"])
def test_a_tampered_json_file_gives_a_note_not_figures(settings: Settings, file: str) -> None:
    registry = make_registry(settings, 2)
    flip_last_byte(settings.models_dir / "v0001" / file)
    info = registry.info("v0001")
    assert info.note and info.threshold is None and info.metrics == {}
    assert registry.info("v0002").note == ""


@pytest.mark.parametrize("file", ["model.pkl", "preprocess_scaler.pkl", "features.json"])
def test_the_live_version_is_verified_whole_before_its_figures_show(
    settings: Settings, file: str
) -> None:
    registry = make_registry(settings, 1)
    flip_last_byte(settings.models_dir / "v0001" / file)
    assert registry.info("v0001").note == ""  # the listing reads no model bytes
    live = registry.live()
    assert live is not None and "SHA-256" in live.note and live.threshold is None


def test_a_removed_file_is_a_note(settings: Settings) -> None:
    registry = make_registry(settings, 1)
    (settings.models_dir / "v0001" / "threshold.json").unlink()
    assert "missing" in registry.info("v0001").note


def test_the_supervisor_gives_the_live_model_with_its_threshold_as_a_number(
    settings: Settings,
) -> None:
    supervisor = Supervisor(settings, with_stream=False, with_generator=False)
    assert supervisor.model_info() is None
    make_registry(settings, 2)
    info = supervisor.model_info()
    assert info is not None
    assert (info.version, info.algo, info.mode) == ("v0002", "logreg", "supervised")
    assert info.threshold == pytest.approx(0.41)
    assert info.summary() == "v0002 logreg supervised thr 0.410"
    doc = json.loads((settings.models_dir / "v0002" / "threshold.json").read_text())
    assert doc["threshold"] == info.threshold


def test_version_info_is_a_frozen_record() -> None:
    info = VersionInfo("v0001")
    with pytest.raises(AttributeError):
        info.version = "v0002"  # type: ignore[misc]
