"""Verdicts, alert states and the LABEL records an analyst's decisions become.

An alert is **open** until someone decides it: **confirmed** (fraud, ``label = 1``) or **cleared**
(a false positive, ``label = 0``). An undo publishes a record with ``retracted = true`` and the
alert is open again. What training makes of these records is the rule of :mod:`rtfd.labels`.

:class:`Decisions` holds the states the console shows, one decision in flight per alert at most:
a record is *proposed*, published in a worker, then *applied* once the broker acknowledged it (or
*dropped* when it did not), so the screen never claims a label that is not on the topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rtfd.errors import UsageError
from rtfd.labels import analyst_decision
from rtfd.schemas import LabelSource, format_timestamp


class Verdict(StrEnum):
    """What an analyst says about a transaction."""

    FRAUD = "fraud"
    LEGIT = "legit"

    @property
    def label(self) -> int:
        return 1 if self is Verdict.FRAUD else 0

    @classmethod
    def parse(cls, text: str) -> Verdict:
        """``fraud`` or ``legit`` (any case); a one-line :class:`UsageError` otherwise."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise UsageError(f"the verdict is fraud or legit, got {text[:40]!r}") from None


class AlertState(StrEnum):
    """An alert as the triage list shows it."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    CLEARED = "cleared"

    @classmethod
    def of_label(cls, label: int | None) -> AlertState:
        if label is None:
            return cls.OPEN
        return cls.CONFIRMED if label else cls.CLEARED


def label_record(
    transaction_id: str, label: int, *, at: datetime, retracted: bool = False
) -> dict[str, Any]:
    """An analyst's LABEL record, JSON-ready (``reported_at`` = the decision time)."""
    return {
        "transaction_id": transaction_id,
        "label": int(label),
        "fraud_type": None,
        "reported_at": format_timestamp(at),
        "source": LabelSource.ANALYST,
        "retracted": retracted,
    }


@dataclass(frozen=True)
class Pending:
    """A decision on its way to the topic: the record, and the state it leads to."""

    record: dict[str, Any]
    state: AlertState


class Decisions:
    """Per transaction: the analyst's standing decision and the one in flight."""

    def __init__(self) -> None:
        self._states: dict[str, AlertState] = {}
        self._pending: dict[str, Pending] = {}

    def state(self, transaction_id: str) -> AlertState:
        return self._states.get(transaction_id, AlertState.OPEN)

    def pending(self, transaction_id: str) -> bool:
        return transaction_id in self._pending

    def can_decide(self, transaction_id: str, verdict: Verdict) -> bool:
        """Not while a decision is in flight, and not the same decision twice."""
        if self.pending(transaction_id):
            return False
        return self.state(transaction_id) != AlertState.of_label(verdict.label)

    def can_undo(self, transaction_id: str) -> bool:
        return not self.pending(transaction_id) and self.state(transaction_id) != AlertState.OPEN

    def propose(
        self, transaction_id: str, verdict: Verdict | None, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """The record for a decision (``verdict``) or an undo (None), now in flight."""
        at = now or datetime.now(UTC)
        if verdict is None:
            if not self.can_undo(transaction_id):
                raise UsageError(f"nothing to undo on {transaction_id}")
            current = self.state(transaction_id)
            label = 1 if current == AlertState.CONFIRMED else 0
            record = label_record(transaction_id, label, at=at, retracted=True)
            pending = Pending(record, AlertState.OPEN)
        else:
            if not self.can_decide(transaction_id, verdict):
                raise UsageError(f"{transaction_id} is already {self.state(transaction_id)}")
            record = label_record(transaction_id, verdict.label, at=at)
            pending = Pending(record, AlertState.of_label(verdict.label))
        self._pending[transaction_id] = pending
        return record

    def applied(self, transaction_id: str) -> AlertState:
        """The broker acknowledged the record in flight: its state stands."""
        pending = self._pending.pop(transaction_id)
        self._states[transaction_id] = pending.state
        return pending.state

    def dropped(self, transaction_id: str) -> None:
        """The record in flight did not reach the topic: the state stays as it was."""
        self._pending.pop(transaction_id, None)

    def seed(self, transaction_id: str, records: Iterable[Mapping[str, Any]]) -> AlertState:
        """Take the analyst's standing decision from the labels table (a console restarted
        after deciding); a decision in flight is left alone."""
        if not self.pending(transaction_id):
            self._states[transaction_id] = AlertState.of_label(analyst_decision(records))
        return self.state(transaction_id)
