"""The Models tab's catalog read from a real registry: each version's promotion comparison."""

from __future__ import annotations

from rtfd.config import Settings
from rtfd.ml.registry import Registry
from rtfd.tui.backends import load_model_catalog
from tests.unit.test_registry import registry, settings, trained_models

__all__ = ["registry", "settings", "trained_models"]  # fixtures


def test_the_catalog_carries_each_promotion(settings: Settings, registry: Registry) -> None:
    catalog = load_model_catalog(settings)
    (row,) = catalog.rows
    assert row.version == "v0001" and row.live
    assert row.decided_by == "first" and "promoted" in row.promotion
    assert "first model" in row.promotion


def test_an_unreadable_history_hides_the_comparisons_not_the_versions(
    settings: Settings, registry: Registry
) -> None:
    (settings.models_dir / "history.json").write_text("{not json", encoding="utf-8")
    catalog = load_model_catalog(settings)
    (row,) = catalog.rows
    assert row.version == "v0001" and row.decided_by == "" and row.promotion == ""
