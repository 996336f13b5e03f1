"""Shared fixtures: per-test isolation of config and data dirs, and one real broker per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtfd.config import Settings, load_settings
from rtfd.sysinfo import free_port

__all__ = ["free_port"]

# The real user cache (downloaded jars) is shared by all tests so that jars are fetched once.
_REAL_CACHE = os.environ.get("RTFD_CACHE_DIR") or None


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data root, no config file and no stray RTFD_* variables; the
    log handlers rtfd installs during a test go with it (a console handler bound to a test's
    captured stderr would fail once that stream closes)."""
    import logging

    from rtfd import logs

    for var in list(os.environ):
        if var.startswith("RTFD_"):
            monkeypatch.delenv(var)
    home = tmp_path / "rtfd-home"
    monkeypatch.setenv("RTFD_HOME", str(home))
    monkeypatch.setenv("RTFD_CONFIG", str(tmp_path / "no-config.toml"))
    if _REAL_CACHE:
        monkeypatch.setenv("RTFD_CACHE_DIR", _REAL_CACHE)
    root = logging.getLogger()
    before = list(root.handlers)
    yield home
    for handler in list(root.handlers):
        if handler not in before and handler.get_name() in ("rtfd-file", "rtfd-console"):
            root.removeHandler(handler)
            handler.close()
    logs._CONFIGURED.clear()


@pytest.fixture
def settings(isolated_env: Path) -> Settings:
    """The default settings of the test's own home, its directories made (a module that needs
    other settings defines its own ``settings``)."""
    s = load_settings()
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def broker_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("broker-home")


@pytest.fixture(scope="session")
def kafka_broker(broker_home: Path) -> Iterator[object]:
    """One real embedded Apache Kafka for the whole test session, on free ports."""
    from rtfd.broker.kafka import EmbeddedKafka

    settings = load_settings(
        {
            "home": str(broker_home),
            "broker_backend": "kafka",
            "broker_port": free_port(),
            "broker_controller_port": free_port(),
        },
        environ={k: v for k, v in os.environ.items() if k == "RTFD_CACHE_DIR"},
    )
    broker = EmbeddedKafka(settings)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker_settings(kafka_broker: object, isolated_env: Path) -> Settings:
    """Settings of a test that talks to the session broker through the external backend."""
    return load_settings(
        {"broker_bootstrap_servers": kafka_broker.bootstrap_servers}  # type: ignore[attr-defined]
    )


@pytest.fixture
def unique_topic() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


# -- guarantees (tests/guarantees.py): `pytest -m guarantee --guarantees-json PATH` -------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--guarantees-json",
        default=None,
        metavar="PATH",
        help="write what every test of tests/guarantees.py did to PATH (scripts/reliability.py)",
    )


def _guarantee_of(nodeid: str) -> int | None:
    """The index of the guarantee whose test prefixes match ``nodeid`` (None: none)."""
    from tests.guarantees import GUARANTEES

    for i, g in enumerate(GUARANTEES):
        if nodeid.startswith(g.tests):
            return i
    return None


_OUTCOMES: dict[str, dict[str, object]] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of every guarantee (before ``-m`` selects)."""
    for item in items:
        index = _guarantee_of(item.nodeid)
        if index is not None:
            item.add_marker(pytest.mark.guarantee(index))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    index = _guarantee_of(report.nodeid)
    if index is None:
        return
    entry = _OUTCOMES.setdefault(report.nodeid, {"guarantee": index, "outcome": "passed"})
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and entry["outcome"] != "failed":
        entry["outcome"] = "skipped"
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        entry["reason"] = str(reason).removeprefix("Skipped: ")
    if report.when == "call":
        entry["seconds"] = round(report.duration, 2)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--guarantees-json", default=None)
    if not path:
        return
    import json
    import subprocess

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    from datetime import UTC, datetime

    Path(path).write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": commit + ("+changes" if dirty else ""),
                # What ran: `just guarantees` (-m guarantee) or the whole suite (`just test`).
                "selection": session.config.getoption("markexpr", default="") or "all tests",
                "tests": _OUTCOMES,
            },
            indent=1,
            sort_keys=True,
        ),
        encoding="utf-8",
    )
