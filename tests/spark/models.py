"""Model helpers of the spark tier: a real registry, without paying for a second training."""

from __future__ import annotations

from rtfd.config import Settings


def publish_new_version(settings: Settings) -> str:
    """Save the live model again as a new version and promote it; return the new version.

    The stream cannot tell a retrained model from a re-saved one: both are a new directory and a
    new ``models/CURRENT``, which is what hot reload is about.
    """
    from rtfd.ml.registry import Registry

    registry = Registry(settings.models_dir)
    live = registry.load()
    version = registry.save(
        model=live.model,
        preprocessor=live.preprocessor,
        features=list(live.features),
        threshold={
            "threshold": live.threshold,
            "mode": live.mode,
            "algo": live.algo,
            "calibration": live.calibration,
        },
        metrics=dict(live.metrics),
    )
    registry.promote(version, force=True, reason="test: hot reload")
    return version
