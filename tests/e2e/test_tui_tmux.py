"""The real `rtfd tui` in a real terminal (tmux): start, see scores, press keys, quit clean.

This drives the whole appliance as a user would: embedded Kafka, bootstrap model, Spark stream,
generator, DuckDB panel, retrain. It reads the screen with ``tmux capture-pane``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rtfd.sysinfo import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

VENV_BIN = Path(sys.executable).parent


class Screen:
    """A tmux session running one command, read through capture-pane."""

    def __init__(self, name: str) -> None:
        self.name = name

    def text(self) -> str:
        """The screen with box-drawing borders and runs of blanks folded to one space, so a
        phrase that wraps inside a panel still reads as one line."""
        raw = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return re.sub(r"[\s│╭╮╰╯─]+", " ", raw)

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def alive(self) -> bool:
        return (
            subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode
            == 0
        )

    def wait_for(self, what: str, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if predicate(text):
                return text
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; screen:\n{text}")


def rtfd_processes(home: Path) -> list[str]:
    """Processes that belong to this test's appliance (by its data dir or the tui command)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        line
        for line in out.splitlines()[1:]
        if (str(home) in line or "rtfd tui" in line) and "ps -eo" not in line
    ]


@pytest.fixture
def tui(tmp_path: Path) -> Iterator[tuple[Screen, Path]]:
    home = tmp_path / "appliance"
    name = f"rtfd-e2e-{uuid.uuid4().hex[:6]}"
    env = {
        "RTFD_HOME": str(home),
        "RTFD_BROKER_BACKEND": "kafka",
        "RTFD_BROKER_PORT": str(free_port()),
        "RTFD_BROKER_CONTROLLER_PORT": str(free_port()),
        "RTFD_GENERATOR_RATE": "200",
        "RTFD_SPARK_MASTER": "local[2]",
        "TERM": "xterm-256color",
    }
    if os.environ.get("RTFD_CACHE_DIR"):
        env["RTFD_CACHE_DIR"] = os.environ["RTFD_CACHE_DIR"]
    home.mkdir(parents=True)
    (home / "broker-port").write_text(env["RTFD_BROKER_PORT"])
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    command = f"env {exports} {VENV_BIN / 'rtfd'} tui; echo RTFD-EXITED $?; sleep 600"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "180", "-y", "50", command], check=True
    )
    screen = Screen(name)
    try:
        yield screen, home
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        for line in rtfd_processes(home):
            pid = int(line.split()[0])
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def topic_messages(home: Path) -> int:
    """Messages in the transactions topic of this test's broker."""
    from rtfd.broker.admin import describe_topics
    from rtfd.config import load_settings

    port = (home / "broker-port").read_text().strip()
    settings = load_settings({"broker_bootstrap_servers": f"127.0.0.1:{port}"})
    from rtfd.broker import client_config

    (info,) = describe_topics(client_config(settings), ("transactions",))
    return info.messages


def parquet_rows(home: Path) -> int:
    import pyarrow.parquet as pq

    from rtfd.lake import visible_files

    files = visible_files(home / "enriched_transactions")
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files)


def confirm_an_alert(screen: Screen) -> str:
    """Tab to the alerts list, open the highlighted alert's case, press f; its transaction id."""
    screen.keys("Tab")
    screen.keys("Enter")
    text = screen.wait_for("the case screen", lambda t: "f confirm fraud" in t, 30)
    match = re.search(r"Case · (\S+) · card", text)
    assert match, text
    screen.wait_for("the case's data", lambda t: "merchant risk" in t, 30)
    screen.keys("f")
    confirmed = re.compile(rf"Case · {re.escape(match.group(1))} · card \S+ · confirmed")
    screen.wait_for("the confirmation", lambda t: confirmed.search(t) is not None, 30)
    screen.keys("Escape")
    # (The alerts list's state column is past the edge of tmux's 80-column pane; the Pilot
    # tests check it.)
    screen.wait_for("the live view", lambda t: "Scored" in t and "confirm fraud" not in t, 20)
    time.sleep(1.0)  # a key right after ESC would be read as Alt+key
    return match.group(1)


def test_the_tui_runs_the_whole_appliance_and_quits_clean(tui: tuple[Screen, Path]) -> None:
    screen, home = tui

    # Everything comes up by itself: broker, topics, bootstrap model, stream, generator.
    screen.wait_for("the broker", lambda t: "127.0.0.1" in t and "kafka" in t, 180)
    screen.wait_for("a model version", lambda t: re.search(r"v0001", t) is not None, 300)
    screen.wait_for(
        "the stream to run",
        lambda t: re.search(r"stream\s+\S*\s*[\d,.]+ rows/s", t) is not None or "rows/s" in t,
        300,
    )

    # Scored rows and alerts flow without pressing anything.
    deadline = time.monotonic() + 120
    while parquet_rows(home) == 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert parquet_rows(home) > 0, "no scored rows reached the Parquet"
    screen.wait_for(
        "scored transactions and alerts",
        lambda t: (
            re.search(r"[1-9][\d,]* seen", t) is not None
            # The two titles sit side by side and may wrap: the count, then "received".
            and re.search(r"fraud_alerts topic · [1-9][\d,]*", t) is not None
            and "received" in t
        ),
        60,
    )

    # Triage: open the newest alert's case, confirm it, see the analyst's label in the Query tab.
    transaction = confirm_an_alert(screen)
    screen.keys("2")
    screen.wait_for("the query panel", lambda t: "Saved queries" in t, 20)
    time.sleep(1.0)
    screen.keys("2")  # on the Query tab, 2 puts the focus back in the editor
    # Textual moves the focus after the key's handler: keys sent at once would reach the
    # widget focused before (seen after a case closed), so the typing waits for the focus.
    time.sleep(1.0)
    # Empty the editor (one line: the default query) with control keys, single bytes that no
    # escape-sequence timing can split: ctrl+e to the line's end, ctrl+u deletes to its start.
    screen.keys("C-e")
    screen.keys("C-u")
    time.sleep(0.5)
    # Upper case (DuckDB reads names in any case): a letter that missed the editor would be a
    # shortcut (r retrains, g pauses), a shifted one is not.
    screen.keys("-l", "SELECT TRANSACTION_ID, LABEL, SOURCE FROM LABELS WHERE SOURCE = 'analyst'")
    screen.wait_for("the typed SQL", lambda t: "SOURCE = 'analyst'" in t, 10)
    deadline = time.monotonic() + 90
    while transaction not in screen.text() and time.monotonic() < deadline:
        screen.keys("F5")  # again until the stream has written the label to the Parquet
        time.sleep(3)
    text = screen.wait_for("the analyst's label", lambda t: transaction in t, 5)
    assert re.search(rf"{re.escape(transaction)} 1 analyst", text), text
    screen.keys("Escape")
    time.sleep(1.0)  # the terminal's escape delay (see below)
    screen.keys("1")
    screen.wait_for("the live tab", lambda t: "Scored transactions" in t, 20)

    # g stops the generator: the status bar says so and the input topic stops growing.
    screen.keys("g")
    screen.wait_for("the generator to pause", lambda t: "paused" in t, 30)
    time.sleep(2)  # in-flight produce requests land
    first = topic_messages(home)
    time.sleep(6)
    assert topic_messages(home) == first, "transactions kept arriving with the generator paused"
    screen.keys("g")
    screen.wait_for("the generator to resume", lambda t: "paused" not in t, 30)

    # A SQL query in the DuckDB panel returns rows.
    screen.keys("2")
    screen.wait_for("the query panel", lambda t: "Saved queries" in t, 20)
    screen.keys("F5")
    screen.wait_for("a query result", lambda t: re.search(r"[\d,]+ rows", t) is not None, 60)

    # r retrains: a new version appears in the status bar.
    screen.keys("Escape")  # leave the SQL editor, so keys are commands again
    # A key right after ESC would be read as Alt+key: let the terminal's escape delay pass.
    time.sleep(1.0)
    screen.keys("1")
    screen.wait_for("the live tab", lambda t: "Scored transactions" in t, 20)
    screen.keys("r")
    screen.wait_for("the retrained model", lambda t: "v0002" in t, 420)

    # q quits and leaves nothing behind.
    screen.keys("q")
    screen.wait_for("rtfd to exit", lambda t: "RTFD-EXITED" in t, 60)
    assert "RTFD-EXITED 0" in screen.text()
    deadline = time.monotonic() + 20
    while rtfd_processes(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rtfd_processes(home) == [], "processes left after quitting"
