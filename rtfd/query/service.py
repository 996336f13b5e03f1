"""A read-only DuckDB service over the enriched transactions and labels.

Three locks keep the SQL panel from reaching anything it should not:

1. only a single ``SELECT`` (or ``EXPLAIN``) statement is accepted — no COPY, ATTACH, CREATE,
   INSERT, SET, INSTALL/LOAD, PRAGMA, multi-statement scripts;
2. DuckDB's own external-access restriction: file access is disabled except for the Parquet
   directories under the data dir (``allowed_directories``), extensions never auto-install or
   auto-load, and the configuration is locked so a query cannot undo it;
3. CSV export is written by Python, only into ``<data>/exports``.

A query that runs longer than ``timeout_s`` is interrupted.
"""

from __future__ import annotations

import csv
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtfd.config import Settings
from rtfd.errors import RtfdError
from rtfd.schemas import LABEL, TRANSACTION

ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}
COUNT_LIMIT = 5_000_000  # beyond this the row count is reported as a lower bound

_SQL_TYPES = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "long": "BIGINT",
    "int": "INTEGER",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "list<string>": "VARCHAR[]",
}


class QueryError(RtfdError):
    """Bad SQL, a forbidden statement, or a query that ran out of time."""

    title = "Query error"


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


class QueryService:
    """One DuckDB connection, locked down, with the appliance's tables as views."""

    def __init__(self, settings: Settings, *, timeout_s: float = 30.0) -> None:
        import duckdb

        self.settings = settings
        self.timeout_s = timeout_s
        self.exports_dir = settings.data_dir / "exports"
        self._lock = threading.Lock()
        self._con = duckdb.connect(
            ":memory:",
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
        )
        self._roots = [settings.enriched_dir, settings.labels_dir]
        self._con.execute("SET allowed_directories = ?", [[str(p) + "/" for p in self._roots]])
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")
        self._signature: tuple[bool, bool] | None = None

    # -- views ----------------------------------------------------------------------------------
    def _refresh_views(self) -> None:
        """(Re)create the views when Parquet files first appear; cheap when nothing changed."""
        enriched = self.settings.enriched_dir
        labels = self.settings.labels_dir
        has_enriched = any(enriched.glob("*/*.parquet")) if enriched.exists() else False
        has_labels = any(labels.glob("**/*.parquet")) if labels.exists() else False
        signature = (has_enriched, has_labels)
        if signature == self._signature:
            return
        if has_enriched:
            body = (
                f"SELECT * FROM read_parquet('{enriched}/*/*.parquet', "
                "hive_partitioning = true, union_by_name = true)"
            )
        else:
            body = _empty_view(
                [(f.name, _SQL_TYPES[f.type]) for f in TRANSACTION.fields]
                + [("fraud_score", "DOUBLE"), ("is_fraud", "BOOLEAN"), ("model_version", "VARCHAR")]
            )
        self._con.execute(f"CREATE OR REPLACE VIEW enriched_transactions AS {body}")
        if has_labels:
            body = f"SELECT * FROM read_parquet('{labels}/**/*.parquet', union_by_name = true)"
        else:
            body = _empty_view([(f.name, _SQL_TYPES[f.type]) for f in LABEL.fields])
        self._con.execute(f"CREATE OR REPLACE VIEW labels AS {body}")
        self._con.execute(
            "CREATE OR REPLACE VIEW alerts AS SELECT * FROM enriched_transactions WHERE is_fraud"
        )
        self._signature = signature

    # -- queries --------------------------------------------------------------------------------
    @staticmethod
    def check_sql(sql: str) -> str:
        """Return the single allowed statement in ``sql`` or raise QueryError saying why not."""
        import duckdb

        text = sql.strip().rstrip(";").strip()
        if not text:
            raise QueryError("the query is empty")
        try:
            statements = duckdb.extract_statements(text)
        except duckdb.Error as e:
            raise QueryError(_first_line(e)) from e
        if len(statements) != 1:
            raise QueryError("one statement at a time, please")
        kind = str(statements[0].type).rsplit(".", 1)[-1]
        if kind not in ALLOWED_STATEMENTS:
            raise QueryError(f"read-only panel: {kind} statements are not allowed (SELECT only)")
        return text

    def run(self, sql: str, limit: int | None = None) -> QueryResult:
        """Run one read-only query; at most ``limit`` (default: query_row_cap) rows come back."""
        import duckdb

        cap = limit or self.settings.query_row_cap
        text = self.check_sql(sql)
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
                raise QueryError(_first_line(e)) from e
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
        with self._lock:
            self._con.close()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
