"""Replay of foreign files and the ``rtfd generate`` / ``rtfd replay`` commands (no broker)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from rtfd.cli import main
from rtfd.config import load_settings
from rtfd.errors import DataError, ValidationError
from rtfd.generator.history import HISTORY_COLUMNS, simulate_history, write_history
from rtfd.generator.live import LiveGenerator
from rtfd.generator.replay import FileSource, read_transactions_file
from rtfd.generator.wire import finish_transaction
from rtfd.schemas import LABEL, TRANSACTION, Topics, format_timestamp
from tests.unit.test_generator_live import Recorder

pytestmark = pytest.mark.unit

NOW = format_timestamp(pd.Timestamp.now(tz="UTC").to_pydatetime())


def decode(row, timestamp: str = NOW) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(finish_transaction(row.prefix, row.timestamp or timestamp))


@pytest.fixture(scope="module")
def small_history() -> pd.DataFrame:
    return simulate_history(2, users=400, merchants=80, fraud_rate=0.05, seed=5)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("transaction_id,user_id,amount\nt1,u1,3.5\n")
    with pytest.raises(DataError, match="missing columns timestamp, merchant_id"):
        read_transactions_file(path)


def test_unknown_format_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_transactions_file(tmp_path / "nope.parquet")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(DataError, match="unknown format"):
        read_transactions_file(tmp_path / "t.json")


def test_a_history_file_replays_in_order_with_its_labels(
    small_history: pd.DataFrame, tmp_path: Path
) -> None:
    path = write_history(small_history, tmp_path / "h.parquet")
    shuffled = small_history.sample(frac=1.0, random_state=1)
    write_history(shuffled, path)
    source = FileSource(read_transactions_file(path))
    assert len(source) == len(small_history) and source.has_labels
    rows = source.take(len(source))
    assert source.finished
    records = [decode(r) for r in rows]
    for rec in records:
        assert list(rec) == TRANSACTION.names
        TRANSACTION.validate(rec)
    ordered = small_history.sort_values("timestamp", kind="stable")
    assert [r["timestamp"] for r in records] == [
        format_timestamp(t.to_pydatetime()) for t in ordered["timestamp"]
    ]
    fraud = small_history[small_history["label"] == 1]
    assert {r.transaction_id for r in rows if r.label} == set(fraud["transaction_id"])
    types = dict(zip(fraud["transaction_id"], fraud["fraud_type"], strict=True))
    assert all(r.fraud_type == types[r.transaction_id] for r in rows if r.label)


def test_a_minimal_csv_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "amount,merchant_id,user_id,timestamp,transaction_id\n"
        "12.5,m2,u1,1767225720,t2\n"
        "3,m1,u1,1767225600,t1\n"
    )
    source = FileSource(read_transactions_file(path), default_currency="EUR")
    assert not source.has_labels
    first, second = (decode(r) for r in source.take(2))
    assert first["transaction_id"] == "t1" and second["transaction_id"] == "t2"
    assert first["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert first["currency"] == "EUR" and first["location"] == "unknown"
    assert first["lat"] is None and first["channel"] is None
    TRANSACTION.validate(first)
    assert not any(r.label for r in source.rows)


def test_retime_leaves_the_timestamp_to_the_sender(small_history: pd.DataFrame) -> None:
    source = FileSource(small_history.head(10), retime=True)
    assert all(r.timestamp is None for r in source.rows)


def test_bad_values_are_sent_for_the_stream_to_reject(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "transaction_id,timestamp,user_id,merchant_id,amount,label\n"
        "t1,2026-01-01T00:00:00Z,u1,m1,abc,1\n"
        't2,"not a ""time""",u1,m1,5,0\n'
    )
    rows = FileSource(read_transactions_file(path)).take(2)
    by_id = {r.transaction_id: r for r in rows}
    with pytest.raises(ValidationError, match="amount"):
        TRANSACTION.validate(decode(by_id["t1"]))
    bad_time = decode(by_id["t2"])  # still valid JSON
    with pytest.raises(ValidationError, match="timestamp"):
        TRANSACTION.validate(bad_time)
    assert by_id["t1"].label and not by_id["t2"].label


def test_replay_sends_everything_then_ends_by_itself(
    small_history: pd.DataFrame, tmp_path: Path
) -> None:
    settings = load_settings({})
    rec = Recorder()
    source = FileSource(small_history)
    gen = LiveGenerator(
        settings, rate=float("inf"), source=source, producer_factory=rec, label_delay_s=0.05
    )
    gen.start()
    assert gen.wait(30), "replay did not finish"
    final = gen.stats()
    assert final.finished and not final.running
    assert final.sent == final.acked == len(small_history)
    sent = [json.loads(v)["transaction_id"] for v, _, _ in rec.messages(Topics.TRANSACTIONS)]
    assert sorted(sent) == sorted(small_history["transaction_id"])
    labels = [LABEL.validate(json.loads(v)) for v, _, _ in rec.messages(Topics.LABELS)]
    assert len(labels) == int(small_history["label"].sum()) == final.labels_sent


# --- the commands -----------------------------------------------------------------------------


def test_generate_history_writes_a_deterministic_parquet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", "--history", "0.5", "--users", "300", "--merchants", "60", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "a.parquet")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.parquet")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "tx/min" in out
    a, b = (tmp_path / "a.parquet").read_bytes(), (tmp_path / "b.parquet").read_bytes()
    assert a == b
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.column_names == HISTORY_COLUMNS
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"


def test_generate_history_needs_an_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--history", "1"]) == 2
    assert "--out" in capsys.readouterr().err


def test_replay_names_missing_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text("transaction_id,amount\nt1,3\n")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert "timestamp" in err and "user_id" in err and "merchant_id" in err


def test_generate_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    for flag in ("--rate", "--duration", "--seed", "--history", "--out"):
        assert flag in out


def test_the_commands_module_is_import_light() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import rtfd.cli.generate; "
        "heavy = [m for m in ('numpy', 'pandas', 'confluent_kafka', 'pyarrow') "
        "if m in sys.modules]; print(heavy)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert time.perf_counter() - started < 10
