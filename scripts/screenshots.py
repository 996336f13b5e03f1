"""Screenshots of the console, captured from the real appliance: ``just screenshots``.

A fresh home, the embedded Kafka broker on free ports, the real supervisor (bootstrap model,
Spark stream, live generator at the default rate) and the real Textual app, driven headless by
Textual's Pilot at 140 × 40. Once the stream has run for a while and alerts have arrived, the
script saves the Live, Query (an example query on the real Parquet), Models and help screens as
SVG in docs/img (and PNG with ``rsvg-convert``), writes docs/img/screenshots.json (when, which
commit, what the appliance had done), quits with ``q`` like a user and checks that everything
stopped. Nothing is staged: what the pictures show is what the appliance did in that run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = (140, 40)
RUN_S = 90.0  # of stream batches before the Live screen is captured (the charts fill)
MIN_ALERTS = 10


def log(msg: str) -> None:
    print(f"screenshots {time.strftime('%H:%M:%S')}: {msg}", flush=True)


async def wait_for(pilot: Any, what: str, predicate: Callable[[], object], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise SystemExit(f"screenshots: {what} not reached within {timeout:.0f} s")
        await pilot.pause(0.5)
    await pilot.pause(0.3)


async def capture(out_dir: Path, settings: Any) -> tuple[list[Path], dict[str, Any]]:
    from textual.widgets.data_table import ColumnKey

    from rtfd.supervisor import State, Supervisor
    from rtfd.tui.app import RtfdApp

    supervisor = Supervisor(settings, with_stream=True, with_generator=True, console=False)
    app = RtfdApp(settings, supervisor)
    saved: list[Path] = []
    facts: dict[str, Any] = {}

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(f"tui_{name}.svg", str(out_dir))))
        log(f"saved {saved[-1]}")

    def stream_running() -> bool:
        status = app.statuses.get("stream")
        return status is not None and status.state == State.RUNNING and app.latest_progress

    try:
        async with app.run_test(size=SIZE) as pilot:
            log("appliance starting (broker, bootstrap model, Spark) ...")
            await wait_for(pilot, "a running stream", stream_running, 900)
            started = time.monotonic()
            log(f"stream running; letting it work {RUN_S:.0f} s")
            await wait_for(
                pilot,
                f"{MIN_ALERTS} alerts after {RUN_S:.0f} s",
                lambda: (
                    time.monotonic() - started >= RUN_S
                    and app.live.alerts_total >= MIN_ALERTS
                    and app.live.alerts_table.columns[ColumnKey("time")].content_width >= 8
                ),
                600,
            )
            app.clear_notifications()
            await pilot.pause(0.5)
            facts["alerts_seen"] = app.live.alerts_total
            facts["stream"] = app.status_bar.badge("stream").text
            save("live")

            await pilot.press("2")
            await wait_for(pilot, "the query examples", lambda: app.query_panel._examples, 60)
            app.query_panel.query_one("#examples").focus()
            await pilot.press("enter")
            await wait_for(pilot, "the example query", lambda: app.query_panel.last_sql, 60)
            await pilot.pause(1.0)
            app.clear_notifications()
            save("query")

            await pilot.press("3")
            await wait_for(pilot, "the model catalog", lambda: app.model_panel.catalog, 60)
            save("models")

            await pilot.press("question_mark")
            await pilot.pause(0.5)
            save("help")
            await pilot.press("escape")
            await pilot.press("1")
            log("quitting with q ...")
            t0 = time.monotonic()
            await pilot.press("q")
            while not app.stopped_cleanly and time.monotonic() - t0 < 180:
                await asyncio.sleep(0.2)  # the app exits by itself once everything stopped
            facts["quit_s"] = round(time.monotonic() - t0, 1)
            facts["stopped_cleanly"] = app.stopped_cleanly
    finally:
        supervisor.stop(timeout=60)
    return saved, facts


def to_png(svgs: list[Path]) -> list[Path]:
    """PNG copies via rsvg-convert (librsvg; `apt-get install librsvg2-bin`)."""
    import shutil

    tool = shutil.which("rsvg-convert")
    if tool is None:
        log("rsvg-convert not found: SVG only (apt-get install librsvg2-bin for PNG)")
        return []
    pngs = []
    for svg in svgs:
        png = svg.with_suffix(".png")
        # librsvg drops leading spaces of a text run unless told to preserve them.
        text = svg.read_text(encoding="utf-8").replace("<svg ", '<svg xml:space="preserve" ', 1)
        subprocess.run([tool, "-o", str(png)], input=text.encode(), check=True)
        pngs.append(png)
    return pngs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)

    from rtfd.config import load_settings
    from rtfd.logs import setup_logging
    from rtfd.sysinfo import free_port

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rtfd-screens-") as home:
        settings = load_settings(
            {
                "home": home,
                "broker_backend": "kafka",
                "broker_port": free_port(),
                "broker_controller_port": free_port(),
            },
            environ={"RTFD_CONFIG": str(Path(home) / "none.toml")},
        )
        settings.ensure_dirs()
        setup_logging(settings, console=False)
        svgs, facts = asyncio.run(capture(out, settings))
        leftovers = subprocess.run(
            ["pgrep", "-f", home], capture_output=True, text=True, check=False
        ).stdout.split()
    pngs = to_png(svgs)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    record = {
        "captured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "command": "just screenshots",
        "size": list(SIZE),
        "generator_rate": settings.generator_rate,
        **facts,
        "processes_left": len(leftovers),
        "files": [p.name for p in svgs + pngs],
    }
    (out / "screenshots.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {out / 'screenshots.json'}: {record}")
    if leftovers:
        log(f"processes left behind: {leftovers}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
