"""A secured cluster: SASL/SCRAM over SASL_PLAINTEXT, said once in rtfd's settings.

The embedded Kafka runs with a SCRAM listener on 127.0.0.1 (SCRAM-SHA-512 and -256 enabled, PLAIN
not). rtfd reaches it through the external backend with ``broker_security``, ``broker_sasl_*``
only; rtfd derives librdkafka's properties (generator, topic admin, alert producer, TUI feed) and
the Java client's (Spark's Kafka connector: JAAS line with ScramLoginModule). The password holds
quotes, a backslash, JAAS and kafka-storage separators and non-ASCII text, and two random tokens
that no file the run wrote and nothing printed may contain.

A wrong password, user or mechanism is one line naming the brokers and saying "authentication
failed" within seconds, from the generator's start, the stream's start and the alert feed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtfd.config import Settings
from rtfd.schemas import Topics
from tests.cluster.conftest import (
    AckTracker,
    cluster_home_settings,
    install_model,
    read_topic,
    wait_for,
)
from tests.spark.conftest import spark_settings
from tests.spark.helpers import read_enriched

pytestmark = pytest.mark.cluster

USER = "rtfd-app"
TOKENS = (f"pw{uuid.uuid4().hex[:16]}", f"pw{uuid.uuid4().hex[:16]}")
PASSWORD = f'{TOKENS[0]} "q\\u0" ;}}=,] ünï {TOKENS[1]}'
REFUSED_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def sasl_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One embedded Kafka node whose client listener speaks SASL_PLAINTEXT with SCRAM."""
    from rtfd.broker.cluster import LocalKafkaCluster, ScramUser

    home = tmp_path_factory.mktemp("sasl-cluster")
    broker = LocalKafkaCluster(
        cluster_home_settings(home), nodes=1, scram_users=[ScramUser(USER, PASSWORD)]
    )
    broker.start()
    broker.home = home  # type: ignore[attr-defined]
    try:
        yield broker
    finally:
        broker.stop()


def secured(home: Path, cluster: Any, **overrides: Any) -> Settings:
    values = {
        "broker_bootstrap_servers": cluster.bootstrap_servers,
        "broker_security": "sasl_plaintext",
        "broker_sasl_mechanism": "SCRAM-SHA-512",
        "broker_sasl_username": USER,
        "broker_sasl_password": PASSWORD,
        "generator_merchants": 400,
        **overrides,
    }
    return spark_settings(home, **values)


class FeedCollector:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.states: list[tuple[bool, str]] = []
        self.lock = threading.Lock()

    def on_alerts(self, batch: list[dict[str, Any]]) -> None:
        with self.lock:
            self.alerts.extend(batch)

    def on_state(self, ok: bool, detail: str) -> None:
        with self.lock:
            self.states.append((ok, detail))


def files_holding(roots: list[Path], needles: tuple[str, ...]) -> list[str]:
    """Every file under ``roots`` whose bytes contain one of ``needles``."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [f"{path}: {n}" for n in needles if n.encode() in data]
    return found


def test_generator_stream_and_alert_feed_work_over_scram(
    sasl_cluster: Any, trained_models: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from rtfd.broker import client_config
    from rtfd.broker.admin import ensure_topics, topic_specs
    from rtfd.broker.external import ExternalBroker
    from rtfd.generator.live import LiveGenerator
    from rtfd.logs import setup_logging
    from rtfd.stream.runner import StreamRunner
    from rtfd.tui.alerts import AlertFeed

    # DEBUG: rtfd and librdkafka at their most talkative, Spark and its Kafka client at INFO.
    settings = secured(tmp_path / "run", sasl_cluster, log_level="DEBUG")
    setup_logging(settings, console=True)
    install_model(trained_models, settings)
    ExternalBroker(settings).start()
    config = client_config(settings)
    assert config["security.protocol"] == "SASL_PLAINTEXT" and config["sasl.username"] == USER
    ensure_topics(config, topic_specs(settings))

    got = FeedCollector()
    feed = AlertFeed(config, got.on_alerts, got.on_state)
    feed.start()
    runner = StreamRunner(settings)
    runner.start()
    try:
        wait_for(lambda: got.states and got.states[-1][0], timeout=30, what="the feed to read")
        state = runner.wait_running(timeout=240)
        assert state.phase == "running", state
        tracker = AckTracker(Topics.TRANSACTIONS)
        gen = LiveGenerator(
            settings, rate=1_000, producer_factory=tracker.factory, check_topics=True
        )
        gen.start()
        wait_for(lambda: tracker.acked() >= 4_000, timeout=60, what="4,000 acknowledged")
        stats = gen.stop(timeout=30)
        assert stats.failed == 0 and stats.error is None
        acked = set(tracker.ids)
        assert len(acked) == stats.acked

        def parquet_complete() -> Any:
            df = read_enriched(settings, "transaction_id, is_fraud")
            return [df] if len(df) >= len(acked) else None

        (df,) = wait_for(parquet_complete, timeout=120, what="the Parquet", every=1.0)
        assert len(df) == len(acked) and set(df["transaction_id"]) == acked
        flagged = set(df.loc[df["is_fraud"], "transaction_id"])
        assert flagged, "the model flagged nothing: the alert path was not exercised"
        alerts = {
            json.loads(m.value())["transaction_id"] for m in read_topic(config, Topics.ALERTS)
        }
        assert alerts == flagged
        wait_for(
            lambda: {a["transaction_id"] for a in list(got.alerts)} >= flagged,
            timeout=30,
            what="the alert feed to show every alert",
        )
        assert runner.state.phase == "running", runner.state
    finally:
        runner.stop()
        feed.stop()

    out, err = capfd.readouterr()
    for token in TOKENS:
        assert token not in out and token not in err
    roots = [settings.data_dir, settings.log_root, sasl_cluster.home]
    assert (settings.log_root / "spark.log").stat().st_size > 0
    assert files_holding(roots, TOKENS) == []


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_each_scram_mechanism_lets_the_generator_in(
    sasl_cluster: Any, tmp_path: Path, mechanism: str
) -> None:
    from rtfd.broker import client_config
    from rtfd.broker.admin import TopicSpec, ensure_topics
    from rtfd.generator.live import produce_transactions

    settings = secured(tmp_path, sasl_cluster, broker_sasl_mechanism=mechanism)
    topic = f"scram-{uuid.uuid4().hex[:8]}"
    labels = f"{topic}-labels"
    ensure_topics(client_config(settings), [TopicSpec(topic, 1, {}), TopicSpec(labels, 1, {})])
    ids = produce_transactions(settings, 200, topic=topic, labels_topic=labels)
    got = [
        json.loads(m.value())["transaction_id"] for m in read_topic(client_config(settings), topic)
    ]
    assert got == ids


WRONG = {
    "wrong password": {"broker_sasl_password": PASSWORD + "x"},
    "password of another case": {"broker_sasl_password": PASSWORD.upper()},
    "unknown user": {"broker_sasl_username": "mallory"},
    "user of another case": {"broker_sasl_username": USER.upper()},
    "mechanism the cluster does not enable": {"broker_sasl_mechanism": "PLAIN"},
    "right password, other SCRAM mechanism's hash": {
        "broker_sasl_mechanism": "SCRAM-SHA-256",
        "broker_sasl_password": PASSWORD[:-1],
    },
}


def assert_refused(error: BaseException, cluster: Any) -> None:
    from rtfd.broker.admin import BrokerAuthFailed

    assert isinstance(error, BrokerAuthFailed), repr(error)
    text = str(error)
    assert "authentication failed" in text and cluster.bootstrap_servers in text
    assert "\n" not in text
    assert not any(t in text for t in TOKENS)


@pytest.mark.parametrize("case", list(WRONG))
def test_wrong_credentials_are_one_clear_line_within_seconds(
    sasl_cluster: Any,
    trained_models: Path,
    tmp_path: Path,
    case: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from rtfd.broker import client_config
    from rtfd.broker.external import ExternalBroker
    from rtfd.cli.broker import cmd_status
    from rtfd.generator.live import LiveGenerator
    from rtfd.stream.runner import StreamRunner
    from rtfd.tui.alerts import AlertFeed

    settings = secured(tmp_path / "bad", sasl_cluster, **WRONG[case])

    t0 = time.monotonic()
    with pytest.raises(Exception) as info:
        LiveGenerator(settings, rate=100).start()
    assert time.monotonic() - t0 < REFUSED_WITHIN_S
    assert_refused(info.value, sasl_cluster)

    t0 = time.monotonic()
    with pytest.raises(Exception) as info:
        ExternalBroker(settings).start()
    assert time.monotonic() - t0 < REFUSED_WITHIN_S
    assert_refused(info.value, sasl_cluster)

    t0 = time.monotonic()
    assert cmd_status(argparse.Namespace(), settings) == 1  # `rtfd broker status`
    assert time.monotonic() - t0 < REFUSED_WITHIN_S
    status = capfd.readouterr().out
    assert "not running" in status and "authentication failed" in status
    assert not any(t in status for t in TOKENS)

    install_model(trained_models, settings)
    runner = StreamRunner(settings)
    t0 = time.monotonic()
    runner.start()
    try:
        state = runner.wait_running(timeout=REFUSED_WITHIN_S)
        assert time.monotonic() - t0 < REFUSED_WITHIN_S
        assert state.phase == "failed", state
        assert "authentication failed" in state.reason
        assert sasl_cluster.bootstrap_servers in state.reason
        assert "\n" not in state.reason
    finally:
        runner.stop()

    got = FeedCollector()
    feed = AlertFeed(client_config(settings), got.on_alerts, got.on_state)
    t0 = time.monotonic()
    feed.start()
    try:
        wait_for(lambda: feed.failure is not None, timeout=REFUSED_WITHIN_S, what="the refusal")
        assert_refused(feed.failure, sasl_cluster)
        wait_for(lambda: got.states, timeout=5, what="the state line")
        assert got.states[-1] == (False, str(feed.failure))
    finally:
        feed.stop()
    out, err = capfd.readouterr()
    assert not any(t in out + err for t in TOKENS)
    assert files_holding([settings.data_dir, settings.log_root], TOKENS) == []


_JAAS_CHECK = """
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.config.types.Password;
import org.apache.kafka.common.security.JaasContext;

public class JaasCheck {
    static String hex(Object o) {
        StringBuilder b = new StringBuilder();
        for (byte x : String.valueOf(o).getBytes(StandardCharsets.UTF_8)) {
            b.append(String.format("%02x", x));
        }
        return b.toString();
    }
    public static void main(String[] args) throws Exception {
        for (String line : Files.readAllLines(Path.of(args[0]), StandardCharsets.UTF_8)) {
            // What a Kafka client does with its sasl.jaas.config property.
            Map<String, Object> config = Map.of("sasl.jaas.config", new Password(line));
            JaasContext context = JaasContext.loadClientContext(config);
            AppConfigurationEntry e = context.configurationEntries().get(0);
            Class.forName(e.getLoginModuleName());
            Map<String, ?> o = e.getOptions();
            String user = hex(o.get("username")), password = hex(o.get("password"));
            System.out.println(e.getLoginModuleName() + " " + user + " " + password);
        }
    }
}
"""

JAAS_VARIANTS = [
    ("alice", "plain"),
    ("al ice", 'with "quotes" inside'),
    ('"', "\\"),
    ("back\\slash", "ends with a backslash\\"),
    ("x", "semi;colon } brace { "),
    ("x", "new\nline\rcarriage\ttab"),
    ("ünï", "密码 ünïcødé"),
    ("x", "ctrl\x01\x02\x1f\x7f"),
    ("x", '\\"\\\\"'),
    ("x", "=,]'[name=a,password=b]"),
    ("x", "  leading and trailing  "),
    ("x", "/* not a comment */ // nor this"),
    ("x", "a" * 300),
]


def test_the_jaas_line_reads_back_exactly_in_the_java_client(tmp_path: Path) -> None:
    """kafka-clients' own JAAS parsing (JaasContext.loadClientContext, as a client does with
    sasl.jaas.config) reads what rtfd writes back into the same user and password, for both
    login modules (which must exist)."""
    from rtfd.broker.jars import ensure_kafka_jars
    from rtfd.broker.security import LOGIN_MODULES, jaas_config
    from rtfd.sysinfo import java_executable

    jars = ensure_kafka_jars(cluster_home_settings(tmp_path))
    cases = [(m, u, p) for m in sorted(set(LOGIN_MODULES.values())) for u, p in JAAS_VARIANTS]
    lines = tmp_path / "jaas.txt"
    lines.write_text("".join(jaas_config(m, u, p) + "\n" for m, u, p in cases), encoding="utf-8")
    source = tmp_path / "JaasCheck.java"
    source.write_text(_JAAS_CHECK, encoding="utf-8")
    java = java_executable()
    assert java is not None
    proc = subprocess.run(
        [java, "-cp", f"{jars}/*", str(source), str(lines)],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.splitlines()
    assert len(out) == len(cases)
    for line, (module, user, password) in zip(out, cases, strict=True):
        assert line == f"{module} {user.encode().hex()} {password.encode().hex()}", (user, password)
