"""Render the "proven by tests" table of docs/reliability.md from a test run (``just guarantees``).

``pytest -m guarantee --guarantees-json PATH`` runs every test that tests/guarantees.py names and
writes what each did; this script turns that file alone into the table between
``<!-- guarantees:start -->`` and ``<!-- guarantees:end -->``: per guarantee, the tests by file
with how many passed, were skipped (and why) or failed. It exits 1 when a test failed, when a
guarantee's test prefix matched nothing (a renamed test must not leave a claim without proof),
or when no test ran at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.guarantees import GUARANTEES  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
START = "<!-- guarantees:start -->"
END = "<!-- guarantees:end -->"


def _source(run: dict[str, Any]) -> str:
    """The command whose run the table shows: ``just guarantees`` runs ``-m guarantee``; a run
    of the whole suite (``pytest --guarantees-json PATH``) proves the same tests."""
    selection = run.get("selection", "guarantee")
    if selection == "guarantee":
        return "`just guarantees`"
    if selection == "all tests":
        return "the whole suite (`pytest --guarantees-json PATH`, what `just test` runs)"
    return f"`pytest -m {selection!r} --guarantees-json PATH`"


def render(run: dict[str, Any]) -> tuple[str, list[str]]:
    """(the table's markdown, problems)."""
    tests: dict[str, dict[str, Any]] = run["tests"]
    problems: list[str] = []
    lines = [
        f"From {_source(run)} on {run['when'][:10]} (commit {run['commit']}): "
        f"{len(tests):,} test cases. A row's claim is what its tests assert; the result column "
        "is what they did in that run.",
        "",
        "| fault or attack | outcome asserted | tests | result |",
        "|---|---|---|---|",
    ]
    for index, g in enumerate(GUARANTEES):
        mine = {k: v for k, v in tests.items() if v["guarantee"] == index}
        for prefix in g.tests:
            if not any(k.startswith(prefix) for k in mine):
                problems.append(f"{g.fault!r}: no test ran for {prefix}")
        by_file: dict[str, Counter[str]] = defaultdict(Counter)
        reasons: set[str] = set()
        for nodeid, entry in mine.items():
            by_file[nodeid.split("::", 1)[0]][entry["outcome"]] += 1
            if entry["outcome"] == "skipped":
                reasons.add(str(entry.get("reason", "")))
            if entry["outcome"] == "failed":
                problems.append(f"failed: {nodeid}")
        files = ", ".join(f"`{f}`" for f in sorted(by_file))
        totals: Counter[str] = Counter()
        for c in by_file.values():
            totals.update(c)
        result = ", ".join(f"{totals[k]} {k}" for k in ("passed", "skipped", "failed") if totals[k])
        if reasons:
            result += " (skipped: " + "; ".join(sorted(r for r in reasons if r)) + ")"
        lines.append(f"| {g.fault} | {g.outcome} | {files} | {result or 'not run'} |")
    return "\n".join(lines), problems


def replace_block(text: str, body: str) -> str:
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return text.rstrip("\n") + f"\n\n## Proven by tests\n\n{START}\n{body}\n{END}\n"
    return text[: start + len(START)] + "\n" + body + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the file of --guarantees-json")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    try:
        run = json.loads(args.results.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"reliability: cannot read {args.results}: {e}", file=sys.stderr)
        return 1
    if not run.get("tests"):
        print(f"reliability: {args.results} holds no test", file=sys.stderr)
        return 1
    body, problems = render(run)
    text = args.doc.read_text(encoding="utf-8") if args.doc.exists() else "# Reliability\n"
    args.doc.write_text(replace_block(text, body), encoding="utf-8")
    print(f"reliability: wrote the table of {args.doc} ({len(run['tests'])} test cases)")
    for p in problems:
        print(f"reliability: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
