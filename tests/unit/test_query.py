"""The read-only DuckDB service, against a real DuckDB over real Parquet files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rtfd.config import Settings, load_settings
from rtfd.query.service import QueryError, QueryService

pytestmark = pytest.mark.unit


@pytest.fixture
def settings() -> Settings:
    return load_settings()


def write_enriched(settings: Settings, n: int = 30) -> None:
    part = settings.enriched_dir / "event_date=2026-11-01"
    part.mkdir(parents=True)
    table = pa.table(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "user_id": [f"u{i % 5}" for i in range(n)],
            "amount": [float(i + 1) for i in range(n)],
            "timestamp": pa.array(
                [datetime(2026, 11, 1, 10, i % 60, tzinfo=UTC) for i in range(n)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "fraud_score": [i / n for i in range(n)],
            "is_fraud": [i >= n - 3 for i in range(n)],
            "model_version": ["v0001"] * n,
        }
    )
    pq.write_table(table, part / "part-0.parquet")
    settings.labels_dir.mkdir(parents=True)
    labels = pa.table(
        {
            "transaction_id": [f"t{n - 1}", f"t{n - 2}"],
            "label": pa.array([1, 1], pa.int32()),
            "fraud_type": ["card_testing", "card_testing"],
            "reported_at": pa.array(
                [datetime(2026, 11, 3, tzinfo=UTC)] * 2, pa.timestamp("ms", tz="UTC")
            ),
        }
    )
    pq.write_table(labels, settings.labels_dir / "part-0.parquet")


def test_views_exist_and_are_empty_before_any_data(settings: Settings) -> None:
    service = QueryService(settings)
    for view in ("enriched_transactions", "labels", "alerts"):
        assert service.run(f"SELECT count(*) FROM {view}").rows == [(0,)]


def test_queries_see_the_parquet_with_a_row_cap(settings: Settings) -> None:
    write_enriched(settings)
    service = QueryService(settings)
    result = service.run("SELECT * FROM enriched_transactions ORDER BY amount", limit=10)
    assert len(result.rows) == 10 and result.row_count == 30 and result.truncated
    assert "fraud_score" in result.columns and "event_date" in result.columns
    assert service.run("SELECT count(*) FROM alerts").rows == [(3,)]
    joined = service.run(
        "SELECT count(*) FROM alerts JOIN labels USING (transaction_id) WHERE label = 1"
    )
    assert joined.rows == [(2,)]


def test_every_example_query_runs(settings: Settings) -> None:
    write_enriched(settings)
    service = QueryService(settings)
    for name, sql in service.examples().items():
        result = service.run(sql)
        assert result.columns, name


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("COPY (SELECT 1) TO 'out.csv'", "COPY statements are not allowed"),
        ("ATTACH 'evil.db'", "ATTACH statements are not allowed"),
        ("CREATE TABLE t AS SELECT 1", "CREATE statements are not allowed"),
        ("INSERT INTO labels VALUES (1)", "not allowed"),
        ("SET enable_external_access = true", "not allowed"),
        ("INSTALL httpfs", "not allowed"),
        ("SELECT 1; SELECT 2", "one statement at a time"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not allowed"),
        ("SELECT * FROM read_text('/etc/hostname')", "read_text() is not allowed"),
        ("SELECT * FROM glob('/root/*')", "glob() is not allowed"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'out.csv'", "EXPLAIN ANALYZE of COPY is not allowed"),
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("", "empty"),
    ],
)
def test_writes_and_outside_reads_are_refused(settings: Settings, sql: str, needle: str) -> None:
    service = QueryService(settings)
    with pytest.raises(QueryError) as info:
        service.run(sql)
    assert needle in info.value.message
    assert service.run("SELECT 42").rows == [(42,)]  # still usable afterwards


def test_reads_inside_the_data_dir_but_outside_the_tables_are_refused(settings: Settings) -> None:
    secret = settings.data_dir / "models" / "secret.csv"
    secret.parent.mkdir(parents=True)
    secret.write_text("a\n1\n")
    for sql in (f"SELECT * FROM read_csv('{secret}')", f"SELECT * FROM '{secret}'"):
        with pytest.raises(QueryError, match=r"not allowed|not a table here"):
            QueryService(settings).run(sql)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT count(*), round(sum(amount), 2) FROM enriched_transactions", [(30, 465.0)]),
        (
            "SELECT user_id, count(*) AS n, max(fraud_score) > 0.9 AS risky "
            "FROM enriched_transactions GROUP BY ALL HAVING n > 5 ORDER BY user_id LIMIT 2",
            [("u0", 6, False), ("u1", 6, False)],
        ),
        (
            "SELECT transaction_id, row_number() OVER (PARTITION BY user_id ORDER BY amount DESC) "
            "AS r FROM enriched_transactions QUALIFY r = 1 ORDER BY transaction_id",
            [("t25", 1), ("t26", 1), ("t27", 1), ("t28", 1), ("t29", 1)],
        ),
        (
            "SELECT sum(amount) OVER (ORDER BY amount ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) "
            "FROM enriched_transactions ORDER BY amount LIMIT 3",
            [(1.0,), (3.0,), (5.0,)],
        ),
        (
            "WITH confirmed AS (SELECT transaction_id FROM labels WHERE label = 1) "
            "SELECT count(*) FROM alerts WHERE transaction_id IN (SELECT * FROM confirmed)",
            [(2,)],
        ),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
            "SELECT list(n ORDER BY n) FROM r",
            [([1, 2, 3],)],
        ),
        (
            "SELECT a.transaction_id, l.fraud_type FROM alerts a LEFT JOIN labels l "
            "USING (transaction_id) ORDER BY 1",
            [("t27", None), ("t28", "card_testing"), ("t29", "card_testing")],
        ),
        (
            "SELECT * FROM (PIVOT (SELECT is_fraud FROM alerts) ON is_fraud IN (true) "
            "USING count(*))",
            [(3,)],
        ),
        ("SELECT count(*) FROM labels UNION ALL SELECT count(*) FROM alerts", [(2,), (3,)]),
        ("FROM (VALUES (1, 'a')) t(x, y) SELECT y", [("a",)]),
        ("SELECT sum(i) FROM range(5) r(i)", [(10,)]),
        ("SELECT count(*) FROM (DESCRIBE labels)", [(4,)]),
        ("SELECT column_name FROM (SUMMARIZE alerts) WHERE column_name = 'amount'", [("amount",)]),
        (
            "SELECT list_transform([1, 2], lambda x: x * 2), "
            "date_trunc('day', max(timestamp))::DATE::VARCHAR FROM alerts",
            [([2, 4], "2026-11-01")],
        ),
    ],
)
def test_analyst_queries_run(
    settings: Settings, sql: str, expected: list[tuple[object, ...]]
) -> None:
    write_enriched(settings)
    service = QueryService(settings)
    assert service.run(sql).rows == expected


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN SELECT * FROM alerts",
        "explain analyze SELECT count(*) FROM enriched_transactions GROUP BY user_id",
        "/* the plan */ EXPLAIN SELECT 1;",
        "DESCRIBE alerts",
        "SHOW TABLES",
    ],
)
def test_plans_and_descriptions_run(settings: Settings, sql: str) -> None:
    write_enriched(settings)
    result = QueryService(settings).run(sql)
    assert result.rows and result.columns


def test_a_long_query_is_interrupted(settings: Settings) -> None:
    service = QueryService(settings, timeout_s=0.5)
    with pytest.raises(QueryError, match="longer than"):
        service.run("SELECT count(*) FROM range(100000000000) a")


def test_csv_export_stays_in_the_exports_dir(settings: Settings, tmp_path: Path) -> None:
    write_enriched(settings)
    service = QueryService(settings)
    assert service.export_csv("SELECT * FROM alerts", "alerts.csv") == 3
    out = settings.data_dir / "exports" / "alerts.csv"
    assert out.read_text().splitlines()[0].startswith("transaction_id")
    with pytest.raises(QueryError, match="exports go under"):
        service.export_csv("SELECT 1", tmp_path / "elsewhere.csv")
    with pytest.raises(QueryError, match="exports go under"):
        service.export_csv("SELECT 1", "../../escape.csv")
    with pytest.raises(QueryError, match="not allowed"):
        service.export_csv("COPY (SELECT 1) TO 'x.csv'", "x.csv")
