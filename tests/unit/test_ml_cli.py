"""The ML commands: registered, import-light, and `rtfd train` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rtfd.cli import build_parser, main
from rtfd.ml import models, train

pytestmark = pytest.mark.unit


def test_commands_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, json, rtfd.cli; rtfd.cli.build_parser();"
        "print(json.dumps([m for m in ('numpy', 'pandas', 'sklearn', 'xgboost', 'duckdb',"
        " 'matplotlib', 'pyspark', 'textual') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = json.loads(out.stdout)
    assert not {"numpy", "pandas", "sklearn", "xgboost", "duckdb", "matplotlib"} & set(heavy)


def test_train_models_and_backtest_are_registered() -> None:
    help_text = build_parser().format_help()
    for command in ("train", "models", "backtest"):
        assert command in help_text


def test_rtfd_train_bootstrap_then_models_list(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(train, "BOOTSTRAP_DAYS", 8)
    monkeypatch.setattr(train, "BOOTSTRAP_USERS", 400)
    monkeypatch.setattr(models, "XGB_ROUNDS", 30)
    assert main(["train", "--bootstrap", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["version"] == "v0001" and result["promoted"] is True
    assert "%]" in captured.err  # progress lines on stderr
    assert main(["train", "--mode", "supervised", "--algo", "iforest"]) == 2
    assert "unsupervised" in capsys.readouterr().err
    assert main(["models", "list"]) == 0
    assert "* v0001" in capsys.readouterr().out
