"""Alert triage without textual: each alert's state, the decisions to publish, a case's data.

The console's case screen (:mod:`rtfd.tui.case`) shows a :class:`CaseFile` that
:func:`load_case` reads through the read-only query service, and asks a :class:`CaseBook` for the
:class:`~rtfd.query.labels.AnalystDecision` a key stands for. A decision changes the book only
once the broker acknowledged it (:meth:`CaseBook.apply`), so the alerts list never shows a state
that is not on ``fraud_labels``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from rtfd.features.names import RISK_FEATURES
from rtfd.query.labels import AnalystDecision, Verdict

if TYPE_CHECKING:
    from rtfd.tui.backends import QueryBackend

AlertState = Literal["open", "confirmed", "cleared"]
STATE_OF_VERDICT: dict[Verdict, AlertState] = {"fraud": "confirmed", "legit": "cleared"}
#: Transactions of the card shown in a case, newest first.
RECENT_ROWS = 20
RECENT_COLUMNS = (
    "timestamp", "transaction_id", "merchant_id", "amount", "location", "fraud_score", "is_fraud"
)  # fmt: skip


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CaseBook:
    """The analyst's decisions of this session, by transaction id."""

    clock: Callable[[], datetime] = _utcnow
    _verdicts: dict[str, Verdict] = field(default_factory=dict)
    _last: dict[str, datetime] = field(default_factory=dict)

    def state(self, transaction_id: str) -> AlertState:
        verdict = self._verdicts.get(transaction_id)
        return "open" if verdict is None else STATE_OF_VERDICT[verdict]

    def _time(self, transaction_id: str) -> datetime:
        """Now, but strictly after this transaction's previous decision: the labels rule orders
        an analyst's records by time, so an undo and a new verdict must not share a millisecond."""
        now = self.clock()
        last = self._last.get(transaction_id)
        if last is not None and now <= last:
            now = last + timedelta(milliseconds=1)
        return now

    def decide(self, transaction_id: str, verdict: Verdict) -> AnalystDecision | None:
        """The decision to publish for ``verdict``; None when it is already the state."""
        if self._verdicts.get(transaction_id) == verdict:
            return None
        return AnalystDecision(transaction_id, verdict, self._time(transaction_id))

    def undo(self, transaction_id: str) -> AnalystDecision | None:
        """The withdrawal of the current verdict; None while the alert is open."""
        verdict = self._verdicts.get(transaction_id)
        if verdict is None:
            return None
        return AnalystDecision(transaction_id, verdict, self._time(transaction_id), withdrawn=True)

    def restore(self, rows: list[dict[str, Any]]) -> int:
        """Take the verdicts of earlier sessions from the labels table (``transaction_id``,
        ``label``, ``withdrawn``, ``reported_at`` of analysts' records, oldest first), for the
        transactions this session has not decided; returns how many states changed."""
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            tx = row.get("transaction_id")
            if isinstance(tx, str) and tx not in self._last:
                latest[tx] = row
        changed = 0
        for tx, row in latest.items():
            if row.get("withdrawn") or row.get("label") not in (0, 1):
                continue
            self._verdicts[tx] = "fraud" if row["label"] == 1 else "legit"
            changed += 1
        return changed

    def apply(self, decision: AnalystDecision) -> AlertState:
        """Record a published decision; returns the alert's new state."""
        tx = decision.transaction_id
        self._last[tx] = max(decision.decided_at, self._last.get(tx, decision.decided_at))
        if decision.withdrawn:
            self._verdicts.pop(tx, None)
        else:
            self._verdicts[tx] = decision.verdict
        return self.state(tx)


@dataclass(frozen=True)
class CaseFile:
    """What a case shows besides the alert itself."""

    alert: Mapping[str, Any]
    recent: list[dict[str, Any]] = field(default_factory=list)
    risk: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why the lake could not be read (the alert still shows)


#: Analysts' earlier verdicts (the labels view has ``source`` once any file has it).
DECISIONS_SQL = (
    "SELECT transaction_id, label, withdrawn, reported_at FROM labels "
    "WHERE source = 'analyst' ORDER BY reported_at, withdrawn NULLS FIRST"
)
DECISIONS_CAP = 100_000


def load_decisions(service: QueryBackend) -> list[dict[str, Any]]:
    """Analysts' records from the labels table, oldest first; empty when there are none yet
    (or the lake predates analysts' labels: no ``source`` column to filter on)."""
    try:
        result = service.run(DECISIONS_SQL, limit=DECISIONS_CAP)
    except Exception:
        return []
    if "transaction_id" not in result.columns or "label" not in result.columns:
        return []
    return [dict(zip(result.columns, r, strict=False)) for r in result.rows]


def sql_text(value: Any) -> str:
    """A SQL string literal (the query service takes no parameters; ids are plain text)."""
    return "'" + str(value).replace("'", "''") + "'"


def recent_sql(user_id: str, limit: int = RECENT_ROWS) -> str:
    """The card's latest scored transactions, newest first, one row per transaction."""
    columns = ", ".join(f"any_value({c}) AS {c}" for c in RECENT_COLUMNS if c != "transaction_id")
    return (
        f"SELECT transaction_id, {columns} FROM enriched_transactions "
        f"WHERE user_id = {sql_text(user_id)} GROUP BY transaction_id "
        f"ORDER BY timestamp DESC LIMIT {int(limit)}"
    )


def risk_sql(transaction_id: str) -> str:
    """The merchant-risk figures the alert's transaction was scored with."""
    columns = ", ".join(RISK_FEATURES)
    return (
        f"SELECT merchant_id, {columns} FROM enriched_transactions "
        f"WHERE transaction_id = {sql_text(transaction_id)} LIMIT 1"
    )


def load_case(service: QueryBackend, alert: Mapping[str, Any]) -> CaseFile:
    """Read a case from the lake (blocking: call from a worker). A lake without the rows yet
    (the alert is newer than the last Parquet file) or without risk columns is a ``problem``
    line, never an exception: the alert's own reasons still make a case."""
    problems: list[str] = []
    recent: list[dict[str, Any]] = []
    risk: dict[str, Any] = {}
    user = alert.get("user_id")
    tx = alert.get("transaction_id")
    if user:
        try:
            result = service.run(recent_sql(str(user)), limit=RECENT_ROWS)
            recent = [dict(zip(result.columns, r, strict=False)) for r in result.rows]
        except Exception as e:
            problems.append(f"recent transactions: {_first_line(e)}")
    if tx:
        try:
            result = service.run(risk_sql(str(tx)), limit=1)
            if result.rows:
                risk = dict(zip(result.columns, result.rows[0], strict=False))
            else:
                problems.append("the transaction is not in the Parquet yet (written each batch)")
        except Exception as e:
            problems.append(f"merchant risk: {_first_line(e)}")
    return CaseFile(alert, recent, risk, "; ".join(problems) or None)


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "message", "") or e) or type(e).__name__
    return text.splitlines()[0]
