"""Facts about the machine: Java, Docker, Maven, free ports. Cheap, cached, never raising."""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path


def _run(cmd: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def java_executable() -> str | None:
    """The java binary: $JAVA_HOME/bin/java if set, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


@functools.lru_cache(maxsize=1)
def java_version() -> int | None:
    """The major version of the java that rtfd would use, or None if there is none."""
    java = java_executable()
    if java is None:
        return None
    proc = _run([java, "-version"])
    if proc is None:
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


@functools.lru_cache(maxsize=1)
def docker_engine_version() -> str | None:
    """The Docker engine's version if an engine answers (a client alone is not enough)."""
    if shutil.which("docker") is None:
        return None
    proc = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=8.0)
    if proc is None or proc.returncode != 0:
        return None
    version = proc.stdout.strip()
    return version or None


def maven_executable() -> str | None:
    return shutil.which("mvn")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs: rtfd's one liveness check (brokers, Spark orphans).

    A zombie (``Z``) or a dying process (``X``) still "exists" for ``kill(pid, 0)`` but does
    nothing any more: it counts as dead, so waits for an ended process end when it exits, not
    when its parent reaps it. A process of another user counts as alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # The command name in parentheses may hold spaces and ")": the state follows the last.
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
