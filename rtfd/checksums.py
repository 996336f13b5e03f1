"""Integrity of the jars rtfd downloads from Maven Central and runs in its JVMs.

A jar on the broker's or Spark's classpath is code that runs with the user's rights, so a
corrupted or substituted download must never reach the cache. Two independent checks guard a
download:

* **Maven Central's own checksum files** next to each artifact. Central always serves ``.sha1``;
  ``.sha256`` and ``.sha512`` only for some artifacts (of rtfd's 50 default jars, 39 and 20), so
  every one served is checked. This catches a damaged or altered transfer, but it trusts whoever
  answers as Maven Central.
* **SHA-256 values pinned in the code** for the default versions (``PINNED_SHA256`` in
  :mod:`rtfd.broker.jars` and :mod:`rtfd.stream.connector`), which trust nothing on the network.
  A version the user picks that rtfd does not pin gets the first check only, and the log says so.

A mismatch removes the jar, writes no completion marker and raises one line saying what to do.

Cached jars are re-hashed in full at every start and compared with the SHA-256 recorded in the
marker at download time (and with the pin, so an edited marker is caught too). Measured: the
broker's 46 jars (44 MB) take ~50 ms with a warm page cache and ~95 ms cold, the connector's 4
(10 MB) 10-30 ms — noise next to a JVM start — whereas a size+mtime check would miss a same-size
edit whose mtime was put back. Files in the cache directory that the marker does not list are
refused as well: the broker's classpath is ``<dir>/*``, so a dropped-in jar would run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath

from rtfd.errors import DependencyMissing

log = logging.getLogger(__name__)

MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"
# The checksum files Central may serve next to an artifact, weakest first (it serves .md5 too,
# which adds nothing to .sha1).
PUBLISHED_ALGORITHMS = ("sha1", "sha256", "sha512")
_HEX_LENGTH = {"sha1": 40, "sha256": 64, "sha512": 128}
MARKER = ".complete"
MARKER_FORMAT = 2
FETCH_TIMEOUT_S = 30.0
# Checksum files are tiny; a few parallel requests turn ~150 round trips into a few seconds.
_FETCH_WORKERS = 16


class JarChecksumError(DependencyMissing):
    """A downloaded or cached jar does not match the checksum it must have."""

    title = "Jar checksum mismatch"


@dataclass(frozen=True, order=True)
class Coordinate:
    """A Maven artifact: ``group:artifact:version[:classifier]``, packaged as a jar."""

    group: str
    artifact: str
    version: str
    classifier: str = ""

    @property
    def key(self) -> str:
        """``group:artifact:version[:classifier]``, the key of the pinned tables."""
        base = f"{self.group}:{self.artifact}:{self.version}"
        return f"{base}:{self.classifier}" if self.classifier else base

    @property
    def file_name(self) -> str:
        suffix = f"-{self.classifier}" if self.classifier else ""
        return f"{self.artifact}-{self.version}{suffix}.jar"

    def url(self, base: str) -> str:
        """The artifact's address in a Maven repository rooted at ``base``."""
        group_path = self.group.replace(".", "/")
        return f"{base.rstrip('/')}/{group_path}/{self.artifact}/{self.version}/{self.file_name}"

    @classmethod
    def parse(cls, key: str) -> Coordinate:
        parts = key.split(":")
        if len(parts) not in (3, 4) or not all(parts):
            raise ValueError(f"not a Maven coordinate: {key!r}")
        return cls(*parts)

    @classmethod
    def from_layout(cls, rel: PurePath) -> Coordinate:
        """Parse ``<group>/<artifact>/<version>/<file>.jar`` relative to a layout root.

        The group may be Maven's nested directories (``org/apache/kafka``, what
        ``dependency:copy-dependencies -Dmdep.useRepositoryLayout`` writes) or one dotted
        directory (``org.apache.kafka``, what rtfd's Ivy retrieve pattern writes).
        """
        parts = rel.parts
        if len(parts) < 4:
            raise ValueError(f"not a repository layout path: {rel}")
        group = ".".join(parts[:-3])
        artifact, version, name = parts[-3:]
        stem = f"{artifact}-{version}"
        if not name.startswith(stem) or not name.endswith(".jar"):
            raise ValueError(f"{name} is not a jar of {artifact} {version}")
        rest = name[len(stem) : -len(".jar")]
        if rest and not rest.startswith("-"):
            raise ValueError(f"{name} is not a jar of {artifact} {version}")
        return cls(group, artifact, version, rest[1:])


@dataclass(frozen=True)
class CachedJar:
    """One verified jar of a cache directory, as its marker records it."""

    name: str
    coordinate: Coordinate
    sha256: str
    size: int


@dataclass(frozen=True)
class Marker:
    """The completion marker of a cache directory: written only after every jar was verified."""

    version: str
    pinned: bool
    jars: tuple[CachedJar, ...]


def file_digests(path: Path, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of ``path`` for each algorithm, reading the file once."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def flatten_layout(layout: Path, out: Path) -> list[tuple[Path, Coordinate]]:
    """Move the jars of a ``group/artifact/version/`` tree into ``out``, keeping coordinates."""
    out.mkdir(parents=True, exist_ok=True)
    found: list[tuple[Path, Coordinate]] = []
    for jar in sorted(layout.rglob("*.jar")):
        try:
            coordinate = Coordinate.from_layout(jar.relative_to(layout))
        except ValueError as e:
            raise DependencyMissing(f"unexpected file from the resolver: {e}") from e
        dest = out / coordinate.file_name
        if dest.exists():
            raise DependencyMissing(f"two resolved artifacts are both named {dest.name}")
        jar.rename(dest)
        found.append((dest, coordinate))
    return found


def retry_hint(cache_dir: Path) -> str:
    """What to do after a download failed its checksum."""
    return (
        f"delete {cache_dir} and retry; if it fails again, check the network or proxy "
        "(something between this machine and Maven Central altered the download)"
    )


def _fetch_text(url: str) -> str | None:
    """The body of ``url``, or None when the server has no such file (HTTP 404)."""
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as resp:
            body: bytes = resp.read(4096)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise DependencyMissing(
            f"could not fetch {url} (HTTP {e.code}); check the network or proxy and retry"
        ) from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DependencyMissing(
            f"could not fetch {url} ({reason}); check the network or proxy and retry"
        ) from e
    return body.decode("ascii", errors="replace")


def published_checksums(coordinate: Coordinate) -> dict[str, str]:
    """Every checksum Maven Central serves for the artifact, by algorithm (at least one)."""
    url = coordinate.url(MAVEN_CENTRAL)
    found: dict[str, str] = {}
    for algo in PUBLISHED_ALGORITHMS:
        text = _fetch_text(f"{url}.{algo}")
        if text is None:
            continue
        # Some files are "<hex>  <file name>"; the hex is always first.
        value = (text.split() or [""])[0].lower()
        if not re.fullmatch(f"[0-9a-f]{{{_HEX_LENGTH[algo]}}}", value):
            raise JarChecksumError(
                f"{url}.{algo} is not a {algo.upper()} checksum; check the network or proxy "
                "(a captive portal or proxy may be answering instead of Maven Central)"
            )
        found[algo] = value
    if not found:
        raise JarChecksumError(
            f"Maven Central publishes no checksum for {coordinate.file_name} ({url}); "
            "check the network or proxy and retry"
        )
    return found


def _mismatch(name: str, algo: str, source: str, expected: str, got: str, hint: str) -> str:
    return (
        f"{name} does not match the {algo.upper()} {source} (expected {expected[:16]}…, "
        f"got {got[:16]}…); it was removed and nothing was cached — {hint}"
    )


def verify_downloads(
    jars: Sequence[tuple[Path, Coordinate]],
    *,
    pinned: Mapping[str, str] | None,
    what: str,
    hint: str,
    forget: Callable[[Coordinate], None] | None = None,
) -> list[CachedJar]:
    """Check freshly downloaded jars; return their records, or remove the bad one and raise.

    ``pinned`` maps coordinate keys to SHA-256 for a version rtfd pins (the resolved set must be
    exactly the pinned set), or is None for one it does not (Maven Central's checksums only).
    ``forget`` drops a bad artifact from the resolver's own cache so that a retry downloads it
    again instead of copying the same bytes.
    """

    def refuse(path: Path, coordinate: Coordinate, message: str) -> JarChecksumError:
        path.unlink(missing_ok=True)
        if forget is not None:
            forget(coordinate)
        return JarChecksumError(message)

    if pinned is not None:
        resolved = {c.key for _, c in jars}
        for path, coordinate in jars:
            if coordinate.key not in pinned:
                raise refuse(
                    path,
                    coordinate,
                    f"{what} resolved {coordinate.file_name} ({coordinate.key}), which rtfd "
                    f"does not pin; it was removed and nothing was cached — {hint}",
                )
        missing = sorted(set(pinned) - resolved)
        if missing:
            raise JarChecksumError(
                f"{what} resolved without {', '.join(missing)}, which rtfd pins; "
                f"nothing was cached — {hint}"
            )
    local = {path: file_digests(path, PUBLISHED_ALGORITHMS) for path, _ in jars}
    if pinned is not None:
        for path, coordinate in jars:
            expected, got = pinned[coordinate.key], local[path]["sha256"]
            if got != expected:
                raise refuse(
                    path,
                    coordinate,
                    _mismatch(path.name, "sha256", "rtfd pins for it", expected, got, hint),
                )
    with ThreadPoolExecutor(max_workers=_FETCH_WORKERS) as pool:
        published = list(pool.map(lambda item: published_checksums(item[1]), jars))
    for (path, coordinate), sums in zip(jars, published, strict=True):
        for algo, expected in sums.items():
            got = local[path][algo]
            if got != expected:
                raise refuse(
                    path,
                    coordinate,
                    _mismatch(path.name, algo, "Maven Central publishes", expected, got, hint),
                )
    return [
        CachedJar(path.name, coordinate, local[path]["sha256"], path.stat().st_size)
        for path, coordinate in jars
    ]


def write_marker(directory: Path, version: str, jars: Sequence[CachedJar], *, pinned: bool) -> None:
    """Record the verified jars; only a directory with this marker counts as cached."""
    doc = {
        "format": MARKER_FORMAT,
        "version": version,
        "pinned": pinned,
        "jars": [
            {"name": j.name, "coordinate": j.coordinate.key, "sha256": j.sha256, "size": j.size}
            for j in jars
        ],
    }
    (directory / MARKER).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def read_marker(directory: Path) -> Marker | None:
    """The marker of ``directory``; None when absent or unreadable.

    A marker of an older rtfd (a plain list of names, no hashes) reads as None too, so that cache
    is resolved again once rather than trusted unverified.
    """
    try:
        doc = json.loads((directory / MARKER).read_text(encoding="utf-8"))
        if doc["format"] != MARKER_FORMAT:
            return None
        jars = tuple(
            CachedJar(
                _plain_jar_name(j["name"]),
                Coordinate.parse(str(j["coordinate"])),
                str(j["sha256"]),
                int(j["size"]),
            )
            for j in doc["jars"]
        )
        return Marker(str(doc["version"]), bool(doc["pinned"]), jars)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _plain_jar_name(name: object) -> str:
    """A file name inside the cache directory: an edited marker must not point rtfd elsewhere."""
    if (
        not isinstance(name, str)
        or PurePath(name).name != name
        or "\\" in name
        or not name.endswith(".jar")
        or name.startswith(".")
    ):
        raise ValueError(f"not a jar file name: {name!r}")
    return name


def verify_cached(
    directory: Path, *, version: str, pinned: Mapping[str, str] | None
) -> Marker | None:
    """Re-check a cache directory; None when it holds no complete download.

    Every listed jar is re-hashed in full. Any difference — a jar changed, missing or replaced by
    a link, a file the marker does not list, a marker that disagrees with the pins — removes the
    offending file and the marker (so the next start downloads afresh) and raises
    :class:`JarChecksumError`.
    """
    marker = read_marker(directory)
    if marker is None:
        return None

    def refuse(bad: Path | None, problem: str) -> JarChecksumError:
        (directory / MARKER).unlink(missing_ok=True)
        if bad is not None:
            if bad.is_dir() and not bad.is_symlink():
                shutil.rmtree(bad, ignore_errors=True)
            else:
                bad.unlink(missing_ok=True)
        return JarChecksumError(
            f"{problem} (corrupted or tampered with); it and the completion marker were removed "
            f"— start again to download the jars afresh, or delete {directory}"
        )

    listed = {j.name for j in marker.jars}
    if marker.version != version:
        raise refuse(None, f"the marker in {directory} is for version {marker.version}")
    for entry in sorted(directory.iterdir()):
        if entry.name != MARKER and entry.name not in listed:
            raise refuse(entry, f"{entry.name} in {directory} was not downloaded by rtfd")
    if pinned is not None:
        keys = {j.coordinate.key for j in marker.jars}
        if keys != set(pinned) or not marker.pinned:
            raise refuse(None, f"the marker in {directory} does not list the jars rtfd pins")
    for jar in marker.jars:
        path = directory / jar.name
        if path.is_symlink() or not path.is_file():
            raise refuse(path, f"cached jar {jar.name} in {directory} is missing or not a file")
        if pinned is not None and jar.sha256 != pinned[jar.coordinate.key]:
            raise refuse(
                path,
                f"the marker in {directory} records a SHA-256 for {jar.name} rtfd does not pin",
            )
        if file_digests(path)["sha256"] != jar.sha256:
            raise refuse(
                path,
                f"cached jar {jar.name} in {directory} does not match the SHA-256 recorded "
                "when it was downloaded",
            )
    return marker
