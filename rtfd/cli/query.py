"""``rtfd query SQL``: read-only SQL over the scored history."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rtfd.cli.flags import Number

if TYPE_CHECKING:
    from rtfd.config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "query",
        help="run read-only SQL over enriched_transactions, labels and alerts (DuckDB)",
    )
    parser.add_argument("sql", nargs="?", help="one SELECT statement (omit with --examples)")
    parser.add_argument(
        "--limit", type=Number(int, lo=1, hi=10**7), default=50, help="rows to print (default 50)"
    )
    parser.add_argument(
        "--csv", metavar="NAME.csv", help="export the whole result to <data>/exports"
    )
    parser.add_argument("--examples", action="store_true", help="print the saved example queries")
    parser.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.query.service import QueryError, QueryService

    service = QueryService(settings)
    try:
        if args.examples:
            for name, sql in service.examples().items():
                print(f"-- {name}\n{sql};\n")
            return 0
        if not args.sql:
            raise QueryError("give a SELECT statement, or --examples")
        if args.csv:
            rows = service.export_csv(args.sql, args.csv)
            print(f"rtfd: wrote {rows:,} rows to {service.exports_dir / args.csv}")
            return 0
        result = service.run(args.sql, limit=args.limit)
        print_table(result.columns, result.rows)
        more = " (more not shown)" if result.truncated else ""
        print(f"\n{result.row_count:,} rows{more} in {result.elapsed_s * 1000:.0f} ms")
        return 0
    finally:
        service.close()


def print_table(columns: list[str], rows: list[tuple[object, ...]]) -> None:
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
