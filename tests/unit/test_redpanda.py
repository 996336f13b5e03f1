"""The Redpanda backend: cannot run here (no Docker engine), so its command and file are checked."""

from __future__ import annotations

import pytest

from rtfd.broker import make_broker, resolve_backend
from rtfd.broker.redpanda import RedpandaBroker, compose_file
from rtfd.config import load_settings
from rtfd.errors import DependencyMissing

pytestmark = pytest.mark.unit


def test_compose_command_and_environment() -> None:
    s = load_settings({"broker_backend": "redpanda", "broker_port": "19999"}, environ={})
    broker = make_broker(s)
    assert isinstance(broker, RedpandaBroker)
    cmd = broker.compose_command("up", "-d", "--wait")
    assert cmd[:3] == ["docker", "compose", "-f"]
    assert cmd[3].endswith("docker/compose.yml")
    assert cmd[-3:] == ["up", "-d", "--wait"]
    env = broker.compose_env()
    assert env["RTFD_BROKER_PORT"] == "19999"
    assert ":v" in env["RTFD_BROKER_REDPANDA_IMAGE"]  # pinned, never :latest
    assert broker.bootstrap_servers == "127.0.0.1:19999"


def test_compose_file_is_local_durable_and_health_checked() -> None:
    text = "\n".join(
        line
        for line in compose_file().read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    ports = [line.strip() for line in text.splitlines() if line.strip().startswith('- "')]
    assert ports and all(p.startswith('- "127.0.0.1:') for p in ports)
    assert "dev-container" not in text and "--overprovisioned" in text
    assert "healthcheck:" in text
    assert ":latest" not in text


def test_auto_prefers_docker_then_java(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtfd import sysinfo

    s = load_settings(environ={})
    monkeypatch.setattr(sysinfo, "docker_engine_version", lambda: "27.0")
    assert resolve_backend(s) == "redpanda"
    monkeypatch.setattr(sysinfo, "docker_engine_version", lambda: None)
    monkeypatch.setattr(sysinfo, "java_version", lambda: 17)
    assert resolve_backend(s) == "kafka"
    monkeypatch.setattr(sysinfo, "java_version", lambda: None)
    with pytest.raises(DependencyMissing, match="install Java 17"):
        resolve_backend(s)
    ext = load_settings({"broker_bootstrap_servers": "h:1"}, environ={})
    assert resolve_backend(ext) == "external"


def test_single_node_topics_are_created_as_before_and_a_cluster_gets_replicas() -> None:
    """One broker (the Redpanda container, the embedded Kafka): replication 1 and no
    min.insync.replicas in the request, as before replication was configurable; three or more
    brokers: 3 replicas, min.insync.replicas 2."""
    from rtfd.broker.admin import _new_topic, topic_specs

    def new_topic(name: str, **kwargs: object) -> dict[str, object]:
        return {"name": name, **kwargs}

    specs = topic_specs(load_settings({"broker_backend": "redpanda"}, environ={}))
    single = [_new_topic(new_topic, s, brokers=1) for s in specs]
    assert {t["replication_factor"] for t in single} == {1}
    assert all("min.insync.replicas" not in t["config"] for t in single)  # type: ignore[operator]
    assert single[0]["config"] == {"retention.ms": str(168 * 3_600_000)}
    cluster = [_new_topic(new_topic, s, brokers=5) for s in specs]
    assert {t["replication_factor"] for t in cluster} == {3}
    assert {t["config"]["min.insync.replicas"] for t in cluster} == {"2"}  # type: ignore[index]


def test_redpanda_clients_carry_no_security() -> None:
    broker = make_broker(load_settings({"broker_backend": "redpanda"}, environ={}))
    config = broker.client_config()
    assert not any(k.startswith(("security.", "sasl.", "ssl.")) for k in config)
