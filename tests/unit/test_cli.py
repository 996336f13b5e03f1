"""The rtfd command: instant help, one-line errors, doctor."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rtfd.cli import main

pytestmark = pytest.mark.unit

HEAVY = ("pyspark", "textual", "confluent_kafka", "xgboost", "sklearn", "duckdb", "pandas")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from rtfd.cli import build_parser\n"
        "build_parser().format_help()\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("broker", "doctor"):
        assert command in out


def test_bad_setting_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--broker-port", "nope", "doctor"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtfd: Invalid configuration: setting broker_port")
    assert "\n" not in err


def test_doctor_without_docker_says_kafka_will_be_used(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtfd import sysinfo

    monkeypatch.setattr(sysinfo, "docker_engine_version", lambda: None)
    main(["doctor"])
    out = capsys.readouterr().out
    assert "docker engine" in out and "no engine answers" in out
    assert "auto -> kafka will be used" in out
