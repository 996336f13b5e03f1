"""The rtfd command: instant help, one-line errors, doctor."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rtfd
from rtfd.cli import COMMAND_MODULES, main

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


def _imported_modules(tree: ast.Module, package: str) -> set[str]:
    """Every module a file imports, at any depth (a lazy import inside a function counts);
    ``package`` resolves relative imports."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_only_the_cli_package_imports_the_cli() -> None:
    """The CLI sits on top: no module below it imports ``rtfd.cli`` (eagerly or lazily), so the
    stream, the TUI and the libraries can run without argparse's world."""
    root = Path(rtfd.__file__).parent
    cli_dir = root / "cli"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if cli_dir in path.parents:
            continue
        module = ".".join(("rtfd", *path.relative_to(root).with_suffix("").parts))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imported = _imported_modules(tree, package.removesuffix(".__init__"))
        if any(name == "rtfd.cli" or name.startswith("rtfd.cli.") for name in imported):
            offenders.append(module)
    assert offenders == []


def test_every_command_module_lives_in_the_cli_package() -> None:
    root = Path(rtfd.__file__).parent
    for name in COMMAND_MODULES:
        assert name.startswith("rtfd.cli."), name
        assert (root / "cli" / f"{name.removeprefix('rtfd.cli.')}.py").is_file(), name


def test_python_m_rtfd_cli_is_the_rtfd_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rtfd.cli", "query", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: rtfd query")


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
