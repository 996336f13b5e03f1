"""Scenes of the console's main screens with a fake supervisor and made-up data, for the
snapshot-style tests (``python -m tests.tui.screenshots OUT_DIR`` saves them to look at).

These are NOT the pictures in the docs: docs/img/tui_*.png come from the real appliance
(``just screenshots``, scripts/screenshots.py).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets.data_table import ColumnKey

from rtfd.config import Settings, load_settings
from rtfd.tui.app import RtfdApp
from rtfd.tui.backends import Services, real_query_service
from tests.tui.fakes import (
    FakeAlertFeed,
    FakeRegistry,
    FakeSupervisor,
    alerts,
    fake_services,
    scored_rows,
    write_enriched,
)

SIZE = (140, 40)


def feed_live_data(supervisor: FakeSupervisor, samples: int = 150) -> None:
    """Emit ``samples`` progress records with a plausible rhythm, the last ones with rows."""
    rows = scored_rows(samples * 4)
    for i in range(samples):
        wave = 1 + 0.25 * math.sin(i / 9) + 0.1 * math.sin(i / 2.3)
        supervisor.progress(
            batch_id=i,
            input_rows_per_s=200 * wave,
            processed_rows_per_s=1_900 * wave,
            batch_duration_ms=round(380 + 60 * math.sin(i / 5)),
            latency_p99_ms=1_050 + 220 * math.sin(i / 7) + (900 if i % 37 == 0 else 0),
            dead_letters=1 if i % 50 == 7 else 0,
            recent=rows[i * 4 : i * 4 + 4],
        )


async def settle(pilot: Pilot[Any], predicate: Callable[[], object], timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not predicate():
        await pilot.pause(0.02)
    await pilot.pause(0.1)


async def capture(
    out_dir: Path, settings: Settings, services: Services | None = None
) -> list[Path]:
    """Drive the app through its tabs and save one SVG per screen; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    supervisor = FakeSupervisor(settings)
    app = RtfdApp(settings, supervisor, services=services or fake_services(FakeRegistry()))
    saved: list[Path] = []

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(f"tui_{name}.svg", str(out_dir))))

    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: not app.starting and FakeAlertFeed.instances)
        feed_live_data(supervisor)
        FakeAlertFeed.instances[-1].push(alerts(40))
        await settle(
            pilot,
            lambda: (
                app.live.alerts_total >= 40
                and app.live.alerts_table.columns[ColumnKey("time")].content_width >= 8
                and app.live.scored_table.columns[ColumnKey("time")].content_width >= 8
            ),
        )
        app.clear_notifications()
        await pilot.pause(0.2)
        save("live")

        await pilot.press("2")
        await settle(pilot, lambda: app.query_panel._examples)
        app.query_panel.query_one("#examples").focus()
        await pilot.press("enter")
        await settle(pilot, lambda: app.query_panel.last_sql)
        app.clear_notifications()
        save("query")

        await pilot.press("3")
        await settle(pilot, lambda: app.model_panel.catalog is not None)
        save("models")

        await pilot.press("question_mark")
        await pilot.pause(0.2)
        save("help")
        await pilot.press("escape")
    return saved


def to_png(svgs: list[Path]) -> list[Path]:
    """PNG copies via rsvg-convert, when it is installed."""
    tool = shutil.which("rsvg-convert")
    if tool is None:
        return []
    pngs = []
    for svg in svgs:
        png = svg.with_suffix(".png")
        # librsvg drops leading spaces of a text run unless told to preserve them.
        text = svg.read_text(encoding="utf-8").replace("<svg ", '<svg xml:space="preserve" ', 1)
        subprocess.run([tool, "-o", str(png)], input=text.encode(), check=True)
        pngs.append(png)
    return pngs


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.tui.screenshots OUT_DIR (test scenes, not docs/img)")
        return 2
    out = Path(argv[0]).resolve()
    with tempfile.TemporaryDirectory() as home:
        os.environ["RTFD_HOME"] = home
        settings = load_settings()
        settings.ensure_dirs()
        # The query panel runs on the real DuckDB service over a realistic Parquet file.
        write_enriched(settings, 5_000)
        services = fake_services(FakeRegistry(), query=real_query_service)
        svgs = asyncio.run(capture(out, settings, services))
    for path in svgs + to_png(svgs):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
