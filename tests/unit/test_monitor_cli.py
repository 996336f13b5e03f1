"""``rtfd monitor``: the table, --json, its one-line errors, and the monitor's light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from rtfd.cli import main
from rtfd.config import Settings
from tests.monitor_lake import install_model, scored, training_rows, write_enriched

pytestmark = pytest.mark.unit


def lake(settings: Settings, hours_ago: float = 0.5) -> pd.DataFrame:
    """The training rows, scored, processed ``hours_ago`` before the real clock's now."""
    install_model(settings)
    rows = scored(training_rows(), settings)
    now = datetime.now(UTC)
    stamps = now - pd.to_timedelta(np.full(len(rows), hours_ago), unit="h")
    write_enriched(settings, rows, pd.Series(stamps))
    return rows


def test_monitor_json_is_the_report(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    rows = lake(settings)
    assert main(["monitor", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model_version"] == "v0001"
    assert doc["window"] == {
        "hours": 24.0,
        "transactions": len(rows),
        "alerts": int(rows["is_fraud"].sum()),
        "event_span_days": doc["window"]["event_span_days"],
    }
    assert len(doc["features"]) == 36 and all(f["band"] == "stable" for f in doc["features"])
    assert doc["retrain"]["suggested"] is False
    assert sum(h["alerts"] for h in doc["alerts_per_hour"]) == int(rows["is_fraud"].sum())


def test_monitor_hours_narrows_the_window(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    lake(settings, hours_ago=5)
    assert main(["monitor", "--json", "--hours", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["window"]["transactions"] == 0


def test_monitor_prints_a_compact_table(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    lake(settings)
    assert main(["monitor"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("model v0001 (threshold ")
    assert lines[1] == "no retrain suggested"
    assert any(line.split()[:3] == ["amount_log1p", "0.000", "stable"] for line in lines)
    assert "alerts per hour" in out and "alert precision per day" in out
    assert max(len(line) for line in lines) <= 120


def test_monitor_without_a_model_is_one_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("rtfd: Monitor: no live model in ")
    assert "rtfd train" in line


def test_monitor_without_a_lake_is_one_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    install_model(settings)
    assert main(["monitor"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("rtfd: Monitor: no scored transactions under ")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e309", "x", "", "9000"])
def test_monitor_refuses_a_bad_window(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["monitor", "--hours", value])
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("rtfd: Invalid argument: argument --hours: expected a number > 0")


def test_the_monitor_imports_neither_textual_nor_pyspark() -> None:
    code = (
        "import sys\n"
        "import rtfd.cli.monitor, rtfd.monitor.report, rtfd.ml.psi\n"
        "import rtfd.monitor.rules, rtfd.ml.reference\n"
        "bad = [m for m in ('textual', 'pyspark') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
