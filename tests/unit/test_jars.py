"""Downloaded jars are verified against Maven Central's checksums and rtfd's pins, and re-verified
when cached; Spark's Kafka connector must match pyspark exactly.

No network and no JVM: Maven Central is a directory served by ``http.server`` on 127.0.0.1, and the
resolvers (Maven, Ivy) are replaced by functions that copy from it — or deliver altered bytes.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import random
import re
import shutil
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rtfd import checksums
from rtfd.broker import jars
from rtfd.checksums import (
    MARKER,
    Coordinate,
    JarChecksumError,
    read_marker,
    verify_cached,
)
from rtfd.config import Settings, load_settings
from rtfd.errors import DependencyMissing
from rtfd.stream import connector
from rtfd.sysinfo import free_port

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA = "7.7.7"  # a fake Kafka version, pinned or not as a test needs
LOG4J = Coordinate(*jars.LOG4J_BINDING)
# The fake broker's dependency tree: nested and single-segment groups, a classifier, and the
# published checksum files Central serves for real artifacts (sha1 always, sha256/512 sometimes).
BROKER = (
    (Coordinate("org.apache.kafka", "kafka_2.13", KAFKA), ("sha1", "sha256", "sha512")),
    (Coordinate("org.apache.kafka", "kafka-clients", KAFKA), ("sha1", "sha256")),
    (Coordinate("com.example.deep.group", "lib", "1.0"), ("sha1",)),
    (Coordinate("org.example", "native", "2.0", "linux-x86_64"), ("sha1", "sha256")),
    (Coordinate("example", "single", "3"), ("sha1", "sha512")),
    (LOG4J, ("sha1",)),
)
SPARK = "9.9.9"
CONNECTOR = (
    (Coordinate("org.apache.spark", connector.ARTIFACT, SPARK), ("sha1",)),
    (Coordinate("org.apache.kafka", "kafka-clients", "3.9.2"), ("sha1", "sha256", "sha512")),
    (Coordinate("org.apache.commons", "commons-pool2", "2.13.1"), ("sha1", "sha256")),
)


def _payload(coordinate: Coordinate) -> bytes:
    rng = random.Random(coordinate.key)
    return rng.randbytes(rng.randint(2_000, 30_000))


@dataclass
class FakeCentral:
    """A Maven repository directory served over HTTP, standing in for Maven Central."""

    root: Path
    url: str
    published: dict[str, bytes] = field(default_factory=dict)

    def publish(self, coordinate: Coordinate, algorithms: tuple[str, ...]) -> None:
        data = _payload(coordinate)
        path = self.path(coordinate)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        for algo in algorithms:
            self.checksum_file(coordinate, algo).write_text(hashlib.new(algo, data).hexdigest())
        self.published[coordinate.key] = data

    def path(self, coordinate: Coordinate) -> Path:
        return self.root / coordinate.url("").lstrip("/")

    def checksum_file(self, coordinate: Coordinate, algo: str) -> Path:
        return self.path(coordinate).with_name(self.path(coordinate).name + f".{algo}")

    def pins(self, tree: tuple[tuple[Coordinate, tuple[str, ...]], ...]) -> dict[str, str]:
        return {c.key: hashlib.sha256(self.published[c.key]).hexdigest() for c, _ in tree}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def central(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCentral]:
    root = tmp_path / "central"
    root.mkdir()

    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake = FakeCentral(root, f"http://127.0.0.1:{server.server_address[1]}/")
    for coordinate, algorithms in (*BROKER, *CONNECTOR):
        fake.publish(coordinate, algorithms)
    monkeypatch.setattr(checksums, "MAVEN_CENTRAL", fake.url)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # An explicit cache dir: the session may point RTFD_CACHE_DIR at the real jar cache.
    return load_settings({"cache_dir": str(tmp_path / "cache"), "broker_kafka_version": KAFKA})


@dataclass
class FakeResolver:
    """Stands in for Maven/Ivy: lays the tree out by coordinate, optionally with altered bytes."""

    central: FakeCentral
    tree: tuple[tuple[Coordinate, tuple[str, ...]], ...]
    dotted: bool = False
    delivered: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def __call__(self, staging: Path, layout: Path, version: str) -> None:
        self.calls.append(version)
        for coordinate, _ in self.tree:
            group = coordinate.group if self.dotted else coordinate.group.replace(".", "/")
            dest = layout / group / coordinate.artifact / coordinate.version / coordinate.file_name
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = self.delivered.get(coordinate.key, self.central.published[coordinate.key])
            dest.write_bytes(data)


def use_resolver(
    monkeypatch: pytest.MonkeyPatch, central: FakeCentral, *, dotted: bool = False, tree: Any = None
) -> FakeResolver:
    resolver = FakeResolver(central, BROKER if tree is None else tree, dotted=dotted)
    if dotted:
        monkeypatch.setattr(jars, "maven_executable", lambda: None)
        monkeypatch.setattr(jars, "_resolve_with_ivy", resolver)
    else:
        monkeypatch.setattr(jars, "maven_executable", lambda: "/usr/bin/mvn")
        monkeypatch.setattr(jars, "_resolve_with_maven", resolver)
    return resolver


def pin_broker(monkeypatch: pytest.MonkeyPatch, pins: dict[str, str]) -> None:
    monkeypatch.setattr(jars, "PINNED_SHA256", {KAFKA: pins})


def assert_refused(err: BaseException, settings: Settings, jar: str | None) -> None:
    """One line that names the jar and says what to do; nothing cached, no staging left over."""
    message = str(err)
    assert "\n" not in message
    if jar is not None:
        assert jar in message
    assert str(settings.jars_dir) in message and "network or proxy" in message
    target = jars.kafka_lib_dir(settings)
    assert not target.exists() and not jars.kafka_jars_cached(settings)
    left = [p.name for p in settings.jars_dir.iterdir() if not p.name.startswith(".")]
    assert left == []
    if jar is not None:
        assert list(settings.jars_dir.rglob(jar)) == []


def tamper(data: bytes, how: str) -> bytes:
    middle = len(data) // 2
    return {
        "flip-first-byte": bytes([data[0] ^ 1]) + data[1:],
        "flip-middle-byte": data[:middle] + bytes([data[middle] ^ 0x80]) + data[middle + 1 :],
        "flip-last-byte": data[:-1] + bytes([data[-1] ^ 0xFF]),
        "truncated": data[:-1],
        "appended": data + b"\0",
        "empty": b"",
        "other-content": random.Random(how).randbytes(len(data)),
    }[how]


TAMPERS = (
    "flip-first-byte",
    "flip-middle-byte",
    "flip-last-byte",
    "truncated",
    "appended",
    "empty",
    "other-content",
)


# --- coordinates and layouts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        (
            "org/apache/kafka/kafka_2.13/4.1.1/kafka_2.13-4.1.1.jar",
            "org.apache.kafka:kafka_2.13:4.1.1",
        ),
        (
            "org.apache.kafka/kafka-clients/4.1.1/kafka-clients-4.1.1.jar",
            "org.apache.kafka:kafka-clients:4.1.1",
        ),
        (
            "com/github/luben/zstd-jni/1.5.6-10/zstd-jni-1.5.6-10.jar",
            "com.github.luben:zstd-jni:1.5.6-10",
        ),
        (
            "org/example/native/2.0/native-2.0-linux-x86_64.jar",
            "org.example:native:2.0:linux-x86_64",
        ),
        ("example/single/3/single-3.jar", "example:single:3"),
    ],
)
def test_coordinates_are_read_from_maven_and_ivy_layouts(rel: str, expected: str) -> None:
    coordinate = Coordinate.from_layout(Path(rel))
    assert coordinate.key == expected
    assert Coordinate.parse(expected) == coordinate
    assert coordinate.url("https://repo/m2/").endswith(
        "/" + "/".join([*coordinate.group.split("."), *Path(rel).parts[-3:]])
    )


@pytest.mark.parametrize(
    "rel",
    [
        "kafka-clients-4.1.1.jar",
        "a/b/1.0/c-1.0.jar",
        "a/b/1.0/b-1.1.jar",
        "a/b/1.0/b-1.0x.jar",
        "a/b/1.0/b-1.0.pom",
        "b/1.0/b-1.0.jar",
    ],
)
def test_files_that_are_not_jars_of_their_coordinate_are_refused(rel: str) -> None:
    with pytest.raises(ValueError):
        Coordinate.from_layout(Path(rel))


# --- downloads -------------------------------------------------------------------------------


@pytest.mark.parametrize("dotted", [False, True], ids=["maven", "ivy"])
def test_download_is_verified_and_cached_with_its_hashes(
    central: FakeCentral,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    dotted: bool,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    resolver = use_resolver(monkeypatch, central, dotted=dotted)
    target = jars.ensure_kafka_jars(settings)
    marker = read_marker(target)
    assert marker is not None and marker.version == KAFKA and not marker.pinned
    assert {j.coordinate.key: j.sha256 for j in marker.jars} == central.pins(BROKER)
    assert sorted(p.name for p in target.glob("*.jar")) == sorted(c.file_name for c, _ in BROKER)
    note = "checked against Maven Central's published checksums only"
    assert note in caplog.text and note in capsys.readouterr().err
    # Later starts re-verify the cache and never resolve again.
    assert jars.ensure_kafka_jars(settings) == target and resolver.calls == [KAFKA]


def test_pinned_version_is_cached_as_pinned(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_resolver(monkeypatch, central)
    pin_broker(monkeypatch, central.pins(BROKER))
    marker = read_marker(jars.ensure_kafka_jars(settings))
    assert marker is not None and marker.pinned


@pytest.mark.parametrize("how", TAMPERS)
@pytest.mark.parametrize("victim", [c for c, _ in BROKER], ids=lambda c: c.artifact)
def test_download_not_matching_centrals_checksum_is_refused(
    central: FakeCentral,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    victim: Coordinate,
    how: str,
) -> None:
    resolver = use_resolver(monkeypatch, central)
    resolver.delivered[victim.key] = tamper(central.published[victim.key], how)
    with pytest.raises(JarChecksumError) as err:
        jars.ensure_kafka_jars(settings)
    assert "Maven Central publishes" in str(err.value)
    assert_refused(err.value, settings, victim.file_name)


@pytest.mark.parametrize(("victim", "algo"), [(c, a) for c, algos in BROKER for a in algos])
def test_every_published_checksum_is_checked(
    central: FakeCentral,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    victim: Coordinate,
    algo: str,
) -> None:
    """Central's .sha256 or .sha512 disagreeing is enough, even when the .sha1 agrees."""
    use_resolver(monkeypatch, central)
    wrong = hashlib.new(algo, b"something else").hexdigest()
    central.checksum_file(victim, algo).write_text(wrong)
    with pytest.raises(JarChecksumError, match=f"the {algo.upper()} Maven Central") as err:
        jars.ensure_kafka_jars(settings)
    assert_refused(err.value, settings, victim.file_name)


@pytest.mark.parametrize("how", TAMPERS)
@pytest.mark.parametrize("victim", [c for c, _ in BROKER[:3]], ids=lambda c: c.artifact)
def test_download_matching_central_but_not_the_pin_is_refused(
    central: FakeCentral,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    victim: Coordinate,
    how: str,
) -> None:
    """Whoever answers as Maven Central serves other bytes with matching checksum files."""
    pin_broker(monkeypatch, central.pins(BROKER))
    swapped = tamper(central.published[victim.key], how)
    central.path(victim).write_bytes(swapped)
    for algo in ("sha1", "sha256", "sha512"):
        central.checksum_file(victim, algo).write_text(hashlib.new(algo, swapped).hexdigest())
    central.published[victim.key] = swapped
    use_resolver(monkeypatch, central)
    with pytest.raises(JarChecksumError, match="rtfd pins for it") as err:
        jars.ensure_kafka_jars(settings)
    assert_refused(err.value, settings, victim.file_name)


def test_pinned_version_refuses_a_jar_outside_the_pins(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pins = central.pins(BROKER)
    extra = BROKER[2][0]
    del pins[extra.key]
    pin_broker(monkeypatch, pins)
    use_resolver(monkeypatch, central)
    with pytest.raises(JarChecksumError, match="which rtfd does not pin") as err:
        jars.ensure_kafka_jars(settings)
    assert_refused(err.value, settings, extra.file_name)


def test_pinned_version_refuses_a_resolution_missing_a_pinned_jar(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_broker(monkeypatch, central.pins(BROKER))
    use_resolver(monkeypatch, central, tree=BROKER[:-1])
    with pytest.raises(JarChecksumError, match=re.escape(LOG4J.key)) as err:
        jars.ensure_kafka_jars(settings)
    assert_refused(err.value, settings, None)


@pytest.mark.parametrize(
    "body",
    [
        "<html>Please log in to the guest network</html>",
        "",
        "zz" * 20,
        "abc123",
    ],
)
def test_a_checksum_file_that_is_not_a_checksum_is_refused(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    use_resolver(monkeypatch, central)
    central.checksum_file(BROKER[0][0], "sha1").write_text(body)
    with pytest.raises(JarChecksumError, match="is not a SHA1 checksum") as err:
        jars.ensure_kafka_jars(settings)
    assert "network or proxy" in str(err.value) and "\n" not in str(err.value)
    assert not jars.kafka_jars_cached(settings)


def test_a_jar_without_any_published_checksum_is_refused(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_resolver(monkeypatch, central)
    victim = BROKER[0][0]
    for algo in ("sha1", "sha256", "sha512"):
        central.checksum_file(victim, algo).unlink()
    with pytest.raises(JarChecksumError, match="publishes no checksum"):
        jars.ensure_kafka_jars(settings)
    assert not jars.kafka_jars_cached(settings)


def test_checksum_files_with_a_file_name_or_upper_case_are_read(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_resolver(monkeypatch, central)
    coordinate = BROKER[0][0]
    data = central.published[coordinate.key]
    central.checksum_file(coordinate, "sha1").write_text(
        f"{hashlib.sha1(data).hexdigest().upper()}  {coordinate.file_name}\n"
    )
    jars.ensure_kafka_jars(settings)
    assert jars.kafka_jars_cached(settings)


def test_unreachable_central_is_one_line_about_the_network(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_resolver(monkeypatch, central)
    monkeypatch.setattr(checksums, "MAVEN_CENTRAL", f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(DependencyMissing, match="check the network or proxy") as err:
        jars.ensure_kafka_jars(settings)
    assert "\n" not in str(err.value)
    assert not jars.kafka_jars_cached(settings)


# --- the cache, re-verified at start ---------------------------------------------------------


def _same_size_edit_with_mtime_restored(target: Path) -> str:
    jar = target / BROKER[1][0].file_name
    st = jar.stat()
    data = bytearray(jar.read_bytes())
    data[len(data) // 3] ^= 0x01
    jar.write_bytes(bytes(data))
    os.utime(jar, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert jar.stat().st_size == st.st_size and jar.stat().st_mtime_ns == st.st_mtime_ns
    return jar.name


def _tamper_in_place(how: str) -> Callable[[Path], str]:
    def apply(target: Path) -> str:
        jar = target / BROKER[0][0].file_name
        jar.write_bytes(tamper(jar.read_bytes(), how))
        return jar.name

    return apply


def _swap_two_jars(target: Path) -> str:
    a, b = (target / c.file_name for c, _ in BROKER[:2])
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)
    return f"-{KAFKA}.jar"  # whichever of the two is checked first


def _delete_a_jar(target: Path) -> str:
    (target / BROKER[3][0].file_name).unlink()
    return BROKER[3][0].file_name


def _symlink_to_an_identical_copy(target: Path) -> str:
    jar = target / BROKER[2][0].file_name
    elsewhere = target.parent / "elsewhere.jar"
    shutil.copy(jar, elsewhere)
    jar.unlink()
    jar.symlink_to(elsewhere)
    return jar.name


def _directory_instead_of_a_jar(target: Path) -> str:
    jar = target / BROKER[2][0].file_name
    jar.unlink()
    jar.mkdir()
    return jar.name


def _drop_in_a_jar(target: Path) -> str:
    (target / "evil-1.0.jar").write_bytes(b"PK\x03\x04 not ours")
    return "evil-1.0.jar"


def _drop_in_an_upper_case_jar(target: Path) -> str:
    (target / "EVIL.JAR").write_bytes(b"PK\x03\x04 not ours")
    return "EVIL.JAR"


def _drop_in_a_directory(target: Path) -> str:
    (target / "classes").mkdir()
    return "classes"


def _marker_of_another_version(target: Path) -> str:
    marker = target / MARKER
    marker.write_text(marker.read_text().replace(f'"version": "{KAFKA}"', '"version": "1.0"'))
    return "1.0"


TAMPERED_CACHE: dict[str, Callable[[Path], str]] = {
    **{f"in-place-{how}": _tamper_in_place(how) for how in TAMPERS},
    "same-size-mtime-restored": _same_size_edit_with_mtime_restored,
    "two-jars-swapped": _swap_two_jars,
    "jar-deleted": _delete_a_jar,
    "symlink-to-identical-copy": _symlink_to_an_identical_copy,
    "directory-instead-of-jar": _directory_instead_of_a_jar,
    "jar-dropped-in": _drop_in_a_jar,
    "upper-case-jar-dropped-in": _drop_in_an_upper_case_jar,
    "directory-dropped-in": _drop_in_a_directory,
    "marker-of-another-version": _marker_of_another_version,
}


@pytest.mark.parametrize("pinned", [False, True], ids=["central-only", "pinned"])
@pytest.mark.parametrize("attack", TAMPERED_CACHE)
def test_tampered_cache_is_refused_then_downloaded_afresh(
    central: FakeCentral,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    attack: str,
    pinned: bool,
) -> None:
    resolver = use_resolver(monkeypatch, central)
    if pinned:
        pin_broker(monkeypatch, central.pins(BROKER))
    target = jars.ensure_kafka_jars(settings)
    named = TAMPERED_CACHE[attack](target)
    with pytest.raises(JarChecksumError) as err:
        jars.ensure_kafka_jars(settings)
    message = str(err.value)
    assert "\n" not in message and named in message and str(target) in message
    assert "start again" in message
    assert not (target / MARKER).exists()
    # The next start downloads the jars afresh and the cache verifies again.
    assert jars.ensure_kafka_jars(settings) == target and resolver.calls == [KAFKA, KAFKA]
    assert verify_cached(target, version=KAFKA, pinned=central.pins(BROKER) if pinned else None)


@pytest.mark.parametrize("how", ["sha256-of-tampered-jar", "extra-jar-listed"])
def test_an_edited_marker_is_caught_by_the_pins(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Whoever can write the cache can rewrite the marker too; the pins still hold."""
    use_resolver(monkeypatch, central)
    pin_broker(monkeypatch, central.pins(BROKER))
    target = jars.ensure_kafka_jars(settings)
    marker_path = target / MARKER
    text = marker_path.read_text()
    if how == "sha256-of-tampered-jar":
        jar = target / BROKER[0][0].file_name
        old = hashlib.sha256(jar.read_bytes()).hexdigest()
        jar.write_bytes(jar.read_bytes() + b"payload")
        text = text.replace(old, hashlib.sha256(jar.read_bytes()).hexdigest())
    else:
        (target / "evil-1.0.jar").write_bytes(b"evil")
        entry = (
            '{"name": "evil-1.0.jar", "coordinate": "evil:evil:1.0", "sha256": "'
            + hashlib.sha256(b"evil").hexdigest()
            + '", "size": 4}, '
        )
        text = text.replace('"jars": [', '"jars": [' + entry, 1)
    marker_path.write_text(text)
    with pytest.raises(JarChecksumError, match=r"rtfd does not pin|does not list the jars"):
        jars.ensure_kafka_jars(settings)
    assert not marker_path.exists()


@pytest.mark.parametrize(
    "name", ["../victim.jar", "/tmp/victim.jar", "sub/victim.jar", "..\\victim.jar", ".x.jar", "x"]
)
def test_a_marker_naming_files_outside_the_cache_is_not_trusted(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """An edited marker must not make rtfd hash, load or delete files elsewhere."""
    use_resolver(monkeypatch, central)
    target = jars.ensure_kafka_jars(settings)
    victim = target.parent / "victim.jar"
    victim.write_bytes(b"the user's file")
    marker_path = target / MARKER
    first = BROKER[0][0].file_name
    marker_path.write_text(marker_path.read_text().replace(f'"{first}"', f'"{name}"'))
    assert read_marker(target) is None
    jars.ensure_kafka_jars(settings)  # not cached, so downloaded afresh
    assert victim.read_bytes() == b"the user's file"
    assert read_marker(target) is not None


def test_a_marker_of_an_older_rtfd_means_download_again(
    central: FakeCentral, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = use_resolver(monkeypatch, central)
    target = jars.ensure_kafka_jars(settings)
    (target / MARKER).write_text("\n".join(c.file_name for c, _ in BROKER) + "\n")
    assert not jars.kafka_jars_cached(settings)
    jars.ensure_kafka_jars(settings)
    assert resolver.calls == [KAFKA, KAFKA] and jars.kafka_jars_cached(settings)


# --- Spark's Kafka connector -----------------------------------------------------------------


@dataclass
class FakeIvy:
    """Stands in for ``_ivy_retrieve``: fills Ivy's cache and ``staging/jars`` like Ivy would."""

    central: FakeCentral
    available: set[str]
    delivered: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def __call__(
        self, java: str, ivy_jar: Path, cache: Path, staging: Path, version: str
    ) -> list[tuple[Path, Coordinate]]:
        self.calls.append(version)
        if version not in self.available:
            raise DependencyMissing(
                f"ivy resolve failed: unresolved dependency: "
                f"org.apache.spark#{connector.ARTIFACT};{version}: not found"
            )
        kept = []
        for coordinate, _ in CONNECTOR:
            data = self.delivered.get(coordinate.key, self.central.published[coordinate.key])
            cached = cache / "cache" / coordinate.group / coordinate.artifact / "jars"
            cached.mkdir(parents=True, exist_ok=True)
            (cached / coordinate.file_name).write_bytes(data)
            dest = staging / "jars" / f"{coordinate.group}_{coordinate.file_name}"
            dest.parent.mkdir(exist_ok=True)
            dest.write_bytes(data)
            kept.append((dest, coordinate))
        return kept


@pytest.fixture
def ivy(
    central: FakeCentral, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], FakeIvy]:
    pyspark_jars = tmp_path / "pyspark-jars"
    pyspark_jars.mkdir()
    (pyspark_jars / "ivy-2.5.3.jar").write_bytes(b"")
    monkeypatch.setattr(connector, "pyspark_jars_dir", lambda: pyspark_jars)
    monkeypatch.setattr("rtfd.sysinfo.java_executable", lambda: "/usr/bin/java")

    def make(pyspark: str) -> FakeIvy:
        monkeypatch.setattr(connector, "pyspark_version", lambda: pyspark)
        fake = FakeIvy(central, available={SPARK, connector.PINNED_PYSPARK})
        monkeypatch.setattr(connector, "_ivy_retrieve", fake)
        return fake

    return make


def test_connector_is_verified_against_the_pins(
    central: FakeCentral,
    ivy: Callable[[str], FakeIvy],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = ivy(SPARK)
    monkeypatch.setattr(connector, "PINNED_SHA256", {SPARK: central.pins(CONNECTOR)})
    found = connector.ensure_connector(settings)
    assert [p.name for p in found] == [f"{c.group}_{c.file_name}" for c, _ in CONNECTOR]
    marker = read_marker(connector.connector_dir(settings))
    assert marker is not None and marker.pinned and marker.version == SPARK
    assert connector.ensure_connector(settings) == found and fake.calls == [SPARK]


@pytest.mark.parametrize("pinned", [False, True], ids=["central-only", "pinned"])
@pytest.mark.parametrize("victim", [c for c, _ in CONNECTOR], ids=lambda c: c.artifact)
def test_connector_download_not_matching_is_refused_and_dropped_from_ivys_cache(
    central: FakeCentral,
    ivy: Callable[[str], FakeIvy],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    victim: Coordinate,
    pinned: bool,
) -> None:
    fake = ivy(SPARK)
    if pinned:
        monkeypatch.setattr(connector, "PINNED_SHA256", {SPARK: central.pins(CONNECTOR)})
    fake.delivered[victim.key] = tamper(central.published[victim.key], "flip-middle-byte")
    with pytest.raises(JarChecksumError) as err:
        connector.ensure_connector(settings)
    message = str(err.value)
    assert "\n" not in message and victim.file_name in message
    assert str(settings.jars_dir) in message and "network or proxy" in message
    assert ("rtfd pins" in message) == pinned
    assert not connector.connector_dir(settings).exists()
    ivy_cache = settings.cache_root / "ivy" / "cache"
    assert not (ivy_cache / victim.group / victim.artifact).exists()
    assert list(settings.cache_root.rglob(f"*{victim.file_name}")) == []


def test_tampered_connector_cache_is_refused(
    central: FakeCentral, ivy: Callable[[str], FakeIvy], settings: Settings
) -> None:
    ivy(SPARK)
    jar = connector.ensure_connector(settings)[1]
    st = jar.stat()
    data = bytearray(jar.read_bytes())
    data[100] ^= 0x20
    jar.write_bytes(bytes(data))
    os.utime(jar, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(JarChecksumError, match=re.escape(jar.name)):
        connector.ensure_connector(settings)
    assert connector.cached_connector_jars(settings) is None


def test_connector_must_match_pyspark_exactly(
    ivy: Callable[[str], FakeIvy], settings: Settings
) -> None:
    """No other release is tried: the error names the version and why pyspark is pinned."""
    fake = ivy("4.3.0")
    with pytest.raises(DependencyMissing) as err:
        connector.ensure_connector(settings)
    message = str(err.value)
    assert "\n" not in message
    assert f"{connector.ARTIFACT}:4.3.0" in message
    assert f"pins pyspark to {connector.PINNED_PYSPARK}" in message
    assert fake.calls == ["4.3.0"]
    assert not hasattr(connector, "FALLBACK_VERSIONS")
    assert not connector.connector_dir(settings).exists()


def test_unpinned_pyspark_gets_centrals_checksums_only_and_says_so(
    ivy: Callable[[str], FakeIvy], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ivy(SPARK)
    connector.ensure_connector(settings)
    assert "checked against Maven Central's published checksums only" in caplog.text
    marker = read_marker(connector.connector_dir(settings))
    assert marker is not None and not marker.pinned


# --- the pinned tables ---------------------------------------------------------------------


def _check_table(table: dict[str, str]) -> None:
    for key, sha in table.items():
        assert Coordinate.parse(key).key == key
        assert re.fullmatch("[0-9a-f]{64}", sha), key
    assert len(set(table.values())) == len(table)


def test_pins_cover_the_default_versions() -> None:
    kafka = load_settings({}, environ={}).broker_kafka_version
    broker = jars.PINNED_SHA256[kafka]
    _check_table(broker)
    assert f"org.apache.kafka:kafka_{jars.SCALA}:{kafka}" in broker
    assert f"org.apache.kafka:kafka-clients:{kafka}" in broker
    assert LOG4J.key in broker
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("pyspark")]
    assert pins == [f"pyspark=={connector.PINNED_PYSPARK}"]
    table = connector.PINNED_SHA256[connector.PINNED_PYSPARK]
    _check_table(table)
    spark = connector.PINNED_PYSPARK
    assert f"{connector.GROUP}:{connector.ARTIFACT}:{spark}" in table
    assert f"{connector.GROUP}:spark-token-provider-kafka-0-10_{connector.SCALA}:{spark}" in table
    assert {Coordinate.parse(k).artifact for k in table} >= {"kafka-clients", "commons-pool2"}


_DEFAULT_KAFKA = load_settings({}, environ={}).broker_kafka_version


@pytest.mark.parametrize(
    ("sub", "pins", "prefixed"),
    [
        (f"kafka_2.13-{_DEFAULT_KAFKA}", jars.PINNED_SHA256[_DEFAULT_KAFKA], False),
        (
            f"spark-kafka-{connector.PINNED_PYSPARK}",
            connector.PINNED_SHA256[connector.PINNED_PYSPARK],
            True,
        ),
    ],
    ids=["broker", "connector"],
)
def test_pins_match_every_jar_of_the_real_cache(
    sub: str, pins: dict[str, str], prefixed: bool, tmp_path: Path
) -> None:
    """The real cache (RTFD_CACHE_DIR or ~/.cache/rtfd) holds exactly the pinned jars.

    Read-only: a cache from before the pins (no hashes in its marker) is checked by file name; a
    current one is also re-verified the way a start does it, on a copy.
    """
    real_cache = {k: v for k, v in os.environ.items() if k == "RTFD_CACHE_DIR"}
    directory = load_settings({}, environ=real_cache).jars_dir / sub
    if not directory.is_dir():
        pytest.skip(f"no real jar cache at {directory} (set RTFD_CACHE_DIR to one to check it)")
    expected = {}
    for key, sha in pins.items():
        c = Coordinate.parse(key)
        expected[f"{c.group}_{c.file_name}" if prefixed else c.file_name] = sha
    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("*.jar")}
    assert found == expected
    if read_marker(directory) is not None:
        copy = shutil.copytree(directory, tmp_path / sub)
        version = sub.rsplit("-", 1)[1]
        assert verify_cached(copy, version=version, pinned=pins) is not None
