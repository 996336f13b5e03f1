"""The merchant-risk table the stream scores with: rebuilt in the background, every version kept
on disk for a while, so that a batch run again after a crash uses the table it used first.

The table (:class:`~rtfd.features.merchant_risk.MerchantRiskTable`) comes from the labels and
the enriched Parquet (:func:`~rtfd.query.lake_reads.refresh_from_parquet`): at start, then
once per period (one hour) in a background thread. Each build gets a version (milliseconds since
the epoch when it was built) and is saved as ``<dir>/risk-<version>.npz`` (NumPy, no pickle); the
newest :data:`KEEP` stay. A batch records the version it used (``BatchLog``), and
:meth:`RiskTables.table_version` loads it again for a replay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtfd.config import Settings
from rtfd.errors import RtfdError

log = logging.getLogger(__name__)

KEEP = 4
_NAME = re.compile(r"^risk-(\d+)\.npz$")


class RiskTables:
    """Versions of the merchant-risk table: the current one, and older ones for replays."""

    def __init__(
        self, settings: Settings, directory: Path, *, clock: Callable[[], float] = time.time
    ) -> None:
        from rtfd.features.merchant_risk import DEFAULT_PERIOD_S

        self.settings = settings
        self.directory = directory
        self.period_s = DEFAULT_PERIOD_S
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[int, Any] | None = None
        self._period: int | None = None
        self._refreshing = False
        self._loaded: dict[int, Any] = {}

    def _build(self) -> tuple[int, Any]:
        from rtfd.query.lake_reads import refresh_from_parquet

        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        table = refresh_from_parquet(self.settings, now=now, period_s=self.period_s)
        version = int(self._clock() * 1000)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"risk-{version}.npz"
        tmp = self.directory / f".{path.name}.tmp"
        tmp.write_bytes(table.to_bytes())
        os.replace(tmp, path)
        for old in self._versions()[:-KEEP]:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"risk-{old}.npz").unlink()
        return version, table

    def _versions(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(
            int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name))
        )

    def refresh_now(self) -> None:
        """Rebuild synchronously (at start, so the first batch already has the table)."""
        current = self._build()
        with self._lock:
            self._current = current
            self._period = int(self._clock() // self.period_s)
        log.info("merchant risk table v%d: %d merchants", current[0], len(current[1]))

    def current(self) -> tuple[int | None, Any]:
        """(version, table) to score a new batch with; starts a background rebuild when a new
        period began."""
        period = int(self._clock() // self.period_s)
        with self._lock:
            due = self._period != period and not self._refreshing
            if due:
                self._refreshing = True
            current = self._current
        if due:
            threading.Thread(target=self._refresh_bg, args=(period,), daemon=True).start()
        if current is None:
            from rtfd.features.merchant_risk import MerchantRiskTable

            return None, MerchantRiskTable.empty(
                label_delay_s=self.settings.label_maturity_days * 86_400.0,
                period_s=self.period_s,
            )
        return current

    def table(self) -> Any:
        """The current table (the Spark-state path scores with it directly)."""
        return self.current()[1]

    def table_version(self, version: int | None) -> Any:
        """The table a batch recorded (an empty one for ``None``)."""
        if version is None:
            return _empty(self)
        with self._lock:
            if self._current is not None and self._current[0] == version:
                return self._current[1]
            if version in self._loaded:
                return self._loaded[version]
        from rtfd.features.merchant_risk import MerchantRiskTable

        path = self.directory / f"risk-{version}.npz"
        try:
            table = MerchantRiskTable.from_bytes(path.read_bytes())
        except (OSError, ValueError) as e:
            raise RtfdError(
                f"the merchant-risk table v{version} a batch was scored with is gone ({e}); "
                "its replay would score differently",
                title="Stream state",
            ) from e
        with self._lock:
            self._loaded = {version: table}
        return table

    def _refresh_bg(self, period: int) -> None:
        try:
            current = self._build()
            with self._lock:
                self._current, self._period = current, period
            log.info("merchant risk table v%d: %d merchants", current[0], len(current[1]))
        except Exception:
            log.exception("merchant risk refresh failed; keeping the previous table")
        finally:
            with self._lock:
                self._refreshing = False


def _empty(tables: RiskTables) -> Any:
    from rtfd.features.merchant_risk import MerchantRiskTable

    return MerchantRiskTable.empty(
        label_delay_s=tables.settings.label_maturity_days * 86_400.0, period_s=tables.period_s
    )
