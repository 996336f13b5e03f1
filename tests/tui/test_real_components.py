"""The query and model panels against the real DuckDB service and the real model registry.

Only the supervisor is a fake here: the SQL runs on DuckDB over Parquet files in the test's data
dir, and the model panel reads (and rolls back) a real registry.
"""

from __future__ import annotations

import csv
from typing import Any

import numpy as np
import pytest
from textual.widgets import DataTable, Label, OptionList, TextArea

from rtfd.config import Settings
from rtfd.tui.backends import Services, load_model_catalog
from rtfd.tui.panels import ModelPanel, QueryPanel
from tests.tui.conftest import SIZE, RecordingApp, wait_for
from tests.tui.fakes import FakeAlertFeed, FakeSupervisor, write_enriched

pytestmark = pytest.mark.tui

ROWS = 500


def real_query_services() -> Services:
    services = Services()
    services.alert_feed = FakeAlertFeed
    return services


async def test_query_panel_runs_saved_queries_on_real_duckdb_and_exports_csv(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    write_enriched(settings, ROWS)
    app = RecordingApp(settings, supervisor, services=real_query_services())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting, "start-up")
        await pilot.press("2")
        panel = app.query_one(QueryPanel)
        await wait_for(pilot, lambda: panel._examples, "the saved queries", timeout=15)
        assert "Top risky users" in panel._examples
        options = app.query_one("#examples", OptionList)
        options.focus()
        options.highlighted = list(panel._examples).index("Top risky users")
        await pilot.press("enter")
        await wait_for(pilot, lambda: panel.last_sql, "the result", timeout=15)
        table = app.query_one("#results", DataTable)
        assert table.row_count == 20
        assert [str(c.label) for c in table.columns.values()][:2] == ["user_id", "txns"]
        status = str(app.query_one("#query-status", Label).content)
        assert status.startswith("✔ 20 rows · ")

        app.query_one("#sql", TextArea).text = "SELECT count(*) AS n FROM enriched_transactions"
        await pilot.press("f5")
        await wait_for(
            pilot, lambda: "1 rows" in str(app.query_one("#query-status", Label).content), "n"
        )
        assert str(table.get_row_at(0)[0]) == f"{ROWS:,}"

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any(t[0] == "Exported" for t in app.toasts), "the export")
        exports = list((settings.data_dir / "exports").glob("query-*.csv"))
        assert len(exports) == 1
        with exports[0].open(encoding="utf-8") as f:
            assert list(csv.reader(f)) == [["n"], [str(ROWS)]]

        app.query_one("#sql", TextArea).text = "DELETE FROM labels"
        await pilot.press("f5")
        await wait_for(
            pilot, lambda: "✖" in str(app.query_one("#query-status", Label).content), "error"
        )
        assert "read-only panel" in str(app.query_one("#query-status", Label).content)

        app.query_one("#sql", TextArea).text = "SELECT * FROM read_csv('/etc/passwd')"
        await pilot.press("f5")
        await wait_for(
            pilot, lambda: "✖" in str(app.query_one("#query-status", Label).content), "the refusal"
        )
        assert app.is_running


def make_registry(settings: Settings, versions: int) -> None:
    """Real model versions (a tiny logistic regression), each promoted in turn."""
    from rtfd.ml.models import fit_model
    from rtfd.ml.preprocess import Preprocessor
    from rtfd.ml.registry import Registry

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + rng.normal(scale=0.5, size=200) > 1.2).astype(int)
    features = ["a", "b", "c"]
    registry = Registry(settings.models_dir)
    for i in range(versions):
        pre = Preprocessor.fit(X, features, log=False, standardise=True)
        model = fit_model("logreg", pre.transform(X), y, seed=i)
        version = registry.save(
            model=model,
            preprocessor=pre,
            features=features,
            threshold={"threshold": 0.4 + i / 100, "mode": "supervised", "algo": "logreg"},
            metrics={"auc_roc": 0.90 + i / 100, "average_precision": 0.70 + i / 100},
        )
        registry.promote(version, force=True)


async def test_model_panel_lists_a_real_registry_and_rolls_back(
    settings: Settings, supervisor: FakeSupervisor
) -> None:
    from rtfd.ml.registry import Registry

    make_registry(settings, 2)
    catalog = load_model_catalog(settings)
    assert [(r.version, r.live, r.algo) for r in catalog.rows] == [
        ("v0002", True, "logreg"),
        ("v0001", False, "logreg"),
    ]
    app = RecordingApp(settings, supervisor, services=real_query_services())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.starting, "start-up")
        await pilot.press("3")
        panel = app.query_one(ModelPanel)
        await wait_for(pilot, lambda: panel.catalog is not None, "the catalog")
        table = app.query_one("#versions", DataTable)
        assert [str(c) for c in table.get_row_at(0)[:6]] == [
            "●", "v0002", "logreg", "supervised", "0.410", "0.910"
        ]  # fmt: skip
        await pilot.press("b")
        await wait_for(pilot, lambda: Registry(settings.models_dir).current() == "v0001", "rb")
        await wait_for(pilot, lambda: str(table.get_row_at(1)[0]) == "●", "the new live mark")
        assert ("Rolled back", "v0001 is live again", "information") in app.toasts
        await pilot.press("b")  # nothing earlier: a clear message, no crash
        await wait_for(pilot, lambda: any(t[0] == "Rollback refused" for t in app.toasts), "no")
        assert app.is_running


def test_a_tampered_version_shows_a_note_instead_of_metrics(settings: Settings) -> None:
    make_registry(settings, 2)
    metrics = settings.models_dir / "v0001" / "manifest.json"
    metrics.write_bytes(metrics.read_bytes().replace(b'"format"', b'"formaT"'))
    rows: dict[str, Any] = {r.version: r for r in load_model_catalog(settings).rows}
    assert rows["v0002"].note == "" and rows["v0002"].metric("auc_roc") == pytest.approx(0.91)
    assert "modified" in rows["v0001"].note and not rows["v0001"].metrics
