"""What an alert's case shows, read from the lake through the read-only query service.

A case is the alert itself (score, reasons: the top feature contributions the model gave), the
card's recent transactions with their scores (newest first), the alerted transaction's feature
values, the merchant's risk figures (the ``merchant_*`` features of its newest enriched row, and
its alert count) and every label already on the transaction. Each piece is one SELECT over the
query service's views (``enriched_transactions``, ``labels``), so the SQL guard and DuckDB's
lockdown apply to it as to the SQL panel; ids are quoted as SQL string literals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rtfd.features.names import FEATURE_NAMES, RISK_FEATURES
from rtfd.labels import effective_label

#: Transactions of the card the case lists.
CASE_ROWS = 20


class ResultLike(Protocol):
    @property
    def columns(self) -> list[str]: ...
    @property
    def rows(self) -> list[tuple[Any, ...]]: ...


class QueryRunner(Protocol):
    """The one method of :class:`rtfd.query.service.QueryService` a case needs."""

    def run(self, sql: str, limit: int | None = None) -> ResultLike: ...


def sql_text(value: str) -> str:
    """``value`` as a SQL string literal (quotes doubled, NULs refused)."""
    if "\x00" in value:
        raise ValueError("an id cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def card_sql(user_id: str, limit: int = CASE_ROWS) -> str:
    return (
        f"SELECT * FROM enriched_transactions WHERE user_id = {sql_text(user_id)} "
        f"ORDER BY timestamp DESC, transaction_id DESC LIMIT {int(limit)}"
    )


def transaction_sql(transaction_id: str) -> str:
    return (
        "SELECT * FROM enriched_transactions "
        f"WHERE transaction_id = {sql_text(transaction_id)} LIMIT 1"
    )


def merchant_sql(merchant_id: str) -> str:
    return (
        "SELECT count(*) AS transactions, count(*) FILTER (WHERE is_fraud) AS alerts, "
        "max(timestamp) AS last_seen FROM enriched_transactions "
        f"WHERE merchant_id = {sql_text(merchant_id)}"
    )


def merchant_latest_sql(merchant_id: str) -> str:
    return (
        f"SELECT * FROM enriched_transactions WHERE merchant_id = {sql_text(merchant_id)} "
        "ORDER BY timestamp DESC LIMIT 1"
    )


def labels_sql(transaction_id: str) -> str:
    return (
        f"SELECT * FROM labels WHERE transaction_id = {sql_text(transaction_id)} "
        "ORDER BY reported_at"
    )


def _records(result: ResultLike) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row, strict=False)) for row in result.rows]


@dataclass
class Case:
    """Everything the case screen shows about one alert."""

    alert: Mapping[str, Any]
    transactions: list[dict[str, Any]] = field(default_factory=list)
    features: dict[str, Any] = field(default_factory=dict)
    merchant: dict[str, Any] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)

    @property
    def transaction_id(self) -> str:
        return str(self.alert.get("transaction_id", ""))

    @property
    def label(self) -> int | None:
        """The transaction's label under :mod:`rtfd.labels` (None: none yet)."""
        return effective_label(self.labels)

    @property
    def chargeback(self) -> bool:
        return any(r.get("source") != "analyst" for r in self.labels)


def load_case(query: QueryRunner, alert: Mapping[str, Any], rows: int = CASE_ROWS) -> Case:
    """Read a case (blocking: call from a worker). The alert's own fields fill in for a
    transaction the lake does not hold yet (the stream writes Parquet every few seconds)."""
    tid = str(alert.get("transaction_id") or "")
    user = str(alert.get("user_id") or "")
    merchant = str(alert.get("merchant_id") or "")
    case = Case(alert)
    if user:
        case.transactions = _records(query.run(card_sql(user, rows), limit=rows))
    own = next((r for r in case.transactions if r.get("transaction_id") == tid), None)
    if own is None and tid:
        found = _records(query.run(transaction_sql(tid), limit=1))
        own = found[0] if found else None
    if own is not None:
        case.features = {f: own[f] for f in FEATURE_NAMES if f in own}
        merchant = merchant or str(own.get("merchant_id") or "")
    if merchant:
        summary = _records(query.run(merchant_sql(merchant), limit=1))
        case.merchant = {"merchant_id": merchant, **(summary[0] if summary else {})}
        latest = _records(query.run(merchant_latest_sql(merchant), limit=1))
        if latest:
            case.merchant.update({f: latest[0][f] for f in RISK_FEATURES if f in latest[0]})
    if tid:
        case.labels = _records(query.run(labels_sql(tid), limit=100))
    return case


def transaction_exists(query: QueryRunner, transaction_id: str) -> bool:
    """Whether the enriched transactions hold ``transaction_id``."""
    return bool(query.run(transaction_sql(transaction_id), limit=1).rows)


def risk_lines(case: Case) -> Sequence[tuple[str, Any]]:
    """The merchant's figures as (name, value) pairs, in a fixed order."""
    names = ("merchant_id", "transactions", "alerts", *RISK_FEATURES, "last_seen")
    return [(n, case.merchant[n]) for n in names if n in case.merchant]
