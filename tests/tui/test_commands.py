"""``rtfd tui`` as a command: instant help, no textual at import, a clear error without a tty."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rtfd.cli import main

pytestmark = pytest.mark.unit


def test_the_tui_command_module_imports_no_textual() -> None:
    code = (
        "import sys\n"
        "import rtfd.cli.tui\n"
        "from rtfd.cli import build_parser\n"
        "build_parser().parse_args(['tui', '--rate', '50'])\n"
        "heavy = [m for m in ('textual', 'pyspark') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tui_help_lists_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["tui", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--rate", "--no-generator", "--no-stream"):
        assert flag in out


def test_tui_without_a_terminal_says_so_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rtfd.cli", "tui"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "rtfd: No terminal: rtfd tui needs an interactive terminal; use `rtfd up` to run headless"
    )
    assert result.stdout == ""
