"""Spark's own Kafka connector (``spark-sql-kafka-0-10``), resolved once and cached.

The pyspark wheel carries no Kafka jars. The first start resolves the connector from Maven Central
with the Ivy that ships inside pyspark (Ivy cache under ``<cache>/ivy``) and copies the jars that
pyspark does not already have into ``<cache>/jars/spark-kafka-<pyspark version>/``; a marker file
lists them, so every later start passes them as ``spark.jars`` and needs no network at all.

The connector version should equal pyspark's. When Maven Central has no such release (pyspark
4.3.0's connector is not published there at the time of writing), the newest fallback release of
the same major version is used and a warning says so: the Kafka source's public surface has been
stable across 4.x minor releases, and the spark tests exercise it end to end.
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

log = logging.getLogger(__name__)

SCALA = "2.13"
ARTIFACT = f"spark-sql-kafka-0-10_{SCALA}"
GROUP = "org.apache.spark"
# Tried in order after the exact pyspark version, newest first.
FALLBACK_VERSIONS = ("4.2.0",)
MARKER = ".complete"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"

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
    """The cached jar list, or None when the connector has not been resolved yet."""
    marker = connector_dir(settings) / MARKER
    if not marker.exists():
        return None
    lines = marker.read_text(encoding="utf-8").splitlines()
    jars = [connector_dir(settings) / name for name in lines[1:] if name.strip()]
    if not jars or not all(j.exists() for j in jars):
        return None
    return jars


def connector_version(settings: Settings) -> str | None:
    """The connector release that was resolved (first line of the marker), if any."""
    marker = connector_dir(settings) / MARKER
    if not marker.exists():
        return None
    first = marker.read_text(encoding="utf-8").splitlines()[:1]
    return first[0].strip() if first else None


def ensure_connector(settings: Settings) -> list[Path]:
    """Return the connector's jars, resolving them from Maven Central the first time."""
    jars = cached_connector_jars(settings)
    if jars is not None:
        return jars
    from rtfd.locks import file_lock

    settings.jars_dir.mkdir(parents=True, exist_ok=True)
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
    wanted = pyspark_version()
    candidates = [wanted, *[v for v in FALLBACK_VERSIONS if v != wanted]]
    print(
        f"rtfd: resolving Spark's Kafka connector ({ARTIFACT}) from Maven Central "
        f"(once) into {connector_dir(settings)} ...",
        file=sys.stderr,
        flush=True,
    )
    errors: list[str] = []
    for version in candidates:
        staging = Path(tempfile.mkdtemp(prefix="spark-kafka-", dir=settings.jars_dir))
        try:
            names = _ivy_retrieve(java, ivy_jar, settings.cache_root / "ivy", staging, version)
        except DependencyMissing as e:
            errors.append(f"{version}: {e}")
            shutil.rmtree(staging, ignore_errors=True)
            continue
        if version != wanted:
            log.warning(
                "%s %s is not on Maven Central; using %s with pyspark %s",
                ARTIFACT,
                wanted,
                version,
                wanted,
            )
            print(
                f"rtfd: {ARTIFACT} {wanted} is not published; using {version} instead.",
                file=sys.stderr,
                flush=True,
            )
        out = staging / "jars"
        (out / MARKER).write_text(version + "\n" + "\n".join(names) + "\n", encoding="utf-8")
        target = connector_dir(settings)
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
        log.info("Spark Kafka connector %s cached in %s: %s", version, target, names)
        return [target / n for n in names]
    raise DependencyMissing(
        f"could not resolve {GROUP}:{ARTIFACT} from Maven Central (tried "
        f"{', '.join(candidates)}); is it reachable? Last error: {errors[-1] if errors else '?'}"
    )


def _ivy_retrieve(java: str, ivy_jar: Path, cache: Path, staging: Path, version: str) -> list[str]:
    """Resolve one connector version into ``staging/jars``; return the jar names kept."""
    cache.mkdir(parents=True, exist_ok=True)
    settings_xml = staging / "ivysettings.xml"
    settings_xml.write_text(
        _IVY_SETTINGS.format(cache=cache / "cache", root=MAVEN_CENTRAL), encoding="utf-8"
    )
    module_xml = staging / "ivy.xml"
    excludes = "\n".join(f'      <exclude org="{org}"/>' for org in _EXCLUDED_ORGS)
    module_xml.write_text(
        _IVY_MODULE.format(group=GROUP, artifact=ARTIFACT, version=version, excludes=excludes),
        encoding="utf-8",
    )
    retrieved = staging / "retrieved"
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
        str(retrieved / "[organisation]_[artifact]-[revision](-[classifier]).[ext]"),
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
    out = staging / "jars"
    out.mkdir()
    kept = []
    for jar in sorted(retrieved.glob("*.jar")):
        # Names are "<org>_<artifact>-<rev>.jar"; pyspark's are "<artifact>-<rev>.jar".
        artifact = _artifact_of(jar.name.split("_", 1)[1] if "_" in jar.name else jar.name)
        if artifact in shipped:
            continue
        jar.rename(out / jar.name)
        kept.append(jar.name)
    if not any(ARTIFACT in k for k in kept):
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
