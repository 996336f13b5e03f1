"""Triage without a screen: decisions and their records, the case's SQL, promotion lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from rtfd.config import Settings, load_settings
from rtfd.errors import UsageError
from rtfd.ml.registry import Comparison, HoldoutScore, Promotion
from rtfd.query.service import QueryService
from rtfd.schemas import LABEL
from rtfd.triage.case import load_case, sql_text, transaction_exists
from rtfd.triage.decisions import AlertState, Decisions, Verdict, label_record
from rtfd.tui.backends import promotion_cell, promotion_text

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 14, 18, 0, tzinfo=UTC)


# -- decisions -----------------------------------------------------------------------------------
def test_verdicts_parse_and_refuse_anything_else_in_one_line() -> None:
    assert Verdict.parse(" FRAUD ") is Verdict.FRAUD and Verdict.parse("legit") is Verdict.LEGIT
    for bad in ("", "yes", "1", "fraudulent", "undo", "légit", "fraud\nlegit", "x" * 500):
        with pytest.raises(UsageError) as e:
            Verdict.parse(bad)
        assert "\n" not in e.value.message.replace("\\n", "") and len(e.value.message) < 120


def test_decide_apply_undo_walks_open_confirmed_open_cleared() -> None:
    d = Decisions()
    assert d.state("t") == AlertState.OPEN and not d.can_undo("t")
    record = d.propose("t", Verdict.FRAUD, now=NOW)
    assert record == {
        "transaction_id": "t",
        "label": 1,
        "fraud_type": None,
        "reported_at": "2025-06-14T18:00:00.000Z",
        "source": "analyst",
        "retracted": False,
    }
    assert d.pending("t") and d.state("t") == AlertState.OPEN  # not before the broker's ack
    assert not d.can_decide("t", Verdict.LEGIT) and not d.can_undo("t")
    assert d.applied("t") == AlertState.CONFIRMED
    assert not d.can_decide("t", Verdict.FRAUD)  # the same decision twice
    undo = d.propose("t", None, now=NOW + timedelta(seconds=3))
    assert undo["retracted"] is True and undo["label"] == 1
    assert d.applied("t") == AlertState.OPEN
    d.propose("t", Verdict.LEGIT, now=NOW)
    assert d.applied("t") == AlertState.CLEARED
    for r in (record, undo):
        assert LABEL.validate(r, now=NOW + timedelta(minutes=1))["source"] == "analyst"


def test_a_dropped_record_leaves_the_state_as_it_was() -> None:
    d = Decisions()
    d.propose("t", Verdict.LEGIT)
    d.applied("t")
    d.propose("t", Verdict.FRAUD)
    d.dropped("t")
    assert d.state("t") == AlertState.CLEARED and not d.pending("t")
    with pytest.raises(UsageError):
        d.propose("t", Verdict.LEGIT)  # already cleared
    with pytest.raises(UsageError):
        Decisions().propose("t", None)  # nothing to undo


def test_seeding_from_the_labels_table_reads_the_standing_analyst_decision() -> None:
    d = Decisions()
    chargeback = {"transaction_id": "t", "label": 1, "reported_at": NOW, "source": None}
    assert d.seed("t", [chargeback]) == AlertState.OPEN  # a chargeback is not a decision
    mine = label_record("t", 0, at=NOW)
    assert d.seed("t", [chargeback, mine]) == AlertState.CLEARED
    undone = label_record("t", 0, at=NOW + timedelta(seconds=1), retracted=True)
    assert d.seed("t", [mine, undone]) == AlertState.OPEN
    d.propose("t", Verdict.FRAUD)
    assert d.seed("t", [mine]) == AlertState.OPEN  # a decision in flight is left alone


# -- the case's SQL ------------------------------------------------------------------------------
@pytest.fixture
def settings() -> Settings:
    s = load_settings()
    s.ensure_dirs()
    return s


HOSTILE_IDS = [
    "u1' OR '1'='1",
    "u1'; DROP TABLE labels; --",
    "u1' UNION SELECT * FROM read_text('/etc/passwd') --",
    "u1\\' OR 1=1 --",
    "u1'||(SELECT 1)||'",
    "'",
    "''",
    "u1' /*",
    "u1\u2019 OR \u20191\u2019=\u20191",
    "u1' OR user_id LIKE '%",
    "%",
    "u1\t' OR true --",
    "$$ OR true $$",
    "u1' AND 0=1 UNION ALL SELECT NULL --",
    "(SELECT user_id FROM enriched_transactions LIMIT 1)",
]


def write_enriched(settings: Settings, user_ids: list[str]) -> None:
    frame = pd.DataFrame(
        {
            "transaction_id": [f"tx{i}" for i in range(len(user_ids))],
            "user_id": user_ids,
            "merchant_id": "m1",
            "amount": 1.0,
            "timestamp": pd.date_range(NOW, periods=len(user_ids), freq="s", tz="UTC"),
            "fraud_score": 0.1,
            "is_fraud": False,
        }
    )
    part = settings.enriched_dir / "event_date=2025-06-14"
    part.mkdir(parents=True)
    frame.to_parquet(part / "part-0.parquet", index=False)


def test_hostile_ids_are_plain_values_in_the_case_queries(settings: Settings) -> None:
    """Each hostile id matches exactly the rows whose id is that very text, never more."""
    write_enriched(settings, ["u1", "u2", "u1", *HOSTILE_IDS[:3]])
    service = QueryService(settings)
    try:
        for hostile in HOSTILE_IDS:
            alert: dict[str, Any] = {
                "transaction_id": hostile,
                "user_id": hostile,
                "merchant_id": hostile,
            }
            case = load_case(service, alert)
            assert all(r["user_id"] == hostile for r in case.transactions), hostile
            expected = 1 if hostile in HOSTILE_IDS[:3] else 0
            assert len(case.transactions) == expected, hostile
            assert case.merchant.get("transactions", 0) == 0, hostile
            assert case.labels == []
            assert not transaction_exists(service, hostile)
        assert len(load_case(service, {"user_id": "u1"}).transactions) == 2
    finally:
        service.close()
    with pytest.raises(ValueError):
        sql_text("u1\x00")


# -- promotion lines -----------------------------------------------------------------------------
def _promotion(comparison: Comparison | None, *, forced: bool = False, reason: str = "") -> Any:
    return Promotion("v0003", "2025-06-14T18:00:00+00:00", reason, forced, comparison)


def test_promotion_lines_show_the_deciding_holdout_or_why_there_is_none() -> None:
    decided = HoldoutScore("v0003", "challenger", None, None, 900, 9, 0.8, 0.75, decided=True)
    other = HoldoutScore("v0002", "champion", None, None, 800, 8, 0.5, 0.9, decided=False)
    c = Comparison("v0003", "v0002", (decided, other))
    assert promotion_cell(_promotion(c)) == "0.800 vs 0.750"
    text = promotion_text(_promotion(c))
    assert text.startswith("promoted 2025-06-14 18:00:00: challenger vs champion v0002: ")
    assert "0.8000 vs 0.7500" in text and "0.5000 vs 0.9000" in text
    assert promotion_cell(_promotion(None, reason="first model")) == "first model"
    assert promotion_cell(_promotion(None, forced=True, reason="forced")) == "forced"
    forced = promotion_text(_promotion(c, forced=True))
    assert "forced; challenger vs champion" in forced
    no_ap = HoldoutScore("v0003", "challenger", None, None, 900, 0, None, None, decided=True)
    assert promotion_cell(_promotion(Comparison("v0003", "v0002", (no_ap,)), reason="x")) == "x"
    assert promotion_text(_promotion(None)) == (
        "promoted 2025-06-14 18:00:00: no comparison recorded"
    )
