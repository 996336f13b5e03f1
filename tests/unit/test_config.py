"""Settings: precedence, validation, paths and secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rtfd.config import load_settings
from rtfd.errors import ConfigError

pytestmark = pytest.mark.unit


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_env() -> None:
    s = load_settings(environ={})
    assert s.broker_backend == "auto"
    assert s.topic_partitions == 3
    assert s.generator_fraud_rate == pytest.approx(0.01)


def test_file_beats_default_env_beats_file_flag_beats_env(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[broker]\nport = 9100\n[generator]\nrate = 50\n")
    env = {"RTFD_CONFIG": str(cfg)}
    assert load_settings(environ=env).broker_port == 9100
    assert load_settings(environ=env).generator_rate == 50.0
    env["RTFD_BROKER_PORT"] = "9200"
    assert load_settings(environ=env).broker_port == 9200
    assert load_settings({"broker_port": "9300"}, environ=env).broker_port == 9300
    # a flag that was not given (None) does not override
    assert load_settings({"broker_port": None}, environ=env).broker_port == 9200
    # settings the env did not touch still come from the file
    assert load_settings({"broker_port": "9300"}, environ=env).generator_rate == 50.0


def test_flat_keys_in_the_file_work_too(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'broker_backend = "kafka"\ntopic_partitions = 6\n')
    s = load_settings(environ={"RTFD_CONFIG": str(cfg)})
    assert (s.broker_backend, s.topic_partitions) == ("kafka", 6)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RTFD_BROKER_PORT": "abc"}, "broker_port (from RTFD_BROKER_PORT)"),
        ({"RTFD_BROKER_PORT": "70000"}, "broker_port (from RTFD_BROKER_PORT)"),
        ({"RTFD_BROKER_BACKEND": "zookeeper"}, "broker_backend"),
        ({"RTFD_GENERATOR_FRAUD_RATE": "nan"}, "generator_fraud_rate"),
        ({"RTFD_SPARK_UI": "maybe"}, "spark_ui"),
        ({"RTFD_BROKER_BACKEND": "external"}, "broker_bootstrap_servers"),
    ],
)
def test_a_bad_value_gives_one_line_naming_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_bad_file_values_name_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[broker]\nport = 'x'\n")
    with pytest.raises(ConfigError, match=r"broker_port \(from .*c\.toml\)"):
        load_settings(environ={"RTFD_CONFIG": str(cfg)})
    write(cfg, "[broker]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"broker_prot .*unknown setting"):
        load_settings(environ={"RTFD_CONFIG": str(cfg)})
    write(cfg, "not toml [")
    with pytest.raises(ConfigError, match="config file"):
        load_settings(environ={"RTFD_CONFIG": str(cfg)})


def test_rtfd_home_moves_data_and_logs(tmp_path: Path) -> None:
    s = load_settings(environ={"RTFD_HOME": str(tmp_path / "h")})
    assert s.data_dir == tmp_path / "h"
    assert s.models_dir == tmp_path / "h" / "models"
    assert s.log_file == tmp_path / "h" / "logs" / "rtfd.log"
    assert not (tmp_path / "h").exists()  # nothing created until asked
    s.ensure_dirs()
    assert s.data_dir.is_dir() and s.log_root.is_dir()


def test_importing_config_creates_no_directory(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    code = "import rtfd.config, rtfd.cli; rtfd.config.load_settings()"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "RTFD_HOME": str(home / "data")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not home.exists()


def test_client_secrets_pass_through_but_are_redacted() -> None:
    env = {
        "RTFD_CLIENT_SECURITY_PROTOCOL": "SASL_SSL",
        "RTFD_CLIENT_SASL_PASSWORD": "hunter2-very-secret",
        "RTFD_BROKER_BOOTSTRAP_SERVERS": "kafka.example:9093",
    }
    s = load_settings(environ=env)
    assert s.client["sasl.password"] == "hunter2-very-secret"
    assert s.client["security.protocol"] == "SASL_SSL"
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.redacted())
    from rtfd.broker import client_config

    assert client_config(s)["sasl.password"] == "hunter2-very-secret"
    assert client_config(s)["bootstrap.servers"] == "kafka.example:9093"


def test_readme_configuration_table_is_current() -> None:
    from rtfd.config import settings_table_markdown

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == settings_table_markdown(), (
        "README's configuration table is stale: "
        "regenerate it from rtfd.config.settings_table_markdown()"
    )


# --- replication settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("auto", "auto"),
        ("AUTO", "auto"),
        (" Auto ", "auto"),
        ("3", "3"),
        (" 2 ", "2"),
        ("007", "7"),
    ],
)
def test_replication_settings_take_auto_or_a_number(raw: str, stored: str) -> None:
    env = {"RTFD_TOPIC_REPLICATION_FACTOR": raw, "RTFD_TOPIC_MIN_INSYNC_REPLICAS": raw}
    s = load_settings(environ=env)
    assert (s.topic_replication_factor, s.topic_min_insync_replicas) == (stored, stored)


def test_replication_settings_from_a_toml_number(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[topic]\nreplication_factor = 3\nmin_insync_replicas = 2\n")
    s = load_settings(environ={"RTFD_CONFIG": str(cfg)})
    assert (s.topic_replication_factor, s.topic_min_insync_replicas) == ("3", "2")
    defaults = load_settings(environ={})
    assert (defaults.topic_replication_factor, defaults.topic_min_insync_replicas) == (
        "auto",
        "auto",
    )


@pytest.mark.parametrize(
    "raw", ["three", "3.0", "-1", "0", "0x3", "", " ", "\u0663", "1e2", "40000", "auto3", "3 4"]
)
@pytest.mark.parametrize("name", ["topic_replication_factor", "topic_min_insync_replicas"])
def test_a_bad_replication_setting_is_one_line_naming_it(name: str, raw: str) -> None:
    var = "RTFD_" + name.upper()
    with pytest.raises(ConfigError) as info:
        load_settings(environ={var: raw})
    assert f"setting {name} (from {var})" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [True, 2.5, [3], {"a": 1}])
def test_a_replication_setting_of_the_wrong_toml_type_is_refused(
    tmp_path: Path, value: object
) -> None:
    import json

    toml = json.dumps(value).replace(": ", " = ")  # JSON's true, 2.5, [3] are TOML too
    cfg = write(tmp_path / "c.toml", f"topic_replication_factor = {toml}\n")
    with pytest.raises(ConfigError, match="topic_replication_factor"):
        load_settings(environ={"RTFD_CONFIG": str(cfg)})


def test_min_insync_above_an_explicit_replication_factor_is_refused() -> None:
    env = {"RTFD_TOPIC_REPLICATION_FACTOR": "2", "RTFD_TOPIC_MIN_INSYNC_REPLICAS": "3"}
    with pytest.raises(ConfigError, match=r"topic_min_insync_replicas .*more than"):
        load_settings(environ=env)
    env["RTFD_TOPIC_MIN_INSYNC_REPLICAS"] = "2"
    assert load_settings(environ=env).topic_min_insync_replicas == "2"


@pytest.mark.parametrize(
    ("brokers", "rf", "isr", "expected"),
    [
        (1, "auto", "auto", (1, 1)),
        (2, "auto", "auto", (2, 1)),
        (3, "auto", "auto", (3, 2)),
        (7, "auto", "auto", (3, 2)),
        (5, "5", "auto", (5, 2)),
        (3, "1", "auto", (1, 1)),
        (3, "auto", "3", (3, 3)),
        (3, "2", "2", (2, 2)),
    ],
)
def test_replication_is_resolved_against_the_brokers_that_answer(
    brokers: int, rf: str, isr: str, expected: tuple[int, int]
) -> None:
    from rtfd.broker.admin import TopicSpec, replication_for

    assert replication_for(TopicSpec("t", 3, {}, rf, isr), brokers) == expected


@pytest.mark.parametrize(
    ("brokers", "rf", "isr", "needle"),
    [
        (1, "3", "auto", "topic_replication_factor 3 needs 3 brokers, and 1 answer"),
        (2, "3", "auto", "needs 3 brokers"),
        (2, "auto", "3", "topic_min_insync_replicas 3 is more than its 2 replica"),
        (1, "auto", "2", "more than its 1 replica"),
    ],
)
def test_replication_the_cluster_cannot_give_is_a_clear_error(
    brokers: int, rf: str, isr: str, needle: str
) -> None:
    from rtfd.broker.admin import TopicSpec, replication_for
    from rtfd.errors import BrokerError

    with pytest.raises(BrokerError, match=needle):
        replication_for(TopicSpec("transactions", 3, {}, rf, isr), brokers)


def test_topic_specs_carry_the_replication_settings() -> None:
    from rtfd.broker.admin import topic_specs

    s = load_settings(
        environ={"RTFD_TOPIC_REPLICATION_FACTOR": "2", "RTFD_TOPIC_MIN_INSYNC_REPLICAS": "1"}
    )
    assert {(t.replication, t.min_insync) for t in topic_specs(s)} == {("2", "1")}


# --- broker security --------------------------------------------------------------------------

EXTERNAL = {"RTFD_BROKER_BOOTSTRAP_SERVERS": "k1.example:9093,k2.example:9093"}
SASL = {
    **EXTERNAL,
    "RTFD_BROKER_SECURITY": "sasl_ssl",
    "RTFD_BROKER_SASL_USERNAME": "alice",
    "RTFD_BROKER_SASL_PASSWORD": "Tr1cky-\"pass\\word'; }=,]",
}


def ca_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )


def test_security_settings_are_normalised() -> None:
    s = load_settings(
        environ={
            **SASL,
            "RTFD_BROKER_SECURITY": " SASL_SSL ",
            "RTFD_BROKER_SASL_MECHANISM": "scram-sha-256",
        }
    )
    assert (s.broker_security, s.broker_sasl_mechanism) == ("sasl_ssl", "SCRAM-SHA-256")
    assert load_settings(environ={}).broker_security == "none"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {**SASL, "RTFD_BROKER_SECURITY": "kerberos"},
            "broker_security (from RTFD_BROKER_SECURITY)",
        ),
        ({**SASL, "RTFD_BROKER_SASL_MECHANISM": "GSSAPI"}, "broker_sasl_mechanism"),
        ({**SASL, "RTFD_BROKER_SASL_MECHANISM": "OAUTHBEARER"}, "broker_sasl_mechanism"),
        (
            {**SASL, "RTFD_BROKER_SASL_USERNAME": ""},
            "broker_sasl_username (from RTFD_BROKER_SASL_USERNAME): required",
        ),
        (
            {k: v for k, v in SASL.items() if k != "RTFD_BROKER_SASL_PASSWORD"},
            "broker_sasl_password (from default): required",
        ),
        ({**SASL, "RTFD_BROKER_SECURITY": "none"}, "broker_sasl_username"),
        (
            {**SASL, "RTFD_BROKER_SECURITY": "ssl"},
            "set broker_security to sasl_plaintext or sasl_ssl",
        ),
        ({**EXTERNAL, "RTFD_BROKER_SASL_PASSWORD": "x"}, "broker_sasl_password"),
        ({**SASL, "RTFD_BROKER_BOOTSTRAP_SERVERS": ""}, "applies to an external cluster"),
        ({**SASL, "RTFD_BROKER_BACKEND": "kafka"}, "needs broker_backend external"),
        ({**SASL, "RTFD_BROKER_BACKEND": "redpanda"}, "needs broker_backend external"),
        ({**SASL, "RTFD_BROKER_SSL_CA_FILE": "/nonexistent/ca.pem"}, "is not a readable file"),
        ({**SASL, "RTFD_BROKER_SSL_CA_FILE": "/"}, "is not a readable file"),
    ],
)
def test_security_settings_that_do_not_fit_are_one_line(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert "Tr1cky" not in str(info.value)


def test_a_ca_file_needs_tls(tmp_path: Path) -> None:
    ca = str(ca_file(tmp_path))
    env = {**SASL, "RTFD_BROKER_SECURITY": "sasl_plaintext", "RTFD_BROKER_SSL_CA_FILE": ca}
    with pytest.raises(
        ConfigError, match=r"broker_ssl_ca_file .*needs broker_security ssl or sasl_ssl"
    ):
        load_settings(environ=env)
    assert load_settings(
        environ={**SASL, "RTFD_BROKER_SSL_CA_FILE": ca}
    ).broker_ssl_ca_file == Path(ca)


MECHANISMS = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("security", ["sasl_plaintext", "sasl_ssl"])
@pytest.mark.parametrize("with_ca", [False, True])
def test_sasl_settings_become_each_clients_own_properties(
    tmp_path: Path, mechanism: str, security: str, with_ca: bool
) -> None:
    from rtfd.broker import client_config
    from rtfd.broker.security import java_client_properties

    env = {**SASL, "RTFD_BROKER_SECURITY": security, "RTFD_BROKER_SASL_MECHANISM": mechanism}
    tls = security == "sasl_ssl"
    if with_ca and tls:
        env["RTFD_BROKER_SSL_CA_FILE"] = str(ca_file(tmp_path))
    s = load_settings(environ=env)
    lib = client_config(s)
    assert lib["bootstrap.servers"] == "k1.example:9093,k2.example:9093"
    assert lib["security.protocol"] == security.upper()
    assert lib["sasl.mechanism"] == mechanism
    assert (lib["sasl.username"], lib["sasl.password"]) == (
        "alice",
        SASL["RTFD_BROKER_SASL_PASSWORD"],
    )
    assert ("ssl.ca.location" in lib) == (with_ca and tls)
    java = java_client_properties(s)
    assert java["security.protocol"] == security.upper()
    assert java["sasl.mechanism"] == mechanism
    module = "plain.PlainLoginModule" if mechanism == "PLAIN" else "scram.ScramLoginModule"
    assert java["sasl.jaas.config"].startswith(
        f'org.apache.kafka.common.security.{module} required username="alice" password="'
    )
    assert java["sasl.jaas.config"].endswith('";')
    if with_ca and tls:
        assert java["ssl.truststore.type"] == "PEM"
        assert java["ssl.truststore.location"] == lib["ssl.ca.location"]
    else:
        assert not any(k.startswith("ssl.") for k in java)
    assert "sasl.jaas.config" not in lib and "sasl.password" not in java


def test_tls_without_sasl(tmp_path: Path) -> None:
    from rtfd.broker import client_config
    from rtfd.broker.security import java_client_properties

    ca = str(ca_file(tmp_path))
    s = load_settings(
        environ={**EXTERNAL, "RTFD_BROKER_SECURITY": "ssl", "RTFD_BROKER_SSL_CA_FILE": ca}
    )
    lib = client_config(s)
    assert (lib["security.protocol"], lib["ssl.ca.location"]) == ("SSL", ca)
    assert not any(k.startswith("sasl.") for k in lib)
    assert java_client_properties(s) == {
        "security.protocol": "SSL",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": ca,
    }


def test_no_security_adds_nothing_and_keeps_the_old_pass_through() -> None:
    from rtfd.broker import client_config
    from rtfd.broker.security import java_client_properties

    s = load_settings(environ={**EXTERNAL, "RTFD_CLIENT_SECURITY_PROTOCOL": "SSL"})
    assert set(client_config(s)) == {"bootstrap.servers", "security.protocol", "logger"}
    assert java_client_properties(s) == {"security.protocol": "SSL"}  # [client] reaches Spark too


def test_pass_through_tables_win_over_the_derived_security(tmp_path: Path) -> None:
    from rtfd.broker import client_config
    from rtfd.broker.security import java_client_properties

    cfg = write(
        tmp_path / "c.toml",
        '[client]\n"sasl.mechanism" = "SCRAM-SHA-256"\n"client.id" = "rtfd-1"\n'
        '[client_java]\n"sasl.mechanism" = "PLAIN"\n"ssl.endpoint.identification.algorithm" = ""\n',
    )
    s = load_settings(environ={**SASL, "RTFD_CONFIG": str(cfg)})
    assert client_config(s)["sasl.mechanism"] == "SCRAM-SHA-256"
    assert "ssl.endpoint.identification.algorithm" not in client_config(s)
    java = java_client_properties(s)
    assert java["sasl.mechanism"] == "PLAIN"
    assert java["client.id"] == "rtfd-1"
    assert java["ssl.endpoint.identification.algorithm"] == ""


def test_client_java_comes_from_its_own_environment_variables() -> None:
    env = {
        **EXTERNAL,
        "RTFD_CLIENT_JAVA_SSL_TRUSTSTORE_TYPE": "PKCS12",
        "RTFD_CLIENT_CLIENT_ID": "rtfd",
    }
    s = load_settings(environ=env)
    assert s.client_java == {"ssl.truststore.type": "PKCS12"}
    assert s.client == {"client.id": "rtfd"}


def test_a_java_only_property_in_client_goes_to_spark_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older rtfd sent [client] to both clients: a JAAS line there broke every librdkafka one."""
    from rtfd.broker import client_config, security
    from rtfd.broker.security import java_client_properties

    monkeypatch.setattr(security, "_warned", set())

    jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required"
    jaas += ' username="a" password="b";'
    cfg = write(
        tmp_path / "c.toml",
        f'[client]\n"security.protocol" = "SASL_SSL"\n"sasl.jaas.config" = \'{jaas}\'\n'
        '"ssl.truststore.location" = "/etc/ts.jks"\n',
    )
    s = load_settings(environ={**EXTERNAL, "RTFD_CONFIG": str(cfg)})
    with caplog.at_level("WARNING", logger="rtfd.broker.security"):
        lib = client_config(s)
        client_config(s)
    assert "sasl.jaas.config" not in lib and "ssl.truststore.location" not in lib
    assert lib["security.protocol"] == "SASL_SSL"
    java = java_client_properties(s)
    assert java["sasl.jaas.config"] == jaas and java["ssl.truststore.location"] == "/etc/ts.jks"
    moved = [r.getMessage() for r in caplog.records if "[client_java]" in r.getMessage()]
    assert sorted(m.split()[1] for m in moved) == ["sasl.jaas.config", "ssl.truststore.location"]
    assert all("password" not in m.split(" is a ")[0] or "jaas" in m for m in moved)
    assert not any('password="b"' in r.getMessage() for r in caplog.records)


def test_every_property_held_back_from_librdkafka_is_one_it_refuses() -> None:
    """The list must not hide a property librdkafka knows (that would silently drop it)."""
    from confluent_kafka import KafkaException, Producer

    from rtfd.broker.security import JAVA_ONLY_PROPERTIES

    for key in sorted(JAVA_ONLY_PROPERTIES):
        with pytest.raises(KafkaException):
            Producer({key: "x", "bootstrap.servers": "127.0.0.1:1", "log_level": 0})


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("security", ["ssl", "sasl_plaintext", "sasl_ssl"])
def test_librdkafka_accepts_every_derived_config(
    tmp_path: Path, mechanism: str, security: str
) -> None:
    from confluent_kafka import Producer

    from rtfd.broker import client_config

    env = {**SASL, "RTFD_BROKER_SECURITY": security, "RTFD_BROKER_SASL_MECHANISM": mechanism}
    if security == "ssl":
        env = {**EXTERNAL, "RTFD_BROKER_SECURITY": "ssl"}
    s = load_settings(environ=env)
    Producer({**client_config(s), "log_level": 0}).flush(0)  # raises on an unknown property


JAAS_PASSWORDS = [
    "plain",
    'with "quotes"',
    "back\\slash\\",
    "semi;colon }",
    "new\nline\rcarriage\ttab",
    "ünïcødé 密码",
    "ctrl\x01\x1f\x7f",
    '\\"',
    "=,]'",
    " spaces ",
]


@pytest.mark.parametrize("password", JAAS_PASSWORDS)
def test_jaas_quoting_round_trips_through_a_stream_tokenizer(password: str) -> None:
    """Kafka parses sasl.jaas.config with java.io.StreamTokenizer; this is its quoted-string
    reader (the JVM check is in tests/cluster/test_secured.py)."""
    from rtfd.broker.security import jaas_config

    text = jaas_config("M", 'us"er', password)
    assert "\n" not in text and "\r" not in text
    values = _tokenizer_strings(text)
    assert values == ['us"er', password]


def _tokenizer_strings(text: str) -> list[str]:
    """The double-quoted strings of ``text`` as java.io.StreamTokenizer reads them."""
    out, i = [], 0
    while i < len(text):
        if text[i] != '"':
            i += 1
            continue
        i += 1
        buf = []
        while text[i] != '"':
            c = text[i]
            assert c not in "\n\r", "a quoted string may not span lines"
            if c == "\\":
                i += 1
                c = text[i]
                if c in "01234567":
                    j = i
                    while j < len(text) and j < i + 3 and text[j] in "01234567":
                        j += 1
                    buf.append(chr(int(text[i:j], 8)))
                    i = j
                    continue
                buf.append(
                    {
                        "n": "\n",
                        "r": "\r",
                        "t": "\t",
                        "a": "\a",
                        "b": "\b",
                        "f": "\f",
                        "v": "\v",
                    }.get(c, c)
                )
            else:
                buf.append(c)
            i += 1
        out.append("".join(buf))
        i += 1
    return out


def test_the_sasl_password_is_a_secret_everywhere() -> None:
    from rtfd import redact
    from rtfd.broker.security import java_client_properties

    password = "S3cret-sasl-Pa55"
    s = load_settings(environ={**SASL, "RTFD_BROKER_SASL_PASSWORD": password})
    assert password in s.secret_values()
    assert s.redacted()["broker_sasl_password"] == redact.MASK
    assert password not in repr(s) and password not in str(s.redacted())
    jaas = java_client_properties(s)["sasl.jaas.config"]
    known = redact.KnownSecrets(s.secret_values())
    assert password not in redact.redact_text(f"options {jaas} and sasl.password={password}", known)
    # by shape alone, without knowing the value (a JVM's log4j mask)
    assert password not in redact.redact_text(jaas, redact.KnownSecrets())
    assert redact.is_secret_name("broker_sasl_password")
    assert not redact.is_secret_name("broker_sasl_username")


def test_plain_over_an_unencrypted_connection_is_warned_about(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtfd.broker import client_config, security

    monkeypatch.setattr(security, "_warned", set())
    env = {**SASL, "RTFD_BROKER_SASL_MECHANISM": "PLAIN"}
    with caplog.at_level("WARNING", logger="rtfd.broker.security"):
        client_config(load_settings(environ=env))
        assert not caplog.records  # over sasl_ssl: fine
        env["RTFD_BROKER_SECURITY"] = "sasl_plaintext"
        client_config(load_settings(environ=env))
        client_config(load_settings(environ=env))
    assert [r.getMessage() for r in caplog.records] == [
        "broker_sasl_mechanism PLAIN over sasl_plaintext sends the password unencrypted: "
        "use sasl_ssl (or SCRAM)"
    ]


def test_the_streams_kafka_source_gets_the_java_properties(tmp_path: Path) -> None:
    from rtfd.stream.runner import StreamRunner

    ca = str(ca_file(tmp_path))
    cfg = write(
        tmp_path / "c.toml", '[client]\n"client.id" = "a"\n[client_java]\n"client.id" = "b"\n'
    )
    env = {**SASL, "RTFD_BROKER_SSL_CA_FILE": ca, "RTFD_CONFIG": str(cfg)}
    opts = StreamRunner(load_settings(environ=env))._kafka_options("tx", max_offsets=10)
    assert opts["kafka.bootstrap.servers"] == "k1.example:9093,k2.example:9093"
    assert opts["kafka.security.protocol"] == "SASL_SSL"
    assert opts["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert "ScramLoginModule required" in opts["kafka.sasl.jaas.config"]
    assert opts["kafka.ssl.truststore.type"] == "PEM"
    assert opts["kafka.ssl.truststore.location"] == ca
    assert opts["kafka.client.id"] == "b"
    assert opts["kafka.max.partition.fetch.bytes"] == str(16 << 20)  # rtfd's default
    cfg.write_text('[client_java]\n"max.partition.fetch.bytes" = "1048576"\n')
    mine = StreamRunner(load_settings(environ=env))._kafka_options("tx", max_offsets=None)
    assert mine["kafka.max.partition.fetch.bytes"] == "1048576"  # the user's wins
    assert (opts["subscribe"], opts["maxOffsetsPerTrigger"]) == ("tx", "10")
    assert not any(k.startswith("kafka.sasl.password") or k == "kafka.sasl.username" for k in opts)
    plain = StreamRunner(load_settings(environ=EXTERNAL))._kafka_options("tx", max_offsets=None)
    assert not any(k.startswith(("kafka.security", "kafka.sasl", "kafka.ssl")) for k in plain)
