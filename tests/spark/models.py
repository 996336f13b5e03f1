"""Model helpers of the spark tier: a real registry, without paying for a second training."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtfd.config import Settings

if TYPE_CHECKING:
    import pandas as pd

    from rtfd.ml.registry import LoadedModel, Registry


def publish_new_version(settings: Settings) -> str:
    """Save the live model again as a new version and promote it; return the new version.

    The stream cannot tell a retrained model from a re-saved one: both are a new directory and a
    new ``models/CURRENT``, which is what hot reload is about.
    """
    from rtfd.ml.registry import Registry

    registry = Registry(settings.models_dir)
    version = resave(registry, registry.load())
    registry.promote(version, force=True, reason="test: hot reload")
    return version


def resave(registry: Registry, model: LoadedModel, holdout: pd.DataFrame | None = None) -> str:
    """``model`` saved again as a new version (with ``holdout`` as its holdout, if given)."""
    return registry.save(
        model=model.model,
        preprocessor=model.preprocessor,
        features=list(model.features),
        threshold={
            "threshold": model.threshold,
            "mode": model.mode,
            "algo": model.algo,
            "calibration": model.calibration,
        },
        metrics=dict(model.metrics),
        holdout=holdout,
    )
