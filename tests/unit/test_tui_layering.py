"""The house rules of the console's code, checked on the source: no import circles in rtfd.tui,
textual only under rtfd/tui, the console's bookkeeping importable without textual, and the TUI
reaching the rest of rtfd only through the seams docs/design.md names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

RTFD = Path(__file__).resolve().parents[2] / "rtfd"
TUI = RTFD / "tui"

#: What rtfd/tui may import at run time from the rest of rtfd (docs/design.md, "The console's
#: seam"): the supervisor and its types, read-only views, and small shared modules.
TUI_MAY_IMPORT = (
    "rtfd.components",
    "rtfd.supervisor",
    "rtfd.config",
    "rtfd.errors",
    "rtfd.schemas",
    "rtfd.query.labels",
    "rtfd.features.names",
    "rtfd.query.service",
    "rtfd.ml.registry",
    "rtfd.monitor.report",
    "rtfd.broker.clients",  # the alert feed's consumer, made by the one Kafka client factory
    "rtfd.broker.admin",  # the alert feed's one-line refusal text (it is a topic consumer)
)
#: ``rtfd tui``'s command module belongs to the CLI's wiring.
NOT_THE_CONSOLE = {"commands.py"}


def imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """Modules ``path`` imports anywhere (functions too); ``runtime_only`` leaves out those under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def tui_graph() -> dict[str, set[str]]:
    names = {p.stem for p in TUI.glob("*.py")}
    graph = {}
    for path in TUI.glob("*.py"):
        targets = {m.split(".")[2] for m in imports(path) if m.startswith("rtfd.tui.")}
        graph[path.stem] = {t for t in targets if t in names} - {path.stem}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                found.append(path)
            elif nxt not in path and nxt > start:  # each cycle once, from its smallest name
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_the_cycle_finder_finds_a_two_file_circle() -> None:
    assert cycles({"app": {"panels"}, "panels": {"app"}, "format": set()}) == [["app", "panels"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_rtfd_tui_has_no_import_circles_even_through_type_checking_or_function_imports() -> None:
    assert cycles(tui_graph()) == []


def test_textual_is_imported_only_under_rtfd_tui() -> None:
    offenders = [
        str(path.relative_to(RTFD))
        for path in RTFD.rglob("*.py")
        if TUI not in path.parents and any(m.split(".")[0] == "textual" for m in imports(path))
    ]
    assert offenders == []


def test_the_console_reaches_the_rest_of_rtfd_only_through_its_seams() -> None:
    wrong = {}
    for path in TUI.glob("*.py"):
        if path.name in NOT_THE_CONSOLE:
            continue
        outside = {
            m
            for m in imports(path, runtime_only=True)
            if m.startswith("rtfd.") and not m.startswith("rtfd.tui")
        }
        bad = {
            m
            for m in outside
            if not any(
                m == a or m.startswith(f"{a}.") or a.startswith(f"{m}.") for a in TUI_MAY_IMPORT
            )
        }
        if bad:
            wrong[path.name] = sorted(bad)
    assert wrong == {}


@pytest.mark.parametrize(
    "module",
    ["rtfd.components", "rtfd.supervisor", "rtfd.tui.live_stats", "rtfd.tui.control"],
)
def test_the_seam_and_the_live_bookkeeping_import_without_textual(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "heavy = [m for m in ('textual', 'pyspark', 'confluent_kafka') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
