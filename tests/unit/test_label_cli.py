"""``rtfd label``: its one-line errors (no broker needed; the real-Kafka path is tests/kafka)."""

from __future__ import annotations

import time

import pytest

from rtfd.cli import main
from rtfd.config import load_settings
from rtfd.sysinfo import free_port
from tests.unit.test_analyst_labels import YOUNG, write_enriched


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's errors exit from inside main()
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("verdict", ["yes", "FRAUD", "1", "", "légit", " legit", "x" * 300])
def test_a_bad_verdict_is_one_line(capsys: pytest.CaptureFixture[str], verdict: str) -> None:
    code, out, err = run(capsys, "label", "tx_1", verdict)
    assert code == 2 and out == ""
    assert err.startswith("rtfd: Invalid argument: argument verdict: invalid choice")
    assert "'fraud', 'legit'" in err and err.count("\n") == 1


@pytest.mark.parametrize("tx", ["tx_unknown", "o'brien", "'; DROP TABLE labels; --", "t" * 128])
def test_an_unknown_transaction_is_one_line(capsys: pytest.CaptureFixture[str], tx: str) -> None:
    settings = load_settings()
    settings.ensure_dirs()
    write_enriched(settings, {"tx_known": YOUNG})
    code, out, err = run(capsys, "label", tx, "fraud")
    assert code == 2 and out == ""
    assert err.startswith("rtfd: Unknown transaction: no transaction") and err.count("\n") == 1


def test_an_unknown_transaction_without_any_lake_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "label", "tx_1", "legit")
    assert code == 2 and err.startswith("rtfd: Unknown transaction:")


@pytest.mark.parametrize("tx", ["", "   ", "x" * 129])
def test_an_impossible_id_is_one_line(capsys: pytest.CaptureFixture[str], tx: str) -> None:
    code, _, err = run(capsys, "label", tx, "fraud")
    assert code == 2 and err.startswith("rtfd: Invalid record:") and err.count("\n") == 1


def test_a_broker_that_does_not_answer_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rtfd.broker.labels.PUBLISH_TIMEOUT_S", 1.0)
    settings = load_settings()
    settings.ensure_dirs()
    write_enriched(settings, {"tx_known": YOUNG})
    port = free_port()
    began = time.monotonic()
    code, out, err = run(
        capsys, "--bootstrap-servers", f"127.0.0.1:{port}", "label", "tx_known", "fraud"
    )
    assert code == 2 and out == ""
    assert err.startswith("rtfd: Broker unavailable: no broker acknowledged the label at")
    assert f"127.0.0.1:{port}" in err and err.count("\n") == 1
    assert time.monotonic() - began < 15
