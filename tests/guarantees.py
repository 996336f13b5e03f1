"""The reliability and security guarantees that tests prove, listed in docs/reliability.md.

Each entry names a fault or an attack surface, the outcome the tests assert, and the tests (node
id prefixes: a file, or ``file::test``). ``tests/conftest.py`` marks every collected test that
matches with ``guarantee``, so ``pytest -m guarantee`` runs exactly these; with
``--guarantees-json PATH`` it writes what each test did (passed, skipped and why, failed).
``scripts/reliability.py`` renders the table in docs/reliability.md from that file alone
(``just guarantees``): what is claimed there comes from a run, and an entry whose tests no longer
exist fails the command.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Guarantee:
    fault: str
    outcome: str
    tests: tuple[str, ...]


GUARANTEES: tuple[Guarantee, ...] = (
    Guarantee(
        "kill -9 of the stream (its Spark JVM with it) at random moments, restart",
        "0 lost, 0 duplicated Parquet rows; features as if never interrupted",
        ("tests/spark/test_stream_crash.py",),
    ),
    Guarantee(
        "a crash before Spark's commit; recovery from a snapshot and the redo log",
        "the replay uses the state, model and risk table of the first run; features equal the "
        "uninterrupted run bit for bit; committed rows not yet in Parquet are written from the "
        "log; a tampered log is refused, a torn tail ignored",
        (
            "tests/unit/test_stream_engine.py::test_a_crash_before_the_commit",
            "tests/unit/test_stream_engine.py::test_recovery_from_a_snapshot",
            "tests/unit/test_stream_engine.py::test_committed_rows_not_yet_in_parquet",
            "tests/unit/test_stream_engine.py::test_a_tampered_log",
            "tests/unit/test_stream_engine.py::test_a_replay_whose_model_is_gone",
        ),
    ),
    Guarantee(
        "a torn or tampered state snapshot or blob on disk: every truncation, appended bytes, "
        "flipped bytes, lengths up to 2**64-1, headers that are no JSON object, wrong magic, "
        "tables that do not fit (about 15,000 blobs)",
        "one ValueError naming the blob, never another exception, unbounded time or memory (the "
        "engine turns it into a StateError saying what to delete); the blobs' bytes are pinned "
        "by golden hashes, so old checkpoints keep reading",
        (
            "tests/unit/test_features_framing.py",
            "tests/unit/test_stream_engine.py::test_a_torn_or_tampered_stream_snapshot",
        ),
    ),
    Guarantee(
        "readers while the lake compacts its files",
        "every row visible exactly once at every moment",
        ("tests/unit/test_stream_engine.py::test_readers_see_every_row_exactly_once",),
    ),
    Guarantee(
        "offsets deleted by retention before the stream read them",
        "counted, logged and shown in the progress (never silent)",
        ("tests/unit/test_stream_engine.py::test_offsets_deleted_by_retention",),
    ),
    Guarantee(
        "a query failure, then a restart of the same runner",
        "the failed run releases its checkpoint lock and Spark; the restart resumes",
        ("tests/spark/test_stream_e2e.py::test_after_a_query_failure",),
    ),
    Guarantee(
        "bad input: invalid UTF-8, truncated JSON, wrong types, missing and extra fields, "
        "negative/zero/NaN/huge amounts, 1970 and 2100 timestamps, 1 MB messages, duplicate ids",
        "each case has its documented outcome (dead letter with a reason, or accepted under a "
        "rule), counted; the query keeps running ([bad-input.md](bad-input.md))",
        ("tests/spark/test_bad_input.py", "tests/spark/test_stream_e2e.py::test_malformed"),
    ),
    Guarantee(
        "the stream's vectorised validator against the schema's record validator",
        "the same verdict on hand-written cases, random field mutations and random byte damage",
        ("tests/unit/test_decode.py",),
    ),
    Guarantee(
        "a full disk (a small tmpfs data dir)",
        'a one-line "Disk full" error naming the path; no half-written model version or Parquet '
        "file; works again once space is freed",
        ("tests/unit/test_disk_full.py",),
    ),
    Guarantee(
        "quitting in the middle of a retrain",
        "the training is cancelled before it saves; registry, champion and history unchanged",
        ("tests/tui/test_quit_retrain.py",),
    ),
    Guarantee(
        "generator pause, resume, stop and restart",
        "nothing lost or sent twice",
        ("tests/unit/test_generator_live.py::test_pause_resume_and_restart",),
    ),
    Guarantee(
        "ports opened by the broker, the Spark driver and its workers",
        "every one listens on 127.0.0.1 only (checked from /proc)",
        (
            "tests/kafka/test_broker.py::test_listens_on_loopback_only",
            "tests/spark/test_stream_e2e.py::test_every_port_the_stream_opens",
            "tests/unit/test_redpanda.py",
        ),
    ),
    Guarantee(
        "rtfd killed while its broker runs",
        "no orphan JVM",
        ("tests/kafka/test_broker.py::test_no_orphan_jvm",),
    ),
    Guarantee(
        "the DuckDB panel: writes, COPY, ATTACH, SET, INSTALL, file and table functions, paths, "
        "hidden in CTEs, subqueries, EXPLAIN, comments and case tricks",
        "refused before DuckDB binds anything; no file outside the data dir read or written",
        ("tests/unit/test_query_attacks.py", "tests/unit/test_query.py"),
    ),
    Guarantee(
        "model artifacts planted with a consistent manifest: pickle gadgets (proven live), "
        "corrupt archives and trees, out-of-range indices, huge metadata; a changed byte or an "
        "unlisted file",
        "refused with one line naming the version and the file; nothing is unpickled or run",
        ("tests/unit/test_artifact_attacks.py", "tests/unit/test_registry.py"),
    ),
    Guarantee(
        "downloaded jars (Kafka, Spark's Kafka connector)",
        "checked against Maven Central's checksums and pinned SHA-256; a tampered cache is "
        "refused and downloaded afresh",
        ("tests/unit/test_jars.py",),
    ),
    Guarantee(
        "secrets: SASL passwords, tokens and keys from config, environment or errors",
        "masked by name, value and shape in every log and in repr(settings)",
        (
            "tests/unit/test_redaction.py",
            "tests/unit/test_security.py",
        ),
    ),
    Guarantee(
        "every CLI command given bad paths, values and files",
        "one line on stderr and exit status 2, never a traceback",
        ("tests/unit/test_cli_fuzz.py",),
    ),
)
