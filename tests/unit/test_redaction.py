"""Secrets never reach a log: rtfd's Python logs, librdkafka's lines, Spark's and the broker's.

Every secret shape is tried in many spellings and surroundings; the real code paths (settings
from the environment, TOML and flags, the CLI, a librdkafka client, an exception) run at DEBUG
and then every file under the data root is searched for the secret. The log4j2 patterns are read
back from the generated files and applied, and, where a JDK is at hand, run by log4j itself.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from rtfd import redact
from rtfd.cli import main
from rtfd.config import Settings, load_settings
from rtfd.redact import MASK, RULES, KnownSecrets, RedactingFilter, redact_text

unit = pytest.mark.unit

PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
OAUTH = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"

# {s} is the secret. Each shape is a way a secret is written in a log line.
SHAPES = [
    "sasl.password={s}",
    "sasl.password = {s}",
    "sasl.password: {s}",
    "SASL.PASSWORD={s}",
    "ssl.key.password={s}",
    "ssl.keystore.password={s}",
    "ssl.truststore.password={s}",
    "sasl.oauthbearer.client.secret={s}",
    "sasl.oauthbearer.config=principal=alice clientSecret={s} scope=kafka",
    "sasl.oauthbearer.config=clientSecret={s}",
    f'{PLAIN} required username="alice" password="{{s}}";',
    f'{SCRAM} required username="alice" password="{{s}}";',
    f"{SCRAM} required username='alice' password='{{s}}';",
    f"{PLAIN} required username=alice password={{s}};",
    f'sasl.jaas.config={PLAIN} required username="alice" password="{{s}}";',
    f'{OAUTH} required clientId="rtfd" clientSecret="{{s}}";',
    "alice:{s}@broker1:9092",
    "alice:{s}@broker1:9092,bob:{s}@broker2:9092",
    "SASL_SSL://alice:{s}@broker1:9093",
    "https://bob:{s}@sr.example.com:8081/subjects",
    "[alice:{s}@127.0.0.1:1]:9092/bootstrap: Failed to resolve",
    "Authorization: Bearer {s}",
    "authorization=Basic {s}",
    "api_key={s}",
    "x-api-key: {s}",
    "aws_secret_access_key={s}",
    "access_token: {s}",
    "token={s}&user=alice",
    '"sasl.password": "{s}"',
    "'sasl.password': '{s}'",
    "basic.auth.user.info={s}",
    "spark.hadoop.fs.s3a.secret.key={s}",
    "password.encoder.secret: {s}",
]
# Secrets that are legal in every shape above.
SECRETS = ["Hunter2xyz", "s3cr3t-P4ss_w0rd", "aB9+cD=="]


def _wrappers() -> list[tuple[str, Callable[[str], str]]]:
    return [
        ("as is", lambda t: t),
        ("in a sentence", lambda t: f"failed to connect ({t}) - retrying in 5 s"),
        ("dict repr", lambda t: repr({"config": t, "n": 1})),
        ("json", lambda t: json.dumps({"config": t})),
        ("multi-line", lambda t: f"Traceback:\n  {t}\nRuntimeError: boom"),
    ]


@unit
@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_secret_shape_is_masked_without_knowing_the_secret(shape: str, secret: str) -> None:
    if "Basic" in shape or "Bearer" in shape:
        secret = secret.replace("-", "").replace("_", "")  # base64 / token alphabets
    for name, wrap in _wrappers():
        text = wrap(shape.format(s=secret))
        out = redact_text(text, KnownSecrets())
        assert secret not in out, f"{name}: {out}"
        assert MASK in out


@unit
@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("alice:p:ss@broker1:9092", "p:ss"),  # ':' inside the password
        ("alice:p@ss@broker1:9092", "p@ss"),  # an unencoded '@': the last one ends it
        ("https://alice:p@ss!$x@sr.example.com/x", "p@ss!$x"),
        ('password="with spaces and ; inside"', "with spaces and ; inside"),
        ("password='it has \"quotes\"'", 'it has "quotes"'),
        ('{"cfg": "password=\\"esc\\\\aped\\""}', "esc\\\\aped"),
        ("AKIAIOSFODNN7EXAMPLE in the environment", "AKIAIOSFODNN7EXAMPLE"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl", "eyJhbGciOiJIUzI1NiJ9"),
        (
            "key -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83xz==\n"
            "-----END RSA PRIVATE KEY----- loaded",
            "MIIEowIBAAKCAQEA",
        ),
        (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJ-x\n"
            "-----END ENCRYPTED PRIVATE KEY-----",
            "MIIFHzBJ",
        ),
    ],
)
def test_awkward_secrets_are_masked_by_shape(text: str, secret: str) -> None:
    out = redact_text(text, KnownSecrets())
    assert secret not in out, out


@unit
@pytest.mark.parametrize(
    "line",
    [
        "NettyRpcEndpointRef(spark://CoarseGrainedScheduler@127.0.0.1:38547)",
        "sasl.jaas.config = [hidden]",
        "ssl.key.password = null",
        "delegation.token.max.lifetime.ms = 604800000",
        "sasl.oauthbearer.token.endpoint.url = https://idp.example.com/token",
        "batch 12: 2000 rows, key=card-17, partition=2",
        "2024-01-01 12:00:00,123 INFO rtfd.stream: batch took 0.31 s",
        "Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties",
        "broker 127.0.0.1:9092 answered in 12 ms",
        "mail from alice@example.com",
        "[2024-01-01 12:00:00,000] INFO [KafkaRaftServer nodeId=1] Kafka Server started",
        "the password is checked by the broker",
        "sasl.password=***",
        "java.lang.Object@1b6d3586",
    ],
)
def test_ordinary_log_lines_are_left_alone(line: str) -> None:
    assert redact_text(line, KnownSecrets()) == line


@unit
def test_a_long_line_is_redacted_in_linear_time() -> None:
    """Every repeat is bounded: these took up to 100 s each before (quadratic backtracking)."""
    for text in ("ab:" * 60_000, "-----BEGIN PRIVATE KEY-----" * 8_000, "password" * 25_000):
        t0 = time.perf_counter()
        redact_text(text, KnownSecrets())
        assert time.perf_counter() - t0 < 10.0


# --- known values ------------------------------------------------------------------------------


@unit
@pytest.mark.parametrize("secret", ["Hunter2xyz", "pa'ss\\w\"d x", "p@ss:w/rd%", "ünï-cødé"])
def test_a_known_secret_is_masked_in_any_spelling_and_any_surroundings(secret: str) -> None:
    known = KnownSecrets([secret])
    for text in (
        f"authentication failed for {secret}",
        repr({"anything": secret}),
        json.dumps({"anything": secret}),
        f"https://h/?q={quote(secret, safe='')}",
        f"{secret}{secret}",
    ):
        out = known.mask(text)
        for spelling in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]):
            assert spelling not in out, out
        assert MASK in out


@unit
def test_a_very_short_value_is_masked_by_shape_only() -> None:
    """Masking every "abc" in every line would wreck the logs; the name and the shape still work."""
    known = KnownSecrets(["abc"])
    assert known.mask("tabcd") == "tabcd"
    assert "abc" not in redact_text("sasl.password=abc", known)


@unit
def test_remembered_secrets_are_masked_by_the_module_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redact, "_known", KnownSecrets())
    assert redact_text("value Zq9-unknown-yet") == "value Zq9-unknown-yet"
    redact.remember(["Zq9-unknown-yet"])
    assert redact_text("value Zq9-unknown-yet") == f"value {MASK}"


# --- Settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One way a secret reaches rtfd's settings."""

    id: str
    secret: str
    env: dict[str, str] = field(default_factory=dict)
    toml: str = ""
    argv: tuple[str, ...] = ()


def _cases() -> list[Case]:
    def s(n: int) -> str:
        return f"Sek{n}-r3t-{n * 7919:05d}"

    return [
        Case("sasl.password env", s(1), env={"RTFD_CLIENT_SASL_PASSWORD": s(1)}),
        Case(
            "jaas PLAIN toml",
            s(2),
            toml=f'[client]\n"sasl.jaas.config" = \'{PLAIN} required username="alice" '
            f'password="{s(2)}";\'\n',
        ),
        Case(
            "jaas SCRAM env",
            s(3),
            env={
                "RTFD_CLIENT_SASL_JAAS_CONFIG": f'{SCRAM} required username="alice" '
                f'password="{s(3)}";'
            },
        ),
        Case(
            "oauthbearer config toml",
            s(4),
            toml=f'[client]\n"sasl.oauthbearer.config" = "principal=alice clientSecret={s(4)}"\n',
        ),
        Case(
            "oauth jaas toml",
            s(5),
            toml=f'[client]\n"sasl.jaas.config" = \'{OAUTH} required clientId="rtfd" '
            f'clientSecret="{s(5)}";\'\n',
        ),
        Case("ssl.key.password toml", s(6), toml=f'[client]\n"ssl.key.password" = "{s(6)}"\n'),
        Case(
            "bootstrap userinfo env",
            s(7),
            env={"RTFD_BROKER_BOOTSTRAP_SERVERS": f"alice:{s(7)}@broker1:9093"},
        ),
        Case(
            "bootstrap userinfo flag",
            s(8),
            argv=("--bootstrap-servers", f"alice:{s(8)}@broker1:9093,alice:{s(8)}@broker2:9093"),
        ),
        Case(
            "bootstrap url toml",
            s(9),
            toml=f'[broker]\nbootstrap_servers = "SASL_SSL://alice:{s(9)}@broker1:9093"\n',
        ),
        Case(
            "client url toml",
            s(10),
            toml=f'[client]\n"schema.registry.url" = "https://bob:{s(10)}@sr.example.com:8081"\n',
        ),
        Case(
            "client url env",
            s(11),
            env={"RTFD_CLIENT_SCHEMA_REGISTRY_URL": f"https://bob:{s(11)}@sr.example.com"},
        ),
        Case(
            "oauth client secret env",
            s(12),
            env={"RTFD_CLIENT_SASL_OAUTHBEARER_CLIENT_SECRET": s(12)},
        ),
        Case(
            "spark_conf secret toml",
            s(13),
            toml=f'[spark_conf]\n"spark.hadoop.fs.s3a.secret.key" = "{s(13)}"\n',
        ),
    ]


CASES = _cases()


def _settings_for(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    _apply(case, tmp_path, monkeypatch)
    overrides = {}
    if case.argv:
        overrides["broker_bootstrap_servers"] = case.argv[1]
    return load_settings(overrides)


def _apply(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The case's environment and config file; the file lives outside the data root."""
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    if case.toml:
        conf = tmp_path / "conf" / "config.toml"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(case.toml, encoding="utf-8")
        monkeypatch.setenv("RTFD_CONFIG", str(conf))


@unit
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_settings_know_their_secrets_and_never_print_them(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings_for(case, tmp_path, monkeypatch)
    assert case.secret in settings.secret_values()
    assert case.secret not in repr(settings)
    assert case.secret not in str(settings.redacted())
    assert case.secret in repr(settings.client) + str(settings.broker_bootstrap_servers) + str(
        settings.spark_conf
    ), "the secret still passes through to the clients"


@unit
def test_redacted_masks_by_name_and_by_value_and_keeps_the_rest() -> None:
    settings = load_settings(
        {"broker_bootstrap_servers": "alice:Pw-9z8y7x@broker1:9093"},
        environ={
            "RTFD_CLIENT_SASL_JAAS_CONFIG": f'{PLAIN} required username="alice" password="Jp-1";',
            "RTFD_CLIENT_SECURITY_PROTOCOL": "SASL_SSL",
            "RTFD_CLIENT_SSL_KEYSTORE_LOCATION": "/etc/kafka/keystore.jks",
        },
    )
    red = settings.redacted()
    assert red["client"]["sasl.jaas.config"] == MASK  # by name
    assert red["broker_bootstrap_servers"] == f"{MASK}@broker1:9093"  # by value
    assert red["client"]["security.protocol"] == "SASL_SSL"
    assert red["client"]["ssl.keystore.location"] == "/etc/kafka/keystore.jks"
    assert red["broker_port"] == 9092


# --- the real code paths, at DEBUG, every file searched -------------------------------------


@pytest.fixture
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Handlers and remembered secrets made by this test go away with it."""
    from rtfd import logs

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    configured = set(logs._CONFIGURED)
    monkeypatch.setattr(redact, "_known", KnownSecrets())
    yield
    for h in root.handlers[:]:
        if h not in before:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    logs._CONFIGURED.clear()
    logs._CONFIGURED.update(configured)


def _assert_nowhere(secret: str, root: Path, *texts: str) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"{secret} in {path}"
    for text in texts:
        assert secret not in text
    return files


@unit
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_no_secret_reaches_any_log_file_or_the_terminal_at_debug(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    isolated_env: Path,
    fresh_logging: None,
) -> None:
    from rtfd.broker import client_config

    _apply(case, tmp_path, monkeypatch)
    assert main(["--log-level", "DEBUG", *case.argv, "query", "--examples"]) == 0

    settings = _settings_for(case, tmp_path, monkeypatch)
    config = client_config(settings)
    log = logging.getLogger("rtfd.kafka")
    log.debug("client config %s", config)
    log.debug("settings %r", settings)
    log.info("auth failed for %s", case.secret)
    try:
        raise RuntimeError(f"cannot connect with {config} to {settings.broker_bootstrap_servers}")
    except RuntimeError:
        log.exception("client failed (%s)", case.secret)
    log.warning("stack", stack_info=True)

    out = capsys.readouterr()
    files = _assert_nowhere(case.secret, isolated_env, out.out, out.err)
    text = (isolated_env / "logs" / "rtfd.log").read_text(encoding="utf-8")
    assert isolated_env / "logs" / "rtfd.log" in files
    assert "rtfd query with settings" in text and "client config" in text  # the paths ran ...
    assert "RuntimeError: cannot connect" in text and "auth failed for" in text
    assert MASK in text  # ... and were masked


@unit
def test_librdkafka_lines_go_through_the_same_mask(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, fresh_logging: None
) -> None:
    """A real client at debug=conf,broker logs its bootstrap address (userinfo included) and its
    configuration through the rtfd.kafka logger."""
    from rtfd.broker.clients import client_config, producer
    from rtfd.logs import setup_logging

    secret = "Rdk-5ecret-771"
    monkeypatch.setenv("RTFD_BROKER_BOOTSTRAP_SERVERS", f"alice:{secret}@127.0.0.1:1")
    monkeypatch.setenv("RTFD_CLIENT_SASL_PASSWORD", secret)
    monkeypatch.setenv("RTFD_CLIENT_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("RTFD_CLIENT_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("RTFD_CLIENT_SASL_USERNAME", "alice")
    settings = load_settings({"log_level": "DEBUG"})
    setup_logging(settings, console=False)
    client = producer(client_config(settings), debug="conf,broker,security")
    log_file = isolated_env / "logs" / "rtfd.log"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "Failed to resolve" not in log_file.read_text("utf-8"):
        client.poll(0.2)
    client.flush(0)
    text = log_file.read_text(encoding="utf-8")
    assert "Failed to resolve" in text and "rtfd.kafka" in text
    _assert_nowhere(secret, isolated_env)


@unit
def test_a_user_error_quoting_a_secret_is_printed_masked(
    capsys: pytest.CaptureFixture[str], isolated_env: Path, fresh_logging: None
) -> None:
    secret = "Cli-Pw-42x"
    assert main(["--broker-port", f"alice:{secret}@broker1", "doctor"]) == 2
    err = capsys.readouterr().err
    assert "broker_port" in err and f"{MASK}@broker1" in err
    assert secret not in err


@unit
def test_the_filter_masks_exception_text_another_handler_already_cached() -> None:
    secret = "Exc-Pw-0099"
    try:
        raise ValueError(f"sasl.password={secret}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "%s", ("m",), None)
        import sys

        record.exc_info = sys.exc_info()
    record.exc_text = logging.Formatter().formatException(record.exc_info)  # cached, unmasked
    RedactingFilter().filter(record)
    assert secret not in logging.Formatter().format(record)


@unit
def test_the_filter_masks_a_record_whose_format_string_does_not_fit_its_args(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """logging would otherwise print the raw args to stderr in its 'Logging error' report."""
    monkeypatch.setattr(redact, "_known", KnownSecrets())
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", ("Fmt-Pw-0042x",), None)
    redact.remember(["Fmt-Pw-0042x"])
    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "Fmt-Pw-0042x" not in text and MASK in text


# --- the JVM side: log4j2 patterns and Spark's redaction ----------------------------------------


def _properties_value(text: str, key: str) -> str:
    """A value of a Java .properties text, unescaped as Properties.load does."""
    for line in text.splitlines():
        if line.startswith(key):
            raw = line.split("=", 1)[1].strip()
            return re.sub(
                r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m[1], m[1]), raw
            )
    raise AssertionError(f"{key} not in the file")


def _brace_group(p: str, i: int) -> tuple[str, int]:
    """The text of the {...} group at ``p[i]``, counted as log4j's PatternParser counts."""
    assert p[i] == "{", p[i:]
    depth, j = 0, i
    while True:
        if p[j] == "{":
            depth += 1
        elif p[j] == "}":
            depth -= 1
            if depth == 0:
                return p[i + 1 : j], j + 1
        j += 1


def _replace_chain(pattern: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(prefix, innermost body, [(regex, replacement)] innermost first) of a nested %replace."""
    start = pattern.index("%replace{")
    prefix, p = pattern[:start], pattern[start:]
    rules: list[tuple[str, str]] = []
    while p.startswith("%replace{"):
        body, i = _brace_group(p, len("%replace"))
        regex, i = _brace_group(p, i)
        replacement, i = _brace_group(p, i)
        assert i == len(p), f"text after %replace: {p[i:]!r}"
        rules.insert(0, (regex, replacement))
        p = body
    return prefix, p, rules


def _generated_log4j2(settings: Settings) -> dict[str, Path]:
    from rtfd.broker.kafka import EmbeddedKafka
    from rtfd.stream.session import write_log4j2_config

    broker = EmbeddedKafka(settings)
    settings.ensure_dirs()
    broker._dir.mkdir(parents=True, exist_ok=True)
    broker._write_config()
    return {"spark": write_log4j2_config(settings), "kafka": broker._dir / "log4j2.properties"}


JVM_LINES = [shape.format(s=f"Jvm{n}Secret") for n, shape in enumerate(SHAPES)]


@unit
@pytest.mark.parametrize("component", ["spark", "kafka"])
def test_the_generated_log4j2_pattern_masks_every_shape(component: str) -> None:
    path = _generated_log4j2(load_settings({"log_level": "DEBUG"}))[component]
    text = path.read_text(encoding="utf-8")
    assert "appender.file.layout.alwaysWriteExceptions = false" in text
    _, body, rules = _replace_chain(_properties_value(text, "appender.file.layout.pattern"))
    assert body == "%m%n%ex"  # the message and the exception, both inside the mask
    assert [r for r, _ in rules] == [rule.regex for rule in RULES]
    for regex, replacement in rules:
        # Java syntax: a brace only in a {n} quantifier (log4j counts braces), no Python-only forms
        assert not re.search(r"[{}]", re.sub(r"\{\d+(,\d*)?\}", "", regex)), regex
        assert "(?P" not in regex and "\\Z" not in regex
        assert not re.search(r"\$\{", regex + replacement)  # no log4j lookup
    for n, line in enumerate(JVM_LINES):
        out = line
        for regex, replacement in rules:
            out = re.sub(regex, re.sub(r"\$(\d)", r"\\g<\1>", replacement), out)
        assert f"Jvm{n}Secret" not in out, out


@unit
def test_spark_gets_the_widened_redaction_settings_and_a_user_may_override_them() -> None:
    from rtfd.stream.session import spark_conf_items

    conf = spark_conf_items(load_settings(), app_name="t", jars=[], log4j2=None, tag="t")
    for key, value in redact.spark_redaction_conf().items():
        assert conf[key] == value
    kv = re.compile(conf["spark.redaction.regex"])
    assert kv.search("kafka.sasl.jaas.config") and kv.search("alice:pw@broker1:9093")
    assert not kv.search("kafka.bootstrap.servers") and not kv.search("broker1:9093")
    custom = load_settings().replace(spark_conf={"spark.redaction.regex": "(?i)mine"})
    assert (
        spark_conf_items(custom, app_name="t", jars=[], log4j2=None, tag="t")[
            "spark.redaction.regex"
        ]
        == "(?i)mine"
    )


_PROBE = r"""
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.regex.Pattern;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/** Logs each sample (and an exception carrying it) through log4j; with a conf file, also applies
 *  Spark's two redaction regexes to the samples and to key/value pairs, as Spark's Utils.redact. */
public class RedactProbe {
    static String[] read(String path) throws Exception {
        return new String(Files.readAllBytes(Paths.get(path)), StandardCharsets.UTF_8).split("\0");
    }
    public static void main(String[] a) throws Exception {
        String[] samples = read(a[0]);
        Logger log = LogManager.getLogger(a[1]);
        for (String s : samples) {
            log.info(s);
            log.error("failed", new RuntimeException(s));
        }
        if (a.length < 4) return;
        String[] conf = read(a[2]);
        Pattern kv = Pattern.compile(conf[0]);
        Pattern str = Pattern.compile(conf[1]);
        StringBuilder out = new StringBuilder();
        for (String s : samples) {
            out.append(str.matcher(s).replaceAll("*********(redacted)")).append('\0');
        }
        for (int i = 2; i < conf.length; i++) {
            out.append(kv.matcher(conf[i]).find() ? "1" : "0").append('\0');
        }
        Files.write(Paths.get(a[3]), out.toString().getBytes(StandardCharsets.UTF_8));
    }
}
"""


def _log4j_jars(lib: Path) -> list[Path]:
    return sorted(p for p in lib.glob("log4j-*.jar") if re.match(r"log4j-(api|core)-", p.name))


@pytest.mark.spark
def test_log4j2_itself_masks_spark_and_broker_lines_and_spark_redaction_regexes_compile(
    tmp_path: Path,
) -> None:
    """Runs the generated files through the very log4j2 jars Spark and the broker use (~5 s)."""
    import pyspark

    from rtfd.broker.jars import kafka_lib_dir

    java, javac = shutil.which("java"), shutil.which("javac")
    spark_jars = _log4j_jars(Path(pyspark.__file__).parent / "jars")
    if not (java and javac and len(spark_jars) == 2):
        pytest.skip("needs a JDK and pyspark's log4j2 jars")
    settings = load_settings({"log_level": "DEBUG"})
    files = _generated_log4j2(settings)
    kafka_jars = _log4j_jars(kafka_lib_dir(settings))
    jars = {"spark": spark_jars, "kafka": kafka_jars if len(kafka_jars) == 2 else spark_jars}

    src = tmp_path / "RedactProbe.java"
    src.write_text(_PROBE, encoding="utf-8")
    classes = tmp_path / "classes"
    cp = ":".join(map(str, spark_jars))
    subprocess.run([javac, "-d", str(classes), "-cp", cp, str(src)], check=True, timeout=120)
    samples = tmp_path / "samples"
    samples.write_text("\0".join(JVM_LINES), encoding="utf-8")

    conf = redact.spark_redaction_conf()
    pairs = ["kafka.sasl.jaas.config", "alice:pw-1@broker1:9093", "kafka.ssl.key.password"]
    benign = ["kafka.bootstrap.servers", "broker1:9093", "spark.sql.shuffle.partitions"]
    conf_file = tmp_path / "conf"
    regexes = [conf["spark.redaction.regex"], conf["spark.sql.redaction.string.regex"]]
    conf_file.write_text("\0".join([*regexes, *pairs, *benign]), encoding="utf-8")
    result = tmp_path / "result"
    for component, logger in (("spark", "org.apache.spark.Probe"), ("kafka", "kafka.server.Probe")):
        cmd = [
            java,
            f"-Dlog4j2.configurationFile=file:{files[component]}",
            "-cp",
            ":".join([str(classes), *map(str, jars[component])]),
            "RedactProbe",
            str(samples),
            logger,
        ]
        if component == "spark":
            cmd += [str(conf_file), str(result)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "ERROR" not in proc.stderr, proc.stderr  # log4j's status logger: a bad pattern

    for component, name in (("spark", "spark.log"), ("kafka", "kafka.log")):
        text = (settings.log_root / name).read_text(encoding="utf-8")
        assert text.count("RuntimeException") == len(JVM_LINES), component  # exceptions written
        assert "Probe" in text and "sasl.password=***" in text
        for n in range(len(JVM_LINES)):
            assert f"Jvm{n}Secret" not in text, (component, n)

    out = result.read_text(encoding="utf-8").split("\0")
    for n in range(len(JVM_LINES)):
        assert f"Jvm{n}Secret" not in out[n], out[n]
    flags = out[len(JVM_LINES) : len(JVM_LINES) + len(pairs) + len(benign)]
    assert flags == ["1"] * len(pairs) + ["0"] * len(benign)


@unit
def test_remembering_again_does_not_respell_the_spellings() -> None:
    """Every command run in one process calls ``remember`` (``setup_logging``); a union once
    re-spelled the spellings (URL-quoting a URL-quoted value, escaping an escaped one), so the
    set and its regex grew with each call until compiling it outlasted a test's time-out."""
    password = 'p%w "q\\u0" ;}=,] ünï x'
    known = KnownSecrets([password])
    size = len(known.values)
    for _ in range(5):
        known = known.union([password])
        known = known.union([password, "another-secret"])
    assert len(known.secrets) == 2
    assert len(known.values) <= size + len(KnownSecrets(["another-secret"]).values)
    text = f"password={password} and {quote(password, safe='')} and another-secret"
    assert password not in known.mask(text) and "another-secret" not in known.mask(text)
