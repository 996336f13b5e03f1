"""``rtfd doctor``: check the machine and say how to fix each problem."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtfd.config import Settings


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("doctor", help="check Python, Java, Docker, ports, dirs and jars")
    parser.set_defaults(func=cmd_doctor)


def _writable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK)


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in display order. Never raises."""
    from rtfd.broker import resolve_backend
    from rtfd.broker.jars import kafka_jars_cached, kafka_lib_dir
    from rtfd.errors import RtfdError
    from rtfd.sysinfo import docker_engine_version, java_version, port_in_use

    checks: list[Check] = []
    py = sys.version_info
    checks.append(
        Check("python", py >= (3, 11), f"{py.major}.{py.minor}.{py.micro}", "install Python 3.11+")
    )
    java = java_version()
    checks.append(
        Check(
            "java",
            java is not None and java >= 17,
            f"Java {java}" if java else "not found",
            "apt-get install openjdk-17-jre-headless (or set JAVA_HOME to a JDK 17+)",
        )
    )
    docker = docker_engine_version()
    checks.append(
        Check(
            "docker engine",
            docker is not None,
            f"engine {docker}" if docker else "no engine answers (the client alone is not enough)",
            "optional: install and start Docker to use Redpanda; "
            "otherwise the embedded Kafka is used",
            required=False,
        )
    )
    try:
        backend = resolve_backend(settings)
        checks.append(
            Check("broker backend", True, f"{settings.broker_backend} -> {backend} will be used")
        )
    except RtfdError as e:
        backend = ""
        checks.append(Check("broker backend", False, "none available", e.message))
    if backend in ("kafka", "redpanda"):
        from rtfd.broker.kafka import PidRecord

        record = PidRecord.read(settings.run_dir / "kafka.pid")
        ours = record is not None and record.port == settings.broker_port
        for port, name in (
            (settings.broker_port, "broker_port"),
            (settings.broker_controller_port, "broker_controller_port"),
        ):
            busy = port_in_use(port)
            checks.append(
                Check(
                    f"port {port}",
                    not busy or ours,
                    "in use by rtfd's broker" if busy and ours else ("in use" if busy else "free"),
                    f"set RTFD_{name.upper()} to a free port",
                )
            )
    if backend == "kafka":
        cached = kafka_jars_cached(settings)
        checks.append(
            Check(
                "kafka jars",
                cached,
                f"cached in {kafka_lib_dir(settings)}" if cached else "not cached yet",
                "they are downloaded from Maven Central on the first `rtfd broker up` (~45 MB)",
                required=False,
            )
        )
    for label, path in (
        ("data dir", settings.data_dir),
        ("cache dir", settings.cache_root),
        ("log dir", settings.log_root),
    ):
        checks.append(
            Check(label, _writable(path), str(path), f"make {path} writable or set RTFD_HOME")
        )
    return checks


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    checks = run_checks(settings)
    width = max(len(c.name) for c in checks)
    failed = False
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        print(f"{mark}  {c.name:<{width}}  {c.detail}")
        if not c.ok:
            print(f"      {'':<{width}}  fix: {c.fix}")
            failed = failed or c.required
    return 1 if failed else 0
