"""Benchmark section ``appliance``: the whole appliance's memory at 1,000 tx/s.

``rtfd up --rate 1000`` (the headless appliance: broker, model, stream and generator, the same
supervisor the TUI drives) runs in a subprocess with a fresh home, its own embedded Kafka broker
on free ports, the default settings and the bench's live model. Once its stream has written
Parquet, the resident memory of every process of the appliance (the ``rtfd up`` process and
everything it started: Spark's JVM, the broker's JVM, started in its own session, found by its
home in the command line) is sampled every second for three minutes; ``peak_rss_mb`` is the
largest sum. Then the appliance gets SIGTERM, as Ctrl-C would, and the section checks that it
stopped within its timeout and left no process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import RssSampler, install_models, scale_of

SECTION = "appliance"
RATE = 1_000


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    out: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            raw = Path(entry.path, "cmdline").read_bytes()
            cmd = raw.replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(entry.name)] = (ppid, cmd)
    return out


def appliance_pids(root: int, marker: str) -> dict[str, list[int]]:
    """The appliance's processes by kind: ``root``'s descendants and every process whose command
    line names ``marker`` (the home: the broker runs in its own session)."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root] + [p for p, (_, cmd) in procs.items() if marker in cmd]
    while todo:
        pid = todo.pop()
        if pid in found or pid not in procs:
            continue
        found.add(pid)
        todo += children.get(pid, [])
    groups: dict[str, list[int]] = {"rtfd (Python)": [], "Spark JVM": [], "Kafka JVM": []}
    for pid in found:
        cmd = procs[pid][1]
        if "kafka.Kafka" in cmd:
            groups["Kafka JVM"].append(pid)
        elif "java" in cmd.split(" ", 1)[0]:
            groups["Spark JVM"].append(pid)
        else:
            groups["rtfd (Python)"].append(pid)
    return groups


def bench_appliance(report: Any, settings: Any, runs: int) -> None:
    """Peak RSS of ``rtfd up --rate 1000`` (every process it runs) over three minutes."""
    from rtfd.lake import visible_files
    from rtfd.sysinfo import free_port

    quick = bool(report.options.get("quick"))
    measure_s = 40.0 if quick else 180.0
    home = Path(settings.data_dir) / "appliance"
    port, controller = free_port(), free_port()
    s = settings.replace(
        home=home,
        broker_backend="kafka",
        broker_bootstrap_servers="",
        broker_port=port,
        broker_controller_port=controller,
        broker_heap_mb=512,
        generator_rate=RATE,
    )
    s.ensure_dirs()
    version = install_models(settings, s, scale_of(report))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTFD_")}
    env.update(
        {
            "RTFD_HOME": str(home),
            "RTFD_CONFIG": str(home / "none.toml"),
            "RTFD_BROKER_BACKEND": "kafka",
            "RTFD_BROKER_PORT": str(port),
            "RTFD_BROKER_CONTROLLER_PORT": str(controller),
        }
    )
    if settings.cache_dir:
        env["RTFD_CACHE_DIR"] = str(settings.cache_dir)
    log_path = Path(settings.data_dir) / "appliance.out"
    with log_path.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtfd.cli", "up", "--rate", str(RATE)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        sampler: RssSampler | None = None
        try:
            deadline = time.monotonic() + 600
            while not visible_files(s.enriched_dir):
                if proc.poll() is not None:
                    raise RuntimeError(f"rtfd up exited ({proc.returncode}): {_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no Parquet after 600 s: {_tail(log_path)}")
                time.sleep(1.0)
            started = time.perf_counter() - t0
            sampler = RssSampler(lambda: appliance_pids(proc.pid, str(home))).start()
            end = time.monotonic() + measure_s
            while time.monotonic() < end:
                if proc.poll() is not None:
                    raise RuntimeError(f"rtfd up exited ({proc.returncode}): {_tail(log_path)}")
                time.sleep(1.0)
            sampler.stop()
            sampler.sample()
        finally:
            if sampler is not None:
                sampler.stop()
            t_stop = time.perf_counter()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
            stop_s = time.perf_counter() - t_stop
            left = [p for ps in appliance_pids(proc.pid, str(home)).values() for p in ps]
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    rows = 0
    import pyarrow.parquet as pq

    for f in visible_files(s.enriched_dir):
        rows += pq.ParquetFile(f).metadata.num_rows
    fig = report.figure(
        SECTION,
        "peak RSS of the whole appliance at 1,000 tx/s",
        "MB",
        note=", ".join(
            f"{k} {v:,.0f} MB ({sampler.counts.get(k, 0)} process(es))"
            for k, v in sampler.peaks.items()
        )
        + f"; {sampler.samples} samples over {measure_s:.0f} s after the first Parquet "
        f"({started:.0f} s after `rtfd up` started); {rows:,} rows in Parquet when stopped",
    )
    fig.values = [sampler.peak_total]
    f_stop = report.figure(
        SECTION,
        "`rtfd up` stop on SIGTERM (everything it started gone)",
        "s",
        note="no process left behind" if not left else f"**{len(left)} process(es) left**",
    )
    f_stop.values = [stop_s]
    report.summary["peak_rss_mb"] = round(sampler.peak_total, 1)
    report.notes[SECTION] = (
        f"`rtfd up --rate {RATE}` with default settings, a fresh home, its own embedded Kafka "
        f"and the bench's live model ({version}); the generator's rate sets the cards (at the "
        "default time-lapse, 1,000 tx/s is 50,000 cards). Its log is `appliance.out` in the "
        "bench home."
    )
    if left:
        raise RuntimeError(f"rtfd up left {len(left)} process(es) behind: {left}")


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").splitlines()[-5:])
    return ""


SECTIONS = {SECTION: bench_appliance}
BUDGET_S = {SECTION: 300}
