"""Kafka clients are made in one place, the broker package imports in one direction, and one
liveness check serves every process wait.

* :mod:`rtfd.broker.clients` lays the shared settings (security, quiet logging, idempotence)
  under each caller's overrides, and real librdkafka clients accept what it builds;
* no other module of rtfd constructs a confluent_kafka Producer, Consumer or AdminClient (an AST
  scan of the source, so a new one anywhere fails here);
* the modules of rtfd/broker form no import cycle (every runtime import counted, module level or
  inside a function);
* :func:`rtfd.sysinfo.pid_alive` sees a running process alive, and an exited one dead whether or
  not its parent reaped it yet.
"""

from __future__ import annotations

import ast
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtfd.broker import clients
from rtfd.config import Settings, load_settings
from rtfd.sysinfo import pid_alive

pytestmark = pytest.mark.unit

RTFD = Path(__file__).resolve().parents[2] / "rtfd"
CONFLUENT_CLIENTS = {"Producer", "Consumer", "AdminClient"}


def settings(**values: object) -> Settings:
    return load_settings(dict(values), environ={})


def sasl() -> Settings:
    return settings(
        broker_bootstrap_servers="127.0.0.1:1",
        broker_security="sasl_plaintext",
        broker_sasl_mechanism="SCRAM-SHA-512",
        broker_sasl_username="alice",
        broker_sasl_password="s3cret-pw",
        client={"sasl.jaas.config": "Java only", "socket.timeout.ms": "7000"},
    )


def test_every_client_gets_the_bootstrap_security_and_log_of_the_settings() -> None:
    config = clients.client_config(sasl())
    assert config["bootstrap.servers"] == "127.0.0.1:1"
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("alice", "s3cret-pw")
    assert config["socket.timeout.ms"] == "7000"
    assert "sasl.jaas.config" not in config  # librdkafka refuses it: Spark's connector gets it
    assert config["logger"] is clients.KAFKA_LOG
    assert clients.client_config(settings(broker_port=19_093))["bootstrap.servers"] == (
        "127.0.0.1:19093"
    )


def test_a_producer_is_idempotent_and_the_caller_has_the_last_word() -> None:
    base = {"bootstrap.servers": "h:1", "acks": "1", "linger.ms": 1}
    got = clients.producer_settings(base, **{"linger.ms": 5, "message.max.bytes": 7})
    assert got["enable.idempotence"] is True and got["acks"] == "all"  # over the config
    assert got["linger.ms"] == 5 and got["message.max.bytes"] == 7  # overrides over all
    assert got["bootstrap.servers"] == "h:1"
    assert clients.producer_settings(base, acks="1")["acks"] == "1"


@pytest.mark.parametrize("make", ["producer", "consumer", "admin"])
@pytest.mark.parametrize(
    "settings_of", [settings, sasl], ids=["plaintext", "sasl_plaintext+client"]
)
def test_librdkafka_accepts_every_client_the_factories_build(make: str, settings_of) -> None:  # type: ignore[no-untyped-def]
    config = clients.client_config(settings_of())
    if make == "producer":
        client = clients.producer(config, **{"linger.ms": 5})
        assert client.flush(0) == 0
    elif make == "consumer":
        client = clients.consumer(config, "rtfd-test", **clients.QUIET)
        client.close()
    else:
        client = clients.admin(config)
        assert client.poll(0) >= 0  # events served: log lines of the refused connection


def test_a_consumer_commits_nothing_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka

    made: list[dict[str, object]] = []
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda conf: made.append(conf))
    clients.consumer({"bootstrap.servers": "h:1"}, "g1", **{"auto.offset.reset": "latest"})
    assert made == [
        {
            "bootstrap.servers": "h:1",
            "group.id": "g1",
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        }
    ]


def test_admin_clients_are_quiet_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka.admin

    made: list[dict[str, object]] = []
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", lambda conf: made.append(conf))
    clients.admin({"bootstrap.servers": "h:1"})
    clients.admin({"bootstrap.servers": "h:1"}, log_level=2)
    assert made[0]["log_level"] == 3 and made[1]["log_level"] == 2
    assert made[0]["logger"] is logging.getLogger("rtfd.kafka.client")


def _constructions(path: Path) -> list[str]:
    """Where ``path`` imports or calls one of confluent_kafka's client classes."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka"):
            found += [
                f"{path}:{node.lineno} imports {a.name}"
                for a in node.names
                if a.name in CONFLUENT_CLIENTS
            ]
        elif isinstance(node, ast.Attribute) and node.attr in CONFLUENT_CLIENTS:
            found.append(f"{path}:{node.lineno} uses .{node.attr}")
    return found


def test_only_the_broker_factories_construct_kafka_clients() -> None:
    factories = RTFD / "broker" / "clients.py"
    assert _constructions(factories)  # the scan finds them where they are
    elsewhere = [
        hit
        for path in sorted(RTFD.rglob("*.py"))
        if path != factories
        for hit in _constructions(path)
    ]
    assert elsewhere == []


def _runtime_imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports when it runs (anywhere in the file, less
    ``if TYPE_CHECKING:`` blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == package:
                out |= {f"{package}.{a.name}" for a in node.names}
            elif node.module.startswith(package + "."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(package + ".")}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    return cycles


def test_the_broker_package_has_no_import_cycle() -> None:
    package = "rtfd.broker"
    graph = {}
    for path in sorted((RTFD / "broker").glob("*.py")):
        name = package if path.stem == "__init__" else f"{package}.{path.stem}"
        graph[name] = {m for m in _runtime_imports(path, package) if m != name}
    graph = {k: {m for m in v if m in graph} for k, v in graph.items()}
    assert "rtfd.broker.admin" in graph["rtfd.broker.base"]  # the scan sees function imports
    assert _cycles(graph) == []
    # ... and would see one: base -> admin plus admin -> base is reported.
    assert _cycles({**graph, "rtfd.broker.admin": {"rtfd.broker.base"}})


def _wait(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_running_process_is_alive_and_an_ended_one_is_not_even_unreaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        child.send_signal(signal.SIGKILL)
        # Not reaped yet: a zombie, which kill(pid, 0) still finds.
        assert _wait(lambda: not pid_alive(child.pid))
        assert child.poll() is not None or _wait(lambda: child.poll() is not None)
        assert not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_a_process_named_with_a_parenthesis_is_read_right(tmp_path: Path) -> None:
    """The state in /proc/<pid>/stat follows the last ')': a command named ``a) Z (`` must not
    read as a zombie."""
    exe = tmp_path / "a) Z ("
    exe.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(exe), "30"])
    try:
        assert _wait(lambda: "a) Z (" in Path(f"/proc/{child.pid}/stat").read_text())
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_pids_that_do_not_exist_are_dead_and_other_users_processes_alive() -> None:
    assert not pid_alive(2**22 + 12_345)  # above the kernel's pid_max
    assert pid_alive(1)  # init: another user's for a non-root test run, alive either way
