"""Resolve Apache Kafka's jars from Maven Central once and cache them under the user cache dir.

Maven is used when it is installed; otherwise the Ivy jar that ships inside pyspark does the same
job. After the first successful resolution a marker file makes every later start fully offline.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rtfd.config import Settings
from rtfd.errors import DependencyMissing
from rtfd.locks import file_lock
from rtfd.sysinfo import java_executable, maven_executable

log = logging.getLogger(__name__)

SCALA = "2.13"
# Kafka 4 logs through log4j2; this binds its slf4j 1.x API to log4j2.
LOG4J_BINDING = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3")
MARKER = ".complete"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>rtfd</groupId><artifactId>embedded-kafka</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>{lg}</groupId><artifactId>{la}</artifactId><version>{lv}</version></dependency>
  </dependencies>
</project>
"""


def kafka_lib_dir(settings: Settings) -> Path:
    return settings.jars_dir / f"kafka_{SCALA}-{settings.broker_kafka_version}"


def kafka_jars_cached(settings: Settings) -> bool:
    return (kafka_lib_dir(settings) / MARKER).exists()


def ensure_kafka_jars(settings: Settings) -> Path:
    """Return the directory holding every jar the broker needs, downloading them the first time."""
    target = kafka_lib_dir(settings)
    if (target / MARKER).exists():
        return target
    with file_lock(settings.jars_dir / ".kafka.lock", what="the Kafka jar download"):
        if (target / MARKER).exists():
            return target
        version = settings.broker_kafka_version
        print(
            f"rtfd: downloading Apache Kafka {version} jars from Maven Central "
            f"(once, ~45 MB) into {target} ...",
            file=sys.stderr,
            flush=True,
        )
        staging = Path(tempfile.mkdtemp(prefix="kafka-jars-", dir=settings.jars_dir))
        try:
            if maven_executable():
                _resolve_with_maven(staging, version)
            else:
                _resolve_with_ivy(staging, version)
            jars = sorted(p.name for p in (staging / "libs").glob("*.jar"))
            if not any(j.startswith(f"kafka_{SCALA}-") for j in jars):
                raise DependencyMissing(f"Kafka {version} jars could not be resolved")
            (staging / "libs" / MARKER).write_text("\n".join(jars) + "\n", encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            (staging / "libs").rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("Kafka %s jars cached in %s", version, target)
        print(f"rtfd: Kafka jars ready ({len(jars)} files).", file=sys.stderr, flush=True)
        return target


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise DependencyMissing(
            f"{what} failed (exit {proc.returncode}); is Maven Central reachable? "
            + " | ".join(tail)
        )


def _resolve_with_maven(staging: Path, version: str) -> None:
    lg, la, lv = LOG4J_BINDING
    (staging / "pom.xml").write_text(
        _POM.format(scala=SCALA, version=version, lg=lg, la=la, lv=lv), encoding="utf-8"
    )
    mvn = maven_executable()
    assert mvn is not None
    _run(
        [
            mvn,
            "-B",
            "-q",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging / 'libs'}",
            "-DincludeScope=runtime",
        ],
        staging,
        "mvn dependency:copy-dependencies",
    )


def _resolve_with_ivy(staging: Path, version: str) -> None:
    import pyspark

    ivy = next((Path(pyspark.__file__).parent / "jars").glob("ivy-*.jar"), None)
    java = java_executable()
    if ivy is None or java is None:
        raise DependencyMissing("neither Maven nor pyspark's Ivy is available to fetch Kafka jars")
    pattern = str(staging / "libs" / "[artifact]-[revision](-[classifier]).[ext]")
    for group, artifact, ver in (
        ("org.apache.kafka", f"kafka_{SCALA}", version),
        LOG4J_BINDING,
    ):
        _run(
            [
                java,
                "-jar",
                str(ivy),
                "-dependency",
                group,
                artifact,
                ver,
                "-confs",
                "default",
                "-retrieve",
                pattern,
                "-cache",
                str(staging / "ivy-cache"),
            ],
            staging,
            "ivy resolve",
        )
