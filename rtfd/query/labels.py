"""Which label counts for a transaction: chargebacks and analysts' decisions merged (DuckDB SQL).

The labels Parquet holds every LABEL record that reached ``fraud_labels``: chargeback reports
(``source`` absent or ``chargeback``) and analysts' decisions from the console or ``rtfd label``
(``source = analyst``, ``withdrawn`` on an undo). The rule, documented in docs/ml.md:

1. a chargeback outranks an analyst's label, whenever it arrived (in practice it comes later:
   the card holder disputes weeks after the analyst decided) — its ``max(label)`` counts;
2. otherwise the analyst's latest record counts (by ``reported_at``; a withdrawal at the same
   millisecond as a decision wins), unless it is a withdrawal: then the transaction has no
   analyst label and waits for maturity like any other;
3. a transaction with a standing analyst verdict counts for training at once (with the
   chargeback's label if one disagrees); one without waits until it matured
   (``label_maturity_days``), then no chargeback means legitimate.

Labels written before ``source`` and ``withdrawn`` existed lack the columns: the SQL stands in
NULLs for them, so old lakes read as chargebacks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from rtfd.schemas import LABEL, format_timestamp

if TYPE_CHECKING:
    import duckdb

    from rtfd.config import Settings

Verdict = Literal["fraud", "legit"]
#: The label value of each verdict an analyst can give.
VERDICTS: dict[str, int] = {"fraud": 1, "legit": 0}


@dataclass(frozen=True)
class AnalystDecision:
    """An analyst's verdict on one transaction, or (``withdrawn``) the undo of one."""

    transaction_id: str
    verdict: Verdict
    decided_at: datetime
    withdrawn: bool = False

    def record(self) -> dict[str, Any]:
        """The LABEL record published to ``fraud_labels`` (checked against the schema)."""
        record: dict[str, Any] = {
            "transaction_id": self.transaction_id,
            "label": VERDICTS[self.verdict],
            "reported_at": format_timestamp(self.decided_at),
            "source": "analyst",
        }
        if self.withdrawn:
            record["withdrawn"] = True
        LABEL.validate(record, now=self.decided_at)
        return record


#: The optional LABEL columns the rule reads, each with its SQL type.
OPTIONAL_COLUMNS = {"source": "VARCHAR", "withdrawn": "BOOLEAN"}


def label_columns(con: duckdb.DuckDBPyConnection, files: list[str]) -> set[str]:
    """The column names of the labels Parquet ``files`` (their union)."""
    rows = con.execute(
        "DESCRIBE SELECT * FROM read_parquet($l, hive_partitioning = true, union_by_name = true)",
        {"l": files},
    ).fetchall()
    return {str(r[0]) for r in rows}


def _raw_sql(columns: set[str], param: str, source: str | None = None) -> str:
    """Every label record, typed, with NULLs for optional columns the files lack; read from the
    files in parameter ``param``, or from ``source`` (a view or table over them) if given."""
    optional = ", ".join(
        f"{name}" if name in columns else f"NULL::{sql_type} AS {name}"
        for name, sql_type in OPTIONAL_COLUMNS.items()
    )
    return (
        "SELECT transaction_id, label::INTEGER AS label, "
        "CAST(reported_at AS TIMESTAMPTZ) AS reported_at, "
        f"{optional} FROM "
        + (source or f"read_parquet(${param}, hive_partitioning = true, union_by_name = true)")
    )


def chargeback_labels_sql(columns: set[str], *, param: str = "l", where: str = "") -> str:
    """``SELECT transaction_id, label`` of chargebacks only, one row per transaction.

    For what must not depend on analysts (merchant risk, which the offline point-in-time
    features build from chargebacks alone). ``where`` adds a condition on the raw records
    (columns ``reported_at``, ``label``).
    """
    extra = f" AND ({where})" if where else ""
    return (
        f"SELECT transaction_id, max(label) AS label FROM ({_raw_sql(columns, param)}) "
        f"WHERE coalesce(source, 'chargeback') <> 'analyst'{extra} GROUP BY 1"
    )


def effective_labels_sql(columns: set[str], *, param: str = "l", source: str | None = None) -> str:
    """``SELECT transaction_id, label, source, analyst_labelled``: the label that counts, one row
    per transaction that has one, under the module's rule (``source`` says which kind won;
    ``analyst_labelled`` that an analyst's verdict stands, so the transaction counts at once).
    The records come from the files in parameter ``param``, or from the view ``source``."""
    return f"""
        WITH raw AS ({_raw_sql(columns, param, source)}),
        chargeback AS (
            SELECT transaction_id, max(label) AS label FROM raw
            WHERE coalesce(source, 'chargeback') <> 'analyst' GROUP BY 1
        ),
        analyst AS (
            SELECT transaction_id, label FROM (
                SELECT transaction_id, label, coalesce(withdrawn, false) AS withdrawn,
                       row_number() OVER (
                           PARTITION BY transaction_id
                           ORDER BY reported_at DESC, coalesce(withdrawn, false) DESC, label DESC
                       ) AS latest
                FROM raw WHERE source = 'analyst'
            ) WHERE latest = 1 AND NOT withdrawn
        )
        SELECT transaction_id,
               coalesce(chargeback.label, analyst.label) AS label,
               CASE WHEN chargeback.transaction_id IS NULL THEN 'analyst' ELSE 'chargeback' END
                   AS source,
               analyst.transaction_id IS NOT NULL AS analyst_labelled
        FROM chargeback FULL OUTER JOIN analyst USING (transaction_id)
    """


def find_transaction(settings: Settings, transaction_id: str) -> bool:
    """Whether ``transaction_id`` is in the enriched Parquet (what ``rtfd label`` checks before
    publishing: a typo'd id must not become a label nobody can match)."""
    import duckdb

    from rtfd.errors import DataError
    from rtfd.lake import visible_files

    files = visible_files(settings.enriched_dir)
    if not files:
        return False
    con = duckdb.connect()
    try:
        row = con.execute(
            "SELECT 1 FROM read_parquet($p, hive_partitioning = true, union_by_name = true) "
            "WHERE transaction_id = $t LIMIT 1",
            {"p": files, "t": transaction_id},
        ).fetchone()
    except duckdb.Error as e:
        raise DataError(f"cannot read the enriched Parquet: {e}") from e
    finally:
        con.close()
    return row is not None
