"""Benchmarks: `just bench`. Placeholder until the benchmark issue lands."""

from __future__ import annotations

import sys


def main() -> int:
    print("rtfd bench: the benchmark suite is not written yet (see the benchmark issue).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
