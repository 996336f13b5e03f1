"""The read-only SQL panel refuses every write, escape and session change, and nothing changes.

Each attempt in the catalogue must be refused twice over: by the parse-tree guard on its own
(``SqlGuard.check``), and by ``QueryService.run`` with a one-line QueryError. After each attempt
no file under the data dir, the service's spill directory or the working directory was created
or changed (every file hashed before and after), and the views return what they returned before.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from rtfd.config import Settings, load_settings
from rtfd.query.guard import SqlGuard
from rtfd.query.service import VIEW_NAMES, QueryError, QueryService
from tests.unit.test_query import write_enriched

pytestmark = pytest.mark.unit

# {data}, {labels}, {enriched}, {temp} and {models} are filled in with the test's own paths.
COPY_TO = "COPY (SELECT * FROM alerts) TO '{labels}/x.parquet' (FORMAT parquet)"
REPLACE_ALERTS = "CREATE OR REPLACE VIEW alerts AS SELECT * FROM enriched_transactions LIMIT 0"

WRITES = [
    COPY_TO,
    "COPY alerts TO '{enriched}/event_date=2026-11-02/x.parquet' (FORMAT parquet)",
    "COPY (SELECT 1 AS a) TO '{data}/out.csv'",
    "COPY (SELECT 1 AS a) TO 'relative-out.csv'",
    "COPY labels FROM '{labels}/part-0.parquet'",
    "COPY labels FROM '/etc/passwd'",
    "EXPORT DATABASE '{labels}/dump'",
    "IMPORT DATABASE '{labels}'",
    "CREATE TABLE t AS SELECT 1",
    "CREATE TEMP TABLE t (a INTEGER)",
    "CREATE VIEW v AS SELECT 1",
    REPLACE_ALERTS,
    "create or replace view labels as select * from labels where false",
    "CREATE MACRO m(x) AS x + 1",
    "CREATE OR REPLACE MACRO read_text(x) AS TABLE SELECT 1",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CREATE TYPE mood AS ENUM ('a', 'b')",
    "CREATE SEQUENCE seq",
    "CREATE SCHEMA s",
    "CREATE INDEX i ON labels (label)",
    "INSERT INTO labels VALUES ('t1', 0, 'x', now())",
    "INSERT INTO labels SELECT * FROM labels",
    "UPDATE labels SET label = 0",
    "DELETE FROM labels",
    "TRUNCATE labels",
    "DROP VIEW alerts",
    "ALTER VIEW alerts RENAME TO old_alerts",
    "COMMENT ON VIEW alerts IS 'x'",
    "MERGE INTO labels USING labels AS s ON false WHEN NOT MATCHED THEN INSERT *",
    "ATTACH '{labels}/x.db' AS x",
    "ATTACH ':memory:' AS m",
    "DETACH memory",
    "USE system",
    "INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '{labels}/evil.duckdb_extension'",
    "UPDATE EXTENSIONS",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET temp_directory = '{labels}'",
    "SET GLOBAL threads = 1",
    "RESET lock_configuration",
    "RESET ALL",
    "SET VARIABLE x = 1",
    "PRAGMA enable_profiling",
    "PRAGMA profiling_output = '{labels}/profile.json'",
    "PRAGMA disable_optimizer",
    "CALL checkpoint()",
    "CALL pragma_version()",
    "CHECKPOINT",
    "FORCE CHECKPOINT",
    "VACUUM",
    "ANALYZE",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "BEGIN TRANSACTION",
    "PIVOT enriched_transactions ON user_id USING sum(amount)",
    "SELECT * FROM (PIVOT enriched_transactions ON user_id USING sum(amount))",
]
WRAPPED = [
    COPY_TO,
    "COPY labels FROM '{labels}/part-0.parquet'",
    REPLACE_ALERTS,
    "INSERT INTO labels SELECT * FROM labels",
    "ATTACH '{labels}/x.db' AS x",
    "SET enable_external_access = true",
    "INSTALL httpfs",
    "CALL checkpoint()",
    "EXPORT DATABASE '{labels}/dump'",
]
WRAPPERS = [
    "EXPLAIN {}",
    "EXPLAIN ANALYZE {}",
    "explain analyse {}",
    "EXPLAIN (ANALYZE) {}",
    "EXPLAIN (ANALYZE, FORMAT json) {}",
    "/* just a plan */ EXPLAIN ANALYZE {}",
    "EXPLAIN\n\t ANALYZE\n{}",
    "EXPLAIN/**/ANALYZE/**/{}",
    "EXPLAIN EXPLAIN ANALYZE {}",
]
TRICKS = [
    "SELECT 1; " + COPY_TO,
    "SELECT 1;" + REPLACE_ALERTS,
    "SELECT ';'; " + COPY_TO,
    "SELECT 1 /* ; */; " + COPY_TO,
    "SELECT 1 -- trailing\n; " + COPY_TO,
    COPY_TO + "; SELECT 1",
    "EXPLAIN SELECT 1; " + REPLACE_ALERTS,
    "EXPLAIN ANALYZE SELECT 1; " + COPY_TO,
    "/* SELECT */ " + COPY_TO,
    "-- SELECT\n" + COPY_TO,
    "cOpY (sElEcT * FrOm alerts) tO '{labels}/x.parquet'",
    "   \n\t " + REPLACE_ALERTS,
    "(" + COPY_TO + ")",
    "\u00a0" + COPY_TO,
    "\u2003EXPLAIN ANALYZE " + COPY_TO,
    "EXPLAIN\u00a0ANALYZE " + COPY_TO,
    "/* nested /* comment */ still */ " + COPY_TO,
    "SELECT 1\x00; " + COPY_TO,
    "WITH x AS (" + COPY_TO + ") SELECT 1",
    "with x as (COPY (SELECT 1 AS a) TO '{data}/cte.csv') select * from alerts",
    "WITH x AS (INSERT INTO labels SELECT * FROM labels RETURNING *) SELECT count(*) FROM x",
    "WITH x AS (UPDATE labels SET label = 0 RETURNING *) SELECT * FROM x",
    "WITH x AS (DELETE FROM labels RETURNING *) SELECT * FROM x",
    "WITH ok AS (SELECT 1), x AS (" + COPY_TO + ") SELECT * FROM ok",
    "SELECT * FROM (WITH x AS (" + COPY_TO + ") SELECT 1)",
    "EXPLAIN WITH x AS (" + COPY_TO + ") SELECT 1",
    "EXPLAIN ANALYZE WITH x AS (" + COPY_TO + ") SELECT 1",
    "EXPLAIN ANALYZE WITH x AS (DELETE FROM labels RETURNING *) SELECT * FROM x",
    "WITH x AS (SELECT 1) INSERT INTO labels SELECT * FROM labels",
    "WITH x AS (SELECT 1) " + REPLACE_ALERTS,
    "SELECT * FROM (" + COPY_TO + ")",
]
READS_OUTSIDE = [
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM read_csv('/proc/self/environ')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM read_ndjson_objects('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/*.parquet')",
    "SELECT * FROM read_parquet('{models}/x.parquet')",
    "SELECT * FROM read_csv('{models}/secret.csv')",
    "SELECT * FROM read_parquet('{labels}/part-0.parquet')",
    "SELECT * FROM parquet_scan('{labels}/part-0.parquet')",
    "SELECT * FROM parquet_metadata('{labels}/part-0.parquet')",
    "SELECT * FROM parquet_schema('{labels}/part-0.parquet')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/**')",
    "SELECT * FROM glob('{data}/**')",
    "SELECT * FROM read_duckdb('{labels}/x.db')",
    "SELECT * FROM '/etc/passwd'",
    'SELECT * FROM "/etc/passwd"',
    "FROM '/etc/passwd'",
    "SELECT * FROM '{labels}/part-0.parquet'",
    "SELECT * FROM '{models}/secret.csv'",
    "SELECT * FROM 'relative.csv'",
    "SELECT * FROM 'https://example.com/x.csv'",
    "SELECT * FROM alerts, '/etc/passwd'",
    "SELECT (SELECT count(*) FROM read_text('/etc/passwd'))",
    "SELECT * FROM alerts WHERE user_id IN (SELECT content FROM read_text('/etc/passwd'))",
    "SELECT * FROM alerts UNION ALL SELECT * FROM '/etc/passwd'",
    "DESCRIBE '/etc/passwd'",
    "SUMMARIZE '/etc/passwd'",
    "SHOW '/etc/passwd'",
    "DESCRIBE SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM pg_settings",
    "SELECT * FROM duckdb_logs",
    "SELECT * FROM system.main.duckdb_tables",
    "SELECT * FROM memory.main.alerts",
    "SELECT * FROM alerts AT (VERSION => 1)",
    "SHOW ALL TABLES",
    "SHOW DATABASES",
]
TABLE_FUNCTIONS = [
    "SELECT * FROM query('" + COPY_TO.replace("'", "''") + "')",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('alerts')",
    "SELECT * FROM query_table(['alerts', 'labels'])",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM duckdb_temporary_files()",
    "SELECT * FROM duckdb_variables()",
    "SELECT * FROM pragma_show('alerts')",
    "SELECT * FROM pragma_database_size()",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM force_checkpoint()",
    "SELECT * FROM enable_logging()",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM truncate_duckdb_logs()",
    "SELECT * FROM which_secret('s3://bucket/x', 's3')",
    "SELECT * FROM test_all_types()",
    "SELECT * FROM histogram(alerts, amount)",
    "SELECT * FROM system.main.range(3)",
]
SESSION_AND_SIDE_EFFECTS = [
    "SELECT setseed(0.5)",
    'SELECT "SETSEED"(0.5)',
    "SELECT main.setseed(0.5)",
    "SELECT nextval('seq')",
    "SELECT currval('seq')",
    "SELECT setval('seq', 1)",
    "SELECT write_log('x')",
    "SELECT sleep_ms(1)",
    "SELECT pg_sleep(1)",
    "SELECT getvariable('x')",
    "SELECT current_setting('allowed_directories')",
    "SELECT current_query()",
    "SELECT get_block_size('memory')",
    "SELECT error('x')",
    "SELECT setvariable('x', 1)",
    "SELECT 1 WHERE setseed(0.5) IS NULL",
    "SELECT * FROM alerts ORDER BY setseed(0.5)",
    "SELECT sum(amount) OVER (ORDER BY setseed(0.5)) FROM alerts",
    "SELECT * FROM alerts LIMIT (SELECT setseed(0.5))",
    "SELECT list_transform([1], lambda x: setseed(0.5))",
    "SELECT * FROM range(3) WHERE nextval('seq') > 0",
    "SELECT * FROM alerts WHERE amount > $1",
    "SELECT * FROM alerts WHERE amount > ?",
    "WITH x AS (SELECT setseed(0.5)) SELECT * FROM x",
    "SELECT " + "abs(" * 400 + "setseed(0.5)" + ")" * 400,
    "SELECT * FROM " + "(SELECT * FROM " * 150 + "read_text('/etc/passwd')" + ")" * 150,
]
CTE_TRICKS = [
    "WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM x",
    "WITH x AS MATERIALIZED (SELECT * FROM query('SELECT 1')) SELECT * FROM x",
    "WITH RECURSIVE r AS (SELECT * FROM glob('/**')) SELECT * FROM r",
    'WITH "/etc/passwd" AS (SELECT 1) SELECT * FROM "/etc/passwd"',
    'WITH "{labels}/part-0.parquet" AS (SELECT 1) SELECT 1',
    'SELECT * FROM (WITH ok AS (SELECT 1) SELECT 1), "/etc/passwd"',
    "WITH pg_settings AS (SELECT 1) SELECT * FROM pg_settings",
    "WITH duckdb_tables AS (SELECT 1) SELECT * FROM duckdb_tables",
    "WITH a AS (SELECT * FROM b), b AS (SELECT * FROM '/etc/passwd') SELECT * FROM a",
]


def _catalogue() -> list[pytest.ParameterSet]:
    attacks = WRITES + [w.format(s) for s in WRAPPED for w in WRAPPERS]
    attacks += TRICKS + READS_OUTSIDE + TABLE_FUNCTIONS + SESSION_AND_SIDE_EFFECTS + CTE_TRICKS
    assert len(set(attacks)) == len(attacks), "duplicate attack"
    return [pytest.param(sql, id=f"{i:03d}") for i, sql in enumerate(attacks)]


CATALOGUE = _catalogue()


@pytest.fixture
def settings() -> Settings:
    settings = load_settings()
    write_enriched(settings)
    secret = settings.data_dir / "models" / "secret.csv"
    secret.parent.mkdir(parents=True)
    secret.write_text("a\n1\n")
    return settings


@pytest.fixture
def service(settings: Settings) -> Iterator[QueryService]:
    service = QueryService(settings)
    (service.temp_dir / "spilled.csv").write_text("a\n1\n")  # something to find there
    yield service
    service.close()


def fill(template: str, settings: Settings, service: QueryService) -> str:
    return (
        template.replace("{data}", str(settings.data_dir))
        .replace("{labels}", str(settings.labels_dir))
        .replace("{enriched}", str(settings.enriched_dir))
        .replace("{models}", str(settings.data_dir / "models"))
        .replace("{temp}", str(service.temp_dir))
    )


def tree_state(*roots: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``roots``: kind, size, mtime and, for files, a hash of the content."""
    state: dict[str, tuple[object, ...]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            st = path.lstat()
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[str(path)] = ("file", st.st_size, st.st_mtime_ns, digest)
            else:
                state[str(path)] = ("dir", st.st_mtime_ns)
    return state


def view_contents(service: QueryService) -> dict[str, list[tuple[object, ...]]]:
    return {
        v: service.run(f"SELECT * FROM {v} ORDER BY ALL", limit=10_000).rows for v in VIEW_NAMES
    }


def test_the_catalogue_is_large() -> None:
    assert len(CATALOGUE) >= 30


@pytest.mark.parametrize("template", CATALOGUE)
def test_an_attack_is_refused_and_changes_nothing(
    template: str, settings: Settings, service: QueryService
) -> None:
    sql = fill(template, settings, service)
    views_before = view_contents(service)
    assert views_before["alerts"] and views_before["labels"]
    files_before = tree_state(settings.data_dir, service.temp_dir)
    cwd_before = set(os.listdir())

    with pytest.raises(QueryError) as by_guard:
        SqlGuard(VIEW_NAMES).check(sql)
    with pytest.raises(QueryError) as by_service:
        service.run(sql)

    for info in (by_guard, by_service):
        message = info.value.message
        assert message.strip() and "\n" not in message, message
    assert tree_state(settings.data_dir, service.temp_dir) == files_before
    assert set(os.listdir()) == cwd_before
    assert view_contents(service) == views_before
    assert service.run("SELECT 42").rows == [(42,)]


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        (COPY_TO, "COPY statements are not allowed"),
        ("EXPLAIN ANALYZE " + COPY_TO, "EXPLAIN ANALYZE of COPY is not allowed"),
        ("EXPLAIN " + REPLACE_ALERTS, "EXPLAIN of CREATE is not allowed"),
        ("WITH x AS (" + COPY_TO + ") SELECT 1", "COPY inside a query is not allowed"),
        (
            "EXPLAIN ANALYZE WITH x AS (DELETE FROM labels RETURNING *) SELECT 1",
            "DELETE inside a query is not allowed",
        ),
        ("SELECT 1; " + COPY_TO, "one statement at a time"),
        ("SELECT * FROM read_text('/etc/passwd')", "table function read_text() is not allowed"),
        ("SELECT * FROM '/etc/passwd'", "'/etc/passwd' is not a table here"),
        ("SELECT setseed(0.5)", "function setseed() is not allowed"),
        ("SELECT getvariable('x')", "function getvariable() is not allowed"),
        ("SELECT * FROM query('SELECT 1')", "table function query() is not allowed"),
        ('WITH "/etc/passwd" AS (SELECT 1) SELECT 1', "name the CTE '/etc/passwd'"),
        ("PIVOT alerts ON user_id USING sum(amount)", "MULTI statements are not allowed"),
    ],
)
def test_a_refusal_says_what_was_refused(settings: Settings, sql: str, needle: str) -> None:
    with pytest.raises(QueryError) as info:
        SqlGuard(VIEW_NAMES).check(sql)
    assert needle in info.value.message


def test_a_deep_but_plain_query_is_checked_and_runs(service: QueryService) -> None:
    sql = "SELECT * FROM " + "(SELECT * FROM " * 150 + "alerts" + ")" * 150
    assert len(service.run(sql).rows) == 3
    assert service.run("SELECT " + "abs(" * 100 + "-1" + ")" * 100).rows == [(1,)]


def test_explain_runs_only_the_checked_select() -> None:
    guard = SqlGuard(VIEW_NAMES)
    assert guard.check("/* plan */ explain  SELECT 1;") == "EXPLAIN SELECT 1"
    assert guard.check("EXPLAIN ANALYSE\nSELECT 1") == "EXPLAIN ANALYZE SELECT 1"
    assert guard.check(" SELECT 1 ; ") == "SELECT 1"


def raw(service: QueryService, sql: str) -> None:
    """Run ``sql`` on the service's connection directly, skipping the guard."""
    service._con.execute(sql).fetchall()


@pytest.mark.parametrize(
    "template",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/proc/self/environ')",
        "SELECT * FROM glob('/**')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_csv('{models}/secret.csv')",
        "COPY (SELECT 1) TO '{data}/out.csv'",
        "COPY (SELECT 1) TO 'relative-out.csv'",
        "ATTACH '{data}/x.db' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "SET temp_directory = '{data}'",
        "SET lock_configuration = false",
        "RESET lock_configuration",
        "SET python_enable_replacements = true",
        "SET autoload_known_extensions = true",
    ],
)
def test_duckdb_lockdown_holds_without_the_guard(
    template: str, settings: Settings, service: QueryService
) -> None:
    files_before = tree_state(settings.data_dir)
    cwd_before = set(os.listdir())
    with pytest.raises(duckdb.Error):
        raw(service, fill(template, settings, service))
    assert tree_state(settings.data_dir) == files_before
    assert set(os.listdir()) == cwd_before


def test_readable_directories_are_the_parquet_dirs_and_a_private_spill_dir(
    settings: Settings, service: QueryService
) -> None:
    (allowed,) = service._con.execute("SELECT current_setting('allowed_directories')").fetchone()
    expected = {f"{settings.enriched_dir}/", f"{settings.labels_dir}/", f"{service.temp_dir}/"}
    assert set(allowed) == expected
    assert f"{Path.cwd() / '.tmp'}/" not in allowed  # DuckDB's default spill dir is not used
    assert not service.temp_dir.resolve().is_relative_to(settings.data_dir.resolve())
    assert service.temp_dir.stat().st_mode & 0o077 == 0  # only this user can look inside
    (temp_dir,) = service._con.execute("SELECT current_setting('temp_directory')").fetchone()
    assert Path(temp_dir) == service.temp_dir


@pytest.mark.parametrize(
    "template",
    [
        "SELECT * FROM read_csv('{temp}/spilled.csv')",
        "SELECT * FROM read_text('{temp}/spilled.csv')",
        "SELECT * FROM read_blob('{temp}/*')",
        "SELECT * FROM glob('{temp}/*')",
        "SELECT * FROM '{temp}/spilled.csv'",
        'SELECT * FROM "{temp}/spilled.csv"',
        "DESCRIBE '{temp}/spilled.csv'",
        "COPY (SELECT 1) TO '{temp}/x.csv'",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '{temp}/x.csv'",
    ],
)
def test_the_spill_directory_cannot_be_named_in_a_query(
    template: str, settings: Settings, service: QueryService
) -> None:
    """DuckDB adds its temp_directory to allowed_directories itself; the guard keeps it out."""
    before = tree_state(service.temp_dir)
    with pytest.raises(QueryError):
        service.run(fill(template, settings, service))
    assert tree_state(service.temp_dir) == before


def test_the_spill_directory_is_removed_on_close(settings: Settings) -> None:
    service = QueryService(settings)
    assert service.temp_dir.is_dir()
    service.close()
    assert not service.temp_dir.exists()
