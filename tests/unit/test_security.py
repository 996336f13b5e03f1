"""Security surfaces that need no JVM: secrets stay out of logs and config dumps."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtfd.cli import main

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-SASL-p4ssw0rd"


def test_a_sasl_password_from_the_environment_never_reaches_the_log(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTFD_CLIENT_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("RTFD_CLIENT_SASL_USERNAME", "alice")
    monkeypatch.setenv("RTFD_LOG_LEVEL", "DEBUG")
    main(["doctor"])
    out = capsys.readouterr()
    log_file = isolated_env / "logs" / "rtfd.log"
    text = log_file.read_text(encoding="utf-8")
    assert "sasl.password" in text  # the setting is logged ...
    assert "***" in text  # ... masked
    assert SECRET not in text
    assert SECRET not in out.out + out.err
