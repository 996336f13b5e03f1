"""A read-only DuckDB service over the enriched transactions and labels.

Three locks keep the SQL panel from reaching anything it should not:

1. ``rtfd.query.guard`` decides from DuckDB's own parse tree, not from the first keyword,
   whether a query may run: one SELECT (or EXPLAIN [ANALYZE] of one) whose every node, table,
   table function and function is on an allowlist of plain reads over the panel's views. So
   ``EXPLAIN ANALYZE COPY ...``, a CTE or subquery hiding a write, ``read_text('/etc/passwd')``,
   a path as a table name, ``query('...')``, ``setseed``/``nextval`` and multi-statement
   scripts are all refused before DuckDB binds anything;
2. DuckDB's own lockdown, underneath: file access is disabled except for the Parquet
   directories (``allowed_directories``), extensions never auto-install or auto-load, Python
   objects are never scanned by name, and the configuration is locked so a query cannot undo
   it. DuckDB adds its spill directory (``temp_directory``) to ``allowed_directories`` by
   itself, so each service spills into a fresh private directory outside the data dir, which
   the guard never lets a query name;
3. CSV export is written by Python, only into ``<data>/exports``.

A query that runs longer than ``timeout_s`` is interrupted.
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtfd.config import Settings
from rtfd.query.errors import QueryError
from rtfd.query.guard import SqlGuard, first_line
from rtfd.schemas import LABEL, TRANSACTION

if TYPE_CHECKING:
    import duckdb

__all__ = ["COUNT_LIMIT", "VIEW_NAMES", "QueryError", "QueryResult", "QueryService"]

COUNT_LIMIT = 5_000_000  # beyond this the row count is reported as a lower bound
VIEW_NAMES = ("enriched_transactions", "labels", "alerts")

_SQL_TYPES = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "long": "BIGINT",
    "int": "INTEGER",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "list<string>": "VARCHAR[]",
}


@dataclass(frozen=True)
class QueryResult:
    """Rows of one query: at most ``limit`` rows, with the total row count."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    row_count: int
    truncated: bool
    elapsed_s: float


def _empty_view(fields: list[tuple[str, str]]) -> str:
    cols = ", ".join(f"NULL::{t} AS {n}" for n, t in fields)
    return f"SELECT {cols} WHERE false"


def _sql_list(paths: list[str]) -> str:
    """A SQL list literal of file paths."""
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def view_definitions(settings: Settings) -> dict[str, str]:
    """The SELECT behind each of ``VIEW_NAMES``, given the Parquet files present now.

    This is the one place that decides which files the views read; an empty view with the
    right columns stands in until the first file appears.
    """
    from rtfd.lake import visible_files

    # The lake's visible files (rtfd.lake): during a compaction a merged file and the files it
    # replaces are both on disk for a while, and a glob would read those rows twice.
    enriched = visible_files(settings.enriched_dir)
    labels = visible_files(settings.labels_dir)
    if enriched:
        enriched_body = (
            f"SELECT * FROM read_parquet({_sql_list(enriched)}, "
            "hive_partitioning = true, union_by_name = true)"
        )
    else:
        enriched_body = _empty_view(
            [(f.name, _SQL_TYPES[f.type]) for f in TRANSACTION.fields]
            + [("fraud_score", "DOUBLE"), ("is_fraud", "BOOLEAN"), ("model_version", "VARCHAR")]
        )
    if labels:
        labels_body = f"SELECT * FROM read_parquet({_sql_list(labels)}, union_by_name = true)"
    else:
        labels_body = _empty_view([(f.name, _SQL_TYPES[f.type]) for f in LABEL.fields])
    return {
        "enriched_transactions": enriched_body,
        "labels": labels_body,
        "alerts": "SELECT * FROM enriched_transactions WHERE is_fraud",
    }


def _locked_connection(readable: list[Path], temp_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that can read only ``readable`` (and its own spill directory)."""
    import duckdb

    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "temp_directory": str(temp_dir),
        },
    )
    con.execute("SET allowed_directories = ?", [[str(p) + "/" for p in readable]])
    con.execute("SET enable_external_access = false")
    # The Python client would otherwise scan a DataFrame in the caller's frame named in FROM.
    con.execute("SET python_enable_replacements = false")
    con.execute("SET lock_configuration = true")
    return con


class QueryService:
    """One DuckDB connection, locked down, with the appliance's tables as views."""

    def __init__(self, settings: Settings, *, timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.exports_dir = settings.data_dir / "exports"
        self._lock = threading.Lock()
        self._guard = SqlGuard(VIEW_NAMES)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rtfd-query-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.temp_dir, True)
        self._con = _locked_connection([settings.enriched_dir, settings.labels_dir], self.temp_dir)
        self._views: dict[str, str] = {}

    def _refresh_views(self) -> None:
        """(Re)create the views when their definitions change; cheap when nothing changed."""
        views = view_definitions(self.settings)
        if views == self._views:
            return
        for name, body in views.items():
            self._con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
        self._views = views

    def run(self, sql: str, limit: int | None = None) -> QueryResult:
        """Run one read-only query; at most ``limit`` (default: query_row_cap) rows come back."""
        import duckdb

        cap = limit or self.settings.query_row_cap
        text = self._guard.check(sql)
        with self._lock:
            self._refresh_views()
            timer = threading.Timer(self.timeout_s, self._con.interrupt)
            started = time.perf_counter()
            timer.start()
            try:
                reader = self._con.sql(text).to_arrow_reader(8192)
                columns = list(reader.schema.names)
                rows: list[tuple[Any, ...]] = []
                total = 0
                for batch in reader:
                    if len(rows) < cap:
                        take = batch.slice(0, cap - len(rows)).to_pylist()
                        rows.extend(tuple(r[c] for c in columns) for r in take)
                    total += batch.num_rows
                    if total >= COUNT_LIMIT:
                        break
            except duckdb.InterruptException as e:
                raise QueryError(f"the query ran longer than {self.timeout_s:.0f} s") from e
            except duckdb.Error as e:
                raise QueryError(first_line(e)) from e
            finally:
                timer.cancel()
        return QueryResult(columns, rows, total, total > len(rows), time.perf_counter() - started)

    def export_csv(self, sql: str, path: Path | str) -> int:
        """Write the whole result of ``sql`` as CSV under ``<data>/exports``; returns the rows."""
        if "\x00" in str(path):  # resolve() would raise ValueError
            raise QueryError("export file names use letters, digits, '.', '-', '_' and end in .csv")
        target = Path(path)
        if not target.is_absolute():
            target = self.exports_dir / target
        target = target.resolve()
        if not target.is_relative_to(self.exports_dir.resolve()):
            raise QueryError(f"exports go under {self.exports_dir}")
        if not re.fullmatch(r"[\w.\-]+\.csv", target.name):
            raise QueryError("export file names use letters, digits, '.', '-', '_' and end in .csv")
        result = self.run(sql, limit=COUNT_LIMIT)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(result.columns)
            writer.writerows(result.rows)
        tmp.replace(target)
        return len(result.rows)

    def examples(self) -> dict[str, str]:
        """Saved example queries for the panel."""
        maturity = self.settings.label_maturity_days
        return {
            "Top risky users": (
                "SELECT user_id, count(*) AS txns, round(max(fraud_score), 3) AS max_score,\n"
                "       count(*) FILTER (WHERE is_fraud) AS alerts,\n"
                "       round(sum(amount), 2) AS spent\n"
                "FROM enriched_transactions\nGROUP BY user_id\nORDER BY max_score DESC\nLIMIT 20"
            ),
            "Alert precision by day (matured labels)": (
                "SELECT CAST(e.timestamp AS DATE) AS day,\n"
                "       count(*) FILTER (WHERE e.is_fraud) AS alerts,\n"
                "       count(*) FILTER (WHERE e.is_fraud AND l.label = 1) AS confirmed,\n"
                "       round(confirmed / nullif(alerts, 0), 3) AS precision,\n"
                "       count(*) FILTER (WHERE l.label = 1) AS fraud_reported\n"
                "FROM enriched_transactions e LEFT JOIN labels l USING (transaction_id)\n"
                f"WHERE e.timestamp < now() - INTERVAL {int(maturity * 24)} HOUR\n"
                "GROUP BY day ORDER BY day"
            ),
            "Score distribution": (
                "SELECT floor(fraud_score * 20) / 20 AS score_bucket, count(*) AS txns,\n"
                "       count(*) FILTER (WHERE is_fraud) AS alerts\n"
                "FROM enriched_transactions GROUP BY score_bucket ORDER BY score_bucket"
            ),
            "Latest alerts": (
                "SELECT timestamp, transaction_id, user_id, amount,\n"
                "       round(fraud_score, 3) AS score, model_version\n"
                "FROM alerts ORDER BY timestamp DESC LIMIT 50"
            ),
        }

    def close(self) -> None:
        """Close the connection and remove the spill directory."""
        with self._lock:
            self._con.close()
        self._cleanup()
