"""A full disk leaves no corrupt state and a clear message (the real partner: a small tmpfs).

Each test mounts an 8 MiB tmpfs as the data dir (root in a container, as in CI; skipped with the
reason where mounting is not allowed), fills it, and checks that the model registry and the
stream's Parquet writer fail with a one-line RtfdError that names the disk problem and the path,
leave nothing half-written or temporary behind, keep what was there readable, and work again
once space is freed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rtfd.config import Settings, load_settings
from rtfd.errors import RtfdError
from rtfd.ml import models
from rtfd.ml.registry import Registry

pytestmark = pytest.mark.unit

DISK_SIZE = "8m"


class SmallDisk:
    """A mounted tmpfs, with a filler file to make it (nearly) full on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Take all the free space but ``leave`` bytes."""
        chunk = b"\0" * (1 << 16)
        with self.filler.open("ab") as f:
            while self.free_bytes() > leave + len(chunk):
                try:
                    f.write(chunk)
                    f.flush()
                except OSError:
                    break
            rest = self.free_bytes() - leave
            with contextlib.suppress(OSError):
                if rest > 0:
                    f.write(b"\0" * rest)
                    f.flush()

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def hidden(self, under: Path) -> list[str]:
        """Temporary (dot) files and directories anywhere under ``under``."""
        return sorted(str(p.relative_to(under)) for p in under.rglob(".*"))


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    root = tmp_path / "small-disk"
    root.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield SmallDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True, check=False)


@pytest.fixture
def settings(disk: SmallDisk) -> Settings:
    return load_settings({"home": str(disk.root / "home"), "label_maturity_days": 2})


@functools.cache
def small_history() -> pd.DataFrame:
    from rtfd.ml.data import simulated_history

    return simulated_history(
        8, seed=3, users=300, merchants=80, fraud_rate=0.03, start=datetime(2024, 1, 1, tzinfo=UTC)
    )


@pytest.fixture(autouse=True)
def fewer_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "XGB_ROUNDS", 40)


def assert_registry_intact(registry: Registry, versions: list[str], live: str) -> None:
    assert registry.versions() == versions
    assert registry.current() == live
    for v in versions:
        registry.verify(v)
    registry.load()
    assert [h["version"] for h in registry.history()][-1] == live


def test_training_on_a_full_disk_fails_clearly_and_changes_nothing(
    settings: Settings, disk: SmallDisk
) -> None:
    from rtfd.ml.train import train_model

    first = train_model(settings, algo="xgboost", data=small_history())
    registry = Registry(settings.models_dir)
    assert first.promoted and registry.current() == first.version
    size = sum(p.stat().st_size for p in (settings.models_dir / first.version).iterdir())
    disk.fill(leave=size // 3)  # room for some files of the next version, not all
    free_before = disk.free_bytes()

    with pytest.raises(RtfdError) as failed:
        train_model(settings, algo="xgboost", data=small_history(), force=True)
    message = str(failed.value)
    assert failed.value.title == "Disk full"
    assert "full" in message and str(settings.models_dir) in message
    assert "\n" not in message
    assert_registry_intact(registry, [first.version], first.version)
    assert disk.hidden(settings.models_dir) == []  # no temporary version left behind
    assert disk.free_bytes() >= free_before  # and its space was given back

    disk.free()
    second = train_model(settings, algo="xgboost", data=small_history(), force=True)
    assert second.promoted
    assert_registry_intact(registry, [first.version, second.version], second.version)


def test_promotion_on_a_full_disk_keeps_the_live_model(settings: Settings, disk: SmallDisk) -> None:
    from rtfd.ml.train import train_model

    first = train_model(settings, algo="logreg", data=small_history())
    second = train_model(settings, algo="logreg", data=small_history(), promote=False)
    registry = Registry(settings.models_dir)
    history = registry.history()
    disk.fill()

    with pytest.raises(RtfdError, match=f"full.*{first.version} stays live") as failed:
        registry.promote(second.version, force=True)
    assert failed.value.title == "Disk full"
    assert registry.current() == first.version
    assert registry.history() == history  # CURRENT and history.json: both or neither
    assert disk.hidden(settings.models_dir) == []

    disk.free()
    registry.promote(second.version, force=True)
    assert_registry_intact(registry, [first.version, second.version], second.version)


def test_a_killed_save_leaves_nothing_visible_and_is_cleaned_up(settings: Settings) -> None:
    """What kill -9 in the middle of a save leaves (a temporary directory, a CURRENT temp) is
    never read as a version, and the next save removes it once it is stale."""
    from rtfd.ml.registry import STALE_TEMP_S
    from rtfd.ml.train import train_model

    first = train_model(settings, algo="logreg", data=small_history())
    registry = Registry(settings.models_dir)
    half = settings.models_dir / ".tmp-killed"
    half.mkdir()
    (half / "model.pkl").write_bytes(b"half a pickle")
    pointer = settings.models_dir / ".CURRENT.killed"
    pointer.write_text("v0099\n", encoding="utf-8")
    assert_registry_intact(registry, [first.version], first.version)

    old = (datetime.now(UTC) - timedelta(seconds=STALE_TEMP_S + 60)).timestamp()
    for p in (half / "model.pkl", half, pointer):
        os.utime(p, (old, old))
    second = train_model(settings, algo="logreg", data=small_history(), force=True)
    assert not half.exists() and not pointer.exists()
    assert_registry_intact(registry, [first.version, second.version], second.version)


def _batch(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "transaction_id": [f"s{seed}-{i}" for i in range(n)],
            "amount": rng.random(n),
            "noise": rng.random(n),  # incompressible: the file takes real space
            "timestamp": pd.Timestamp("2026-01-02", tz="UTC"),
        }
    )


def _read_rows(root: Path) -> int:
    import duckdb

    glob = str(root / "**" / "*.parquet")
    with duckdb.connect() as con:
        row = con.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchone()
    return int(row[0]) if row else 0


def test_a_parquet_batch_on_a_full_disk_fails_clearly_and_is_written_on_retry(
    disk: SmallDisk,
) -> None:
    import pyarrow as pa

    from rtfd.lake import LakeWriter

    root = disk.root / "enriched_transactions"
    schema = pa.schema(
        [
            ("transaction_id", pa.string()),
            ("amount", pa.float64()),
            ("noise", pa.float64()),
            ("timestamp", pa.timestamp("ms", tz="UTC")),
        ]
    )
    writer = LakeWriter(
        root, partition_column="event_date", date_source="timestamp", query="q" * 8, schema=schema
    )

    def table(frame: Any) -> pa.Table:
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)

    writer.add(0, table(_batch(1_000, 0)))
    assert writer.flush(0) == 1_000
    disk.fill(leave=200_000)
    free_before = disk.free_bytes()
    writer.add(1, table(_batch(200_000, 1)))  # ~3 MB of Parquet: cannot fit

    with pytest.raises(RtfdError) as failed:
        writer.flush(1)
    message = str(failed.value)
    assert failed.value.title == "Disk full"
    assert "full" in message and str(root) in message and "0000000001" in message
    assert disk.hidden(root) == []  # no half-written temporary
    assert disk.free_bytes() >= free_before
    assert sorted(p.name for p in root.rglob("*.parquet")) == [
        "part-qqqqqqqq-0000000000-0000000000.parquet"
    ]
    assert _read_rows(root) == 1_000  # DuckDB reads what was committed, and only that
    assert writer.pending_rows == 200_000  # kept: written at the next flush

    disk.free()
    assert writer.flush(1) == 200_000
    assert _read_rows(root) == 201_000
    assert disk.hidden(root) == []
