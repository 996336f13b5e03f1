"""Decide from DuckDB's own parse of a query whether it only reads.

The first keyword of a query says little about what it does: ``EXPLAIN ANALYZE COPY ... TO``
is an EXPLAIN that writes a file, and ``SELECT * FROM read_text('/etc/passwd')`` is a SELECT
that reads outside the data dir. So the guard asks DuckDB's parser for the statement list
(``duckdb.extract_statements``) and for the whole parse tree (``json_serialize_sql``), and
accepts a query only if every part of the tree is on an allowlist:

- the text holds exactly one statement, of DuckDB's type SELECT (which also covers VALUES, set
  operations, DESCRIBE/SUMMARIZE and PIVOT/UNPIVOT with an ``IN`` list), or ``EXPLAIN`` /
  ``EXPLAIN ANALYZE`` directly followed by one such SELECT. A PIVOT without an ``IN`` list is a
  MULTI statement (it creates an ENUM type first) and is refused;
- every node of the tree is of a known read-only kind: query nodes, joins, subqueries, VALUES
  lists, PIVOT, DESCRIBE/SUMMARIZE and ordinary expressions. Prepared-statement parameters,
  time travel (``AT``) and any node kind a newer DuckDB adds are refused until someone has
  looked at them;
- a table in FROM is one of the panel's views or a CTE in scope, written without a schema or
  catalog. A CTE name is a plain identifier that names nothing in DuckDB's catalog, so a CTE
  cannot smuggle in a file path (replacement scan) or a system table;
- a table function is one of ``READ_TABLE_FUNCTIONS``: none reads a file, runs SQL text,
  attaches a database or changes the session;
- a scalar, aggregate or window function is a DuckDB built-in without side effects (DuckDB's
  own ``has_side_effects`` flag: nextval, setseed, write_log, sleep_ms, ...) that does not read
  the session either (getvariable, current_setting); a built-in macro passes only if its body,
  checked by these same rules, does.

DuckDB's own lockdown (see ``rtfd.query.service``) stays underneath as a second layer.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rtfd.query.errors import QueryError

# Table functions that compute rows from their arguments only.
READ_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
# Flagged by DuckDB as having side effects, but the only effect is drawing a random number.
RANDOM_FUNCTIONS = frozenset({"random", "uuid", "gen_random_uuid"})
# Free of side effects in DuckDB's sense, but they read the session's variables and settings.
SESSION_FUNCTIONS = frozenset({"getvariable", "current_setting"})
# Set-returning or special forms the binder handles itself; not listed as scalar functions.
BINDER_FUNCTIONS = frozenset({"unnest", "unlist"})

_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
_TABLE_REFS = frozenset(
    {
        "BASE_TABLE",
        "JOIN",
        "SUBQUERY",
        "TABLE_FUNCTION",
        "EXPRESSION_LIST",
        "EMPTY",
        "PIVOT",
        "SHOW_REF",
    }
)
_MODIFIERS = frozenset(
    {"ORDER_MODIFIER", "LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER", "DISTINCT_MODIFIER"}
)
_ORDERS = frozenset({"ORDER_DEFAULT", "ASCENDING", "DESCENDING"})
_NODE_TYPES = _QUERY_NODES | _TABLE_REFS | _MODIFIERS | _ORDERS
_EXPRESSIONS = frozenset(
    {
        "BETWEEN",
        "CASE",
        "CAST",
        "COLLATE",
        "COLUMN_REF",
        "COMPARISON",
        "CONJUNCTION",
        "CONSTANT",
        "FUNCTION",
        "LAMBDA",
        "LAMBDA_REF",
        "OPERATOR",
        "POSITIONAL_REFERENCE",
        "STAR",
        "SUBQUERY",
        "TYPE",
        "WINDOW",
    }
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Leading whitespace and comments, then EXPLAIN [ANALYZE]; the rest must parse as one SELECT.
_EXPLAIN = re.compile(
    r"(?:\s|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*EXPLAIN\b\s*(?P<analyze>ANALY[SZ]E\b)?(?P<inner>.*)\Z",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class _Rules:
    """What a parse tree may name: tables (views), functions, and names CTEs may not take."""

    views: frozenset[str]
    functions: frozenset[str]
    reserved: frozenset[str]

    def walk(self, root: Any, ctes: frozenset[str]) -> None:
        """Raise QueryError at a node of the tree ``root`` that is not a plain read.

        Iterative, so a deeply nested query is checked rather than exhausting Python's stack.
        """
        stack: list[tuple[Any, frozenset[str]]] = [(root, ctes)]
        while stack:
            node, scope = stack.pop()
            if isinstance(node, list):
                stack.extend((item, scope) for item in node)
            elif isinstance(node, dict):
                scope, children = self._check_node(node, scope)
                stack.extend((child, scope) for child in children)

    def _check_node(
        self, node: dict[str, Any], ctes: frozenset[str]
    ) -> tuple[frozenset[str], list[Any]]:
        """Check one node; return the CTE names in scope below it and the children to walk."""
        if "class" in node:
            self._expression(node)
            return ctes, list(node.values())
        kind = node.get("type")
        if not isinstance(kind, str):
            return ctes, list(node.values())
        if kind not in _NODE_TYPES:
            # DuckDB 2 parses WITH x AS (COPY ... TO / INSERT ... RETURNING) as a SELECT.
            if kind.endswith("_QUERY_NODE"):
                statement = kind.removesuffix("_QUERY_NODE")
                raise QueryError(f"read-only panel: {statement} inside a query is not allowed")
            raise QueryError(f"read-only panel: {_words(kind)} is not allowed")
        if kind in _QUERY_NODES:
            ctes = ctes | self._cte_names(node)
        elif kind == "BASE_TABLE":
            self._base_table(node, ctes)
        elif kind == "SHOW_REF":
            self._show(node)
        elif kind == "TABLE_FUNCTION":
            # The function node names a table function: check it as one, then its arguments.
            function = node["function"]
            self._table_function(function)
            return ctes, [
                *(v for k, v in function.items() if k != "class"),
                *(v for k, v in node.items() if k != "function"),
            ]
        return ctes, list(node.values())

    def _expression(self, node: dict[str, Any]) -> None:
        cls = node["class"]
        if cls not in _EXPRESSIONS:
            raise QueryError(f"read-only panel: {_words(cls)} expressions are not allowed")
        if cls in ("FUNCTION", "WINDOW"):
            name = _unqualified(node, "function_name", "schema", "catalog", "function")
            if name not in self.functions:
                raise QueryError(f"read-only panel: the function {name}() is not allowed")

    def _table_function(self, node: dict[str, Any]) -> None:
        name = _unqualified(node, "function_name", "schema", "catalog", "table function")
        if name not in READ_TABLE_FUNCTIONS:
            allowed = ", ".join(sorted(READ_TABLE_FUNCTIONS))
            raise QueryError(
                f"read-only panel: the table function {name}() is not allowed "
                f"(query the views, or use {allowed})"
            )

    def _base_table(self, node: dict[str, Any], ctes: frozenset[str]) -> None:
        name = _unqualified(node, "table_name", "schema_name", "catalog_name", "table")
        if node.get("at_clause") is not None:
            raise QueryError("read-only panel: time travel (AT ...) is not allowed")
        if name not in self.views and name not in ctes:
            raise QueryError(
                f"read-only panel: {node['table_name']!r} is not a table here "
                f"(query {', '.join(sorted(self.views))})"
            )

    def _show(self, node: dict[str, Any]) -> None:
        """DESCRIBE/SUMMARIZE of a query (walked as usual), SHOW of a view, and SHOW TABLES."""
        show, table = node.get("show_type"), str(node.get("table_name") or "")
        if node.get("query") is not None and show in ("DESCRIBE", "SUMMARY"):
            return
        if show == "SHOW" and table.lower() in self.views:
            return
        if show == "SHOW_SPECIAL" and table == '"tables"':
            return
        raise QueryError(f"read-only panel: SHOW {table or show} is not allowed")

    def _cte_names(self, node: dict[str, Any]) -> frozenset[str]:
        names = set()
        for entry in (node.get("cte_map") or {}).get("map", []):
            name = str(entry["key"])
            if not _IDENTIFIER.match(name) or name.lower() in self.reserved:
                raise QueryError(
                    f"read-only panel: name the CTE {name!r} with letters, digits and '_', "
                    "and not after a system table"
                )
            names.add(name.lower())
        return frozenset(names)


def _unqualified(node: dict[str, Any], name_key: str, schema: str, catalog: str, what: str) -> str:
    """The lower-cased name of a table or function written without schema or catalog."""
    name = str(node[name_key])
    path = (node.get("qualified_name") or {}).get("path", [name])
    if node.get(schema) or node.get(catalog) or [str(p).lower() for p in path] != [name.lower()]:
        raise QueryError(f"read-only panel: write the {what} {name!r} without a schema or catalog")
    return name.lower()


def _words(kind: str) -> str:
    return str(kind).replace("_", " ").lower()


def first_line(e: Exception) -> str:
    """The first line of an exception's message: errors are shown as one line."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class _Parser:
    """A private DuckDB connection that only parses; built once per process.

    It holds no data and runs no user SQL (the text is a bound parameter of
    ``json_serialize_sql``); it also supplies DuckDB's function catalogue for the allowlist.
    """

    def __init__(self) -> None:
        import duckdb

        self._lock = threading.Lock()
        self._con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "enable_external_access": False,
            },
        )
        self._con.execute("SET lock_configuration = true")
        self.reserved = frozenset(
            str(r[0]).lower()
            for r in self._con.execute(
                "SELECT view_name FROM duckdb_views() UNION SELECT table_name FROM duckdb_tables()"
            ).fetchall()
        )
        self.functions = self._read_only_functions()

    def tree(self, text: str) -> dict[str, Any]:
        """DuckDB's parse tree of one SELECT statement, or QueryError saying why not."""
        import duckdb

        with self._lock:
            try:
                rows = self._con.execute("SELECT json_serialize_sql(?)", [text]).fetchall()
            except duckdb.Error as e:
                raise QueryError(first_line(e)) from e
        try:
            parsed: dict[str, Any] = json.loads(rows[0][0])
        except RecursionError as e:
            raise QueryError("the query is nested too deeply") from e
        if parsed.get("error"):
            raise QueryError(first_line(Exception(parsed.get("error_message", "parse error"))))
        statements = parsed.get("statements", [])
        if len(statements) != 1:
            raise QueryError("one statement at a time, please")
        tree: dict[str, Any] = statements[0]
        return tree

    def _read_only_functions(self) -> frozenset[str]:
        """Built-in functions without side effects, and the macros built only from those."""
        rows = self._con.execute(
            "SELECT lower(function_name), function_type, coalesce(has_side_effects, false), "
            "macro_definition FROM duckdb_functions() "
            "WHERE internal AND schema_name IN ('main', 'pg_catalog')"
        ).fetchall()
        unsafe = {name for name, _, side, _ in rows if side} - RANDOM_FUNCTIONS
        unsafe |= SESSION_FUNCTIONS | {name for name, *_ in rows if name.startswith("__internal")}
        plain = {name for name, kind, *_ in rows if kind in ("scalar", "aggregate", "window")}
        allowed = frozenset((plain | BINDER_FUNCTIONS) - unsafe)
        macros: dict[str, list[str]] = {}
        for name, kind, _, body in rows:
            if kind == "macro" and name not in unsafe and name not in allowed:
                macros.setdefault(name, []).append(str(body))
        # A macro may call another macro: admit macros until no more pass.
        while True:
            rules = _Rules(frozenset(), allowed, self.reserved)
            passed = {name for name, bodies in macros.items() if self._bodies_pass(bodies, rules)}
            if not passed:
                return allowed
            allowed |= passed
            for name in passed:
                del macros[name]

    def _bodies_pass(self, bodies: list[str], rules: _Rules) -> bool:
        try:
            for body in bodies:
                rules.walk(self.tree(f"SELECT {body}"), frozenset())
        except QueryError:
            return False
        return True


_parser: _Parser | None = None
_parser_lock = threading.Lock()


def _shared_parser() -> _Parser:
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = _Parser()
        return _parser


class SqlGuard:
    """Accepts one read-only query over the given views, refusing everything else."""

    def __init__(self, views: Iterable[str]) -> None:
        self._parser = _shared_parser()
        self._rules = _Rules(
            views=frozenset(v.lower() for v in views),
            functions=self._parser.functions,
            reserved=self._parser.reserved,
        )

    def check(self, sql: str) -> str:
        """Return the text to run for ``sql``, or raise QueryError saying why it may not run."""
        text = sql.strip().rstrip(";").strip()
        if not text:
            raise QueryError("the query is empty")
        if "\x00" in text:
            raise QueryError("the query contains a NUL character")
        kind = _statement_type(text)
        if kind == "SELECT":
            self._check_select(text)
            return text
        if kind == "EXPLAIN":
            return self._check_explain(text)
        raise QueryError(f"read-only panel: {kind} statements are not allowed (SELECT only)")

    def _check_select(self, text: str) -> None:
        tree = self._parser.tree(text)
        if tree.get("named_param_map"):
            raise QueryError("read-only panel: query parameters are not allowed")
        self._rules.walk(tree.get("node"), frozenset())

    def _check_explain(self, text: str) -> str:
        """EXPLAIN [ANALYZE] of one checked SELECT; what runs is rebuilt from the checked text."""
        match = _EXPLAIN.match(text)
        usage = "write EXPLAIN or EXPLAIN ANALYZE, then one SELECT, without options"
        if match is None:
            raise QueryError(usage)
        inner = match["inner"].strip()
        try:
            kind = _statement_type(inner) if inner else "empty"
        except QueryError as e:
            raise QueryError(usage) from e
        prefix = "EXPLAIN ANALYZE" if match["analyze"] else "EXPLAIN"
        if kind != "SELECT":
            raise QueryError(f"read-only panel: {prefix} of {kind} is not allowed (SELECT only)")
        self._check_select(inner)
        return f"{prefix} {inner}"


def _statement_type(text: str) -> str:
    """DuckDB's type of the single statement in ``text`` (SELECT, EXPLAIN, COPY, ...)."""
    import duckdb

    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as e:
        raise QueryError(first_line(e)) from e
    if len(statements) != 1:
        raise QueryError("one statement at a time, please")
    try:
        return str(statements[0].type.name)
    except ValueError:  # a statement type newer than the Python client's enum (UPDATE EXTENSIONS)
        return "UNKNOWN"
