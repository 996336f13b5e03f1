"""Spark's own Kafka connector (``spark-sql-kafka-0-10``), resolved once, verified and cached.

The pyspark wheel carries no Kafka jars. The first start resolves the connector from Maven Central
with the Ivy that ships inside pyspark (Ivy cache under ``<cache>/ivy``) and copies the jars that
pyspark does not already have into ``<cache>/jars/spark-kafka-<pyspark version>/``. Each is checked
against the checksums Maven Central publishes and, for the pinned pyspark, against the SHA-256
values below (:mod:`rtfd.checksums`); only then is the marker written. Every later start re-hashes
the cached jars, passes them as ``spark.jars`` and needs no network at all.

The connector version must equal pyspark's exactly: it is compiled against Spark's internal APIs,
which change between releases. Maven Central publishes it only up to 4.2.0, which is why rtfd pins
pyspark to 4.2.0; a pyspark whose connector cannot be resolved is an error, never a substitute.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rtfd import checksums
from rtfd.checksums import (
    Coordinate,
    flatten_layout,
    retry_hint,
    verify_cached,
    verify_downloads,
    write_marker,
)
from rtfd.config import Settings
from rtfd.errors import DependencyMissing

log = logging.getLogger(__name__)

SCALA = "2.13"
ARTIFACT = f"spark-sql-kafka-0-10_{SCALA}"
GROUP = "org.apache.spark"
# The pyspark release pyproject.toml pins: the newest whose connector Maven Central publishes.
PINNED_PYSPARK = "4.2.0"

# SHA-256 of every connector jar kept for a pyspark version (those pyspark does not ship). Taken
# from the jars Ivy downloaded from Maven Central and checked against every checksum Central
# publishes for them: .sha1 for all 4, .sha256 for 3, .sha512 for 1.
PINNED_SHA256: dict[str, dict[str, str]] = {
    PINNED_PYSPARK: {
        "org.apache.commons:commons-pool2:2.13.1": (
            "f77a5060d6936a9144023584232f9de3f2248f1abfe156e9d31795f18770674f"
        ),
        "org.apache.kafka:kafka-clients:3.9.2": (
            "014b4ef36884478a932641818b080c36a8f8e2e92dc771e800c9d2694f4f83d8"
        ),
        "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0": (
            "64539c45e5d39f7ddb747312c239f38f5208d08c1a0ddf7d70beb2fbd9373705"
        ),
        "org.apache.spark:spark-token-provider-kafka-0-10_2.13:4.2.0": (
            "641c7947afc8aa1189e433b7c2d305293993c8691bc1c2062d6d4f513b12518c"
        ),
    },
}

# Everything the connector pulls in that pyspark already ships: excluded so the resolution is
# small (no 50 MB Hadoop client) and no second copy of a class lands on the classpath.
_EXCLUDED_ORGS = (
    "org.apache.hadoop",
    "org.slf4j",
    "org.xerial.snappy",
    "at.yawk.lz4",
    "org.lz4",
    "com.google.code.findbugs",
    "org.scala-lang",
    "org.scala-lang.modules",
)

_IVY_SETTINGS = """<ivysettings>
  <settings defaultResolver="main"/>
  <caches defaultCacheDir="{cache}"/>
  <resolvers>
    <chain name="main" returnFirst="true">
      <ibiblio name="central" m2compatible="true" root="{root}"/>
    </chain>
  </resolvers>
</ivysettings>
"""
# Maven Central only: a local ~/.m2 that holds a pom without its jar makes Spark's default
# resolver chain fail ("download failed: slf4j-api.jar").

_IVY_MODULE = """<ivy-module version="2.0">
  <info organisation="rtfd" module="spark-kafka-connector"/>
  <configurations><conf name="default"/></configurations>
  <dependencies>
    <dependency org="{group}" name="{artifact}" rev="{version}" conf="default->default">
{excludes}
    </dependency>
  </dependencies>
</ivy-module>
"""


def pyspark_version() -> str:
    import pyspark

    return str(pyspark.__version__)


def pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def connector_dir(settings: Settings) -> Path:
    """Where the connector jars for the installed pyspark are cached."""
    return settings.jars_dir / f"spark-kafka-{pyspark_version()}"


def cached_connector_jars(settings: Settings) -> list[Path] | None:
    """The cached jars after re-hashing them, or None when the connector is not resolved yet.

    Raises :class:`rtfd.checksums.JarChecksumError` when a cached jar was altered.
    """
    version = pyspark_version()
    directory = connector_dir(settings)
    marker = verify_cached(directory, version=version, pinned=PINNED_SHA256.get(version))
    if marker is None:
        return None
    return [directory / jar.name for jar in marker.jars]


def ensure_connector(settings: Settings) -> list[Path]:
    """Return the connector's jars, resolving them from Maven Central the first time.

    The cache is re-verified under the download lock, so a concurrent first download is never
    mistaken for tampering.
    """
    from rtfd.locks import file_lock

    with file_lock(
        settings.jars_dir / ".spark-kafka.lock", what="the Spark Kafka connector download"
    ):
        jars = cached_connector_jars(settings)
        if jars is not None:
            return jars
        return _resolve(settings)


def _resolve(settings: Settings) -> list[Path]:
    from rtfd.sysinfo import java_executable

    java = java_executable()
    ivy_jar = next(pyspark_jars_dir().glob("ivy-*.jar"), None)
    if java is None or ivy_jar is None:
        raise DependencyMissing(
            "cannot resolve Spark's Kafka connector: Java 17+ and pyspark's Ivy jar are needed"
        )
    version = pyspark_version()
    pinned = PINNED_SHA256.get(version)
    target = connector_dir(settings)
    print(
        f"rtfd: resolving Spark's Kafka connector ({ARTIFACT} {version}) from Maven Central "
        f"(once) into {target} ...",
        file=sys.stderr,
        flush=True,
    )
    if pinned is None:
        note = (
            f"pyspark {version} is not the version rtfd pins ({PINNED_PYSPARK}); the connector's "
            "jars are checked against Maven Central's published checksums only"
        )
        log.warning(note)
        print(f"rtfd: {note}.", file=sys.stderr, flush=True)
    ivy_cache = settings.cache_root / "ivy"
    staging = Path(tempfile.mkdtemp(prefix="spark-kafka-", dir=settings.jars_dir))
    try:
        try:
            found = _ivy_retrieve(java, ivy_jar, ivy_cache, staging, version)
        except DependencyMissing as e:
            raise DependencyMissing(
                f"Spark's Kafka connector {GROUP}:{ARTIFACT}:{version} could not be resolved from "
                f"Maven Central ({e}); it must match pyspark {version} exactly, which is why rtfd "
                f"pins pyspark to {PINNED_PYSPARK}: reinstall rtfd's dependencies, or check the "
                "network or proxy"
            ) from e

        def forget(coordinate: Coordinate) -> None:
            # Ivy would otherwise hand the retry the same bytes from its cache.
            shutil.rmtree(
                ivy_cache / "cache" / coordinate.group / coordinate.artifact, ignore_errors=True
            )

        print(
            f"rtfd: checking {len(found)} jars against their checksums ...",
            file=sys.stderr,
            flush=True,
        )
        jars = verify_downloads(
            found,
            pinned=pinned,
            what=f"{ARTIFACT} {version}",
            hint=retry_hint(settings.jars_dir),
            forget=forget,
        )
        out = staging / "jars"
        write_marker(out, version, jars, pinned=pinned is not None)
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    names = [j.name for j in jars]
    log.info("Spark Kafka connector %s verified and cached in %s: %s", version, target, names)
    return [target / n for n in names]


def _ivy_retrieve(
    java: str, ivy_jar: Path, cache: Path, staging: Path, version: str
) -> list[tuple[Path, Coordinate]]:
    """Resolve the connector into ``staging/jars``; return the jars kept, with coordinates."""
    cache.mkdir(parents=True, exist_ok=True)
    settings_xml = staging / "ivysettings.xml"
    settings_xml.write_text(
        _IVY_SETTINGS.format(cache=cache / "cache", root=checksums.MAVEN_CENTRAL),
        encoding="utf-8",
    )
    module_xml = staging / "ivy.xml"
    excludes = "\n".join(f'      <exclude org="{org}"/>' for org in _EXCLUDED_ORGS)
    module_xml.write_text(
        _IVY_MODULE.format(group=GROUP, artifact=ARTIFACT, version=version, excludes=excludes),
        encoding="utf-8",
    )
    layout = staging / "retrieved"
    cmd = [
        java,
        "-jar",
        str(ivy_jar),
        "-settings",
        str(settings_xml),
        "-ivy",
        str(module_xml),
        "-confs",
        "default",
        "-types",
        "jar",
        "-warn",
        "-retrieve",
        str(
            layout
            / "[organisation]/[artifact]/[revision]/[artifact]-[revision](-[classifier]).[ext]"
        ),
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DependencyMissing(f"ivy failed: {e}") from e
    if proc.returncode != 0:
        tail = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise DependencyMissing("ivy resolve failed: " + " | ".join(tail[-3:]))
    shipped = {_artifact_of(p.name) for p in pyspark_jars_dir().glob("*.jar")}
    kept = []
    for path, coordinate in flatten_layout(layout, staging / "flat"):
        if coordinate.artifact in shipped:
            continue
        # "<org>_<file>", the names this cache has always used.
        dest = staging / "jars" / f"{coordinate.group}_{path.name}"
        dest.parent.mkdir(exist_ok=True)
        path.rename(dest)
        kept.append((dest, coordinate))
    if not any(c.artifact == ARTIFACT for _, c in kept):
        raise DependencyMissing(f"{ARTIFACT} {version}: no connector jar retrieved")
    return kept


def _artifact_of(jar_name: str) -> str:
    """The artifact of a jar file name: ``kafka-clients-3.9.2.jar`` -> ``kafka-clients``."""
    stem = jar_name.removesuffix(".jar")
    parts = stem.split("-")
    for i, part in enumerate(parts):
        if part[:1].isdigit() and i > 0:
            return "-".join(parts[:i])
    return stem
