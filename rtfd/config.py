"""One typed Settings object for the whole appliance.

Precedence, lowest to highest: defaults < TOML file < ``RTFD_*`` environment variables < CLI flags.

* The TOML file lives at ``<user config dir>/config.toml`` (``RTFD_CONFIG`` or ``--config`` point
  elsewhere). Keys may be flat (``broker_port = 9092``) or grouped by their prefix
  (``[broker]`` / ``port = 9092``).
* Every setting ``x_y`` is read from the environment variable ``RTFD_X_Y``.
* Kafka client properties (``security.protocol``, ``sasl.password`` ...) come from a ``[client]``
  table or from ``RTFD_CLIENT_<KEY>`` variables (``_`` becomes ``.``); they are passed through to
  librdkafka and Spark. Secrets among them (and in any URL's userinfo) are masked by name and by
  value wherever rtfd logs (:meth:`Settings.redacted`, :meth:`Settings.secret_values`,
  :mod:`rtfd.redact`).

All paths come from platformdirs; ``RTFD_HOME`` replaces the data root (and then logs live under
it too, so one directory holds a whole isolated appliance). Nothing here creates a directory at
import time: :meth:`Settings.ensure_dirs` does that when a command needs it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import platformdirs

from rtfd import redact
from rtfd.errors import ConfigError

APP_NAME = "rtfd"
ENV_PREFIX = "RTFD_"
CLIENT_ENV_PREFIX = "RTFD_CLIENT_"
CLIENT_JAVA_ENV_PREFIX = "RTFD_CLIENT_JAVA_"
TABLE_FIELDS = ("client", "client_java", "spark_conf")


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"min": lo, "max": hi}


@dataclass(frozen=True)
class Settings:
    """Every knob of rtfd. Field metadata carries validation rules and the one-line doc."""

    # --- paths -------------------------------------------------------------------------------
    home: Path | None = field(
        default=None, metadata={"doc": "Data root (default: the platform's user data dir)."}
    )
    cache_dir: Path | None = field(
        default=None, metadata={"doc": "Cache for downloaded jars (default: user cache dir)."}
    )
    log_dir: Path | None = field(
        default=None, metadata={"doc": "Log directory (default: user log dir, or <home>/logs)."}
    )
    log_level: str = field(
        default="INFO",
        metadata={"doc": "Log level.", **_choices("DEBUG", "INFO", "WARNING", "ERROR")},
    )

    # --- broker ------------------------------------------------------------------------------
    broker_backend: str = field(
        default="auto",
        metadata={
            "doc": "auto, redpanda, kafka or external.",
            **_choices("auto", "redpanda", "kafka", "external"),
        },
    )
    broker_bootstrap_servers: str = field(
        default="", metadata={"doc": "host:port list; required for the external backend."}
    )
    broker_port: int = field(
        default=9092,
        metadata={"doc": "Client port of the local broker (127.0.0.1).", **_range(1, 65535)},
    )
    broker_controller_port: int = field(
        default=9093,
        metadata={"doc": "KRaft controller port of the embedded Kafka.", **_range(1, 65535)},
    )
    broker_kafka_version: str = field(
        default="4.1.1", metadata={"doc": "Apache Kafka version of the embedded broker."}
    )
    broker_heap_mb: int = field(
        default=512, metadata={"doc": "JVM heap of the embedded broker (MB).", **_range(128, 65536)}
    )
    broker_start_timeout_s: float = field(
        default=90.0,
        metadata={"doc": "How long to wait for the broker to answer.", **_range(1, 3600)},
    )
    broker_redpanda_image: str = field(
        default="docker.redpanda.com/redpandadata/redpanda:v24.2.7",
        metadata={"doc": "Pinned Redpanda image for the redpanda backend."},
    )
    broker_security: str = field(
        default="none",
        metadata={
            "doc": "How clients reach an external cluster: none, ssl, sasl_plaintext or "
            "sasl_ssl (rtfd sets librdkafka's and the Java client's properties from this and the "
            "broker_sasl_* / broker_ssl_ca_file settings).",
            **_choices("none", "ssl", "sasl_plaintext", "sasl_ssl"),
            "case": "lower",
        },
    )
    broker_sasl_mechanism: str = field(
        default="SCRAM-SHA-512",
        metadata={
            "doc": "SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (PLAIN sends the "
            "password itself: use it with sasl_ssl).",
            **_choices("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"),
            "case": "upper",
        },
    )
    broker_sasl_username: str = field(
        default="", metadata={"doc": "SASL user name (broker_security sasl_*)."}
    )
    broker_sasl_password: str = field(
        default="",
        metadata={
            "doc": "SASL password: a secret, masked in every log and written to no file by rtfd "
            "(prefer the environment variable to the config file)."
        },
    )
    broker_ssl_ca_file: Path | None = field(
        default=None,
        metadata={
            "doc": "PEM file of the CA(s) that signed the brokers' certificates (broker_security "
            "ssl or sasl_ssl; default: the system's trust store)."
        },
    )
    topic_partitions: int = field(
        default=3, metadata={"doc": "Partitions of the transactions topic.", **_range(1, 1024)}
    )
    topic_replication_factor: str = field(
        default="auto",
        metadata={
            "doc": "Replicas of each rtfd topic created: a number, or auto = min(3, brokers "
            "answering at creation time).",
            "auto_int": (1, 32767),
        },
    )
    topic_min_insync_replicas: str = field(
        default="auto",
        metadata={
            "doc": "min.insync.replicas of each rtfd topic created: a number, or auto = 2 when "
            "the replication factor is 3 or more, else 1 (with acks=all, a write then survives "
            "the loss of any one broker and the topic stays writable with one broker down).",
            "auto_int": (1, 32767),
        },
    )
    topic_retention_hours: float = field(
        default=168.0,
        metadata={"doc": "Retention of every rtfd topic (hours).", **_range(0.1, 87600)},
    )

    # --- generator ---------------------------------------------------------------------------
    generator_rate: float = field(
        default=200.0,
        metadata={
            "doc": "Transactions per second in live mode; it sets how many cards are active "
            "(rate / one card's pace at the time-lapse), never how often a card pays.",
            **_range(0, 1_000_000),
        },
    )
    generator_time_scale: float = field(
        default=600.0,
        metadata={
            "doc": "Live time-lapse: simulated time runs this many times faster than real time "
            "(600: a simulated day in 2.4 minutes, so fraud patterns and labels show within "
            "minutes); recorded with each model trained for it (the status bar's model turns "
            "degraded when the generator runs at another).",
            **_range(1, 10**6),
        },
    )
    generator_max_cards: int = field(
        default=1_000_000,
        metadata={
            "doc": "Most cards live mode may keep active (about 20,000 tx/s at the default "
            "time-lapse; ~500 bytes of memory each).",
            **_range(1, 50_000_000),
        },
    )
    generator_users: int = field(
        default=10_000,
        metadata={
            "doc": "Simulated cards of offline histories (`rtfd generate --history`); live "
            "mode derives its cards from the rate.",
            **_range(1, 10_000_000),
        },
    )
    generator_merchants: int = field(
        default=2_000, metadata={"doc": "Simulated merchants.", **_range(1, 1_000_000)}
    )
    generator_fraud_rate: float = field(
        default=0.01,
        metadata={"doc": "Overall share of fraudulent transactions.", **_range(0, 0.5)},
    )
    # The range numpy's and scikit-learn's seeds accept (a negative one crashed the simulator).
    generator_seed: int = field(
        default=42,
        metadata={"doc": "Random seed of the simulator.", **_range(0, 2**32 - 1)},
    )
    generator_label_delay_s: float = field(
        default=60.0,
        metadata={
            "doc": "Mean delay before a fraud label is reported (live mode, seconds).",
            **_range(0, 10**8),
        },
    )

    # --- stream ------------------------------------------------------------------------------
    spark_master: str = field(default="local[*]", metadata={"doc": "Spark master URL."})
    spark_shuffle_partitions: int = field(
        default=2, metadata={"doc": "spark.sql.shuffle.partitions.", **_range(1, 10_000)}
    )
    spark_ui: bool = field(default=False, metadata={"doc": "Enable the Spark UI (127.0.0.1)."})
    spark_conf: dict[str, str] = field(
        default_factory=dict, metadata={"doc": "Extra spark.* settings (TOML table [spark_conf])."}
    )
    stream_trigger_s: float = field(
        default=0.0,
        metadata={
            "doc": "Micro-batch trigger interval (seconds); 0 starts each batch as soon as the "
            "previous one ends.",
            **_range(0, 3600),
        },
    )
    stream_state: str = field(
        default="auto",
        metadata={
            "doc": "Where the per-user state lives: driver (beside foreachBatch, the fast local "
            "path), spark (Spark's state store on the executors, for a cluster), or auto "
            "(driver for a local master, spark otherwise).",
            **_choices("auto", "driver", "spark"),
        },
    )
    stream_max_offsets_per_trigger: int = field(
        default=200_000, metadata={"doc": "Admission limit per micro-batch.", **_range(1, 10**9)}
    )
    stream_state_buckets: int = field(
        default=4,
        metadata={
            "doc": "User buckets of Spark's stateful operator (stream_state = spark).",
            **_range(1, 4096),
        },
    )
    stream_state_ttl_hours: float = field(
        default=24.0 * 8,
        metadata={"doc": "Idle users are evicted from state after this.", **_range(0.01, 10**5)},
    )
    stream_max_future_s: float = field(
        default=300.0,
        metadata={"doc": "Timestamps further in the future go to the DLQ.", **_range(0, 10**9)},
    )
    stream_max_amount: float = field(
        default=1_000_000.0,
        metadata={"doc": "Amounts above this go to the DLQ.", **_range(1, 10**15)},
    )

    # --- models ------------------------------------------------------------------------------
    model_mode: str = field(
        default="supervised",
        metadata={"doc": "Training mode.", **_choices("supervised", "unsupervised")},
    )
    model_algo: str = field(
        default="xgboost",
        metadata={"doc": "Training algorithm.", **_choices("xgboost", "logreg", "iforest")},
    )
    model_threshold_rule: str = field(
        default="f1",
        metadata={
            "doc": "Threshold rule: f1, precision, budget.",
            **_choices("f1", "precision", "budget"),
        },
    )
    model_target_precision: float = field(
        default=0.9, metadata={"doc": "Target precision for the precision rule.", **_range(0, 1)}
    )
    model_alert_budget: float = field(
        default=5.0,
        metadata={"doc": "Alerts per 1,000 transactions for the budget rule.", **_range(0, 1000)},
    )
    label_maturity_days: float = field(
        default=0.01,
        metadata={
            "doc": "Days after which an unlabelled transaction counts as legitimate; the "
            "default (~15 min) fits the simulator's label delay, real chargebacks need 30-90.",
            **_range(0, 3650),
        },
    )

    # --- query -------------------------------------------------------------------------------
    query_row_cap: int = field(
        default=10_000, metadata={"doc": "Rows returned by the DuckDB panel.", **_range(1, 10**7)}
    )

    # --- client properties (secrets live here) -------------------------------------------------
    client: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "doc": "Raw librdkafka properties for every rtfd client ([client] table, "
            "RTFD_CLIENT_*); also passed to Spark's Kafka connector as kafka.<key>, as before."
        },
    )
    client_java: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "doc": "Raw Java Kafka client properties for Spark's connector only, as kafka.<key> "
            "([client_java] table, RTFD_CLIENT_JAVA_*); they win over [client]."
        },
    )

    # ------------------------------------------------------------------------------------------
    @property
    def state_in_driver(self) -> bool:
        """Whether the stream keeps the per-user state beside foreachBatch (stream_state)."""
        if self.stream_state != "auto":
            return self.stream_state == "driver"
        return self.spark_master.strip().lower().startswith("local")

    @property
    def data_dir(self) -> Path:
        """The data root: ``RTFD_HOME`` or the platform's user data dir."""
        return Path(self.home) if self.home else Path(platformdirs.user_data_dir(APP_NAME))

    @property
    def cache_root(self) -> Path:
        return (
            Path(self.cache_dir) if self.cache_dir else Path(platformdirs.user_cache_dir(APP_NAME))
        )

    @property
    def log_root(self) -> Path:
        if self.log_dir:
            return Path(self.log_dir)
        if self.home:
            return Path(self.home) / "logs"
        return Path(platformdirs.user_log_dir(APP_NAME))

    @property
    def log_file(self) -> Path:
        return self.log_root / "rtfd.log"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def jars_dir(self) -> Path:
        return self.cache_root / "jars"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def enriched_dir(self) -> Path:
        return self.data_dir / "enriched_transactions"

    @property
    def labels_dir(self) -> Path:
        return self.data_dir / "labels"

    @property
    def checkpoints_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def run_dir(self) -> Path:
        """Pid files and locks of running components."""
        return self.data_dir / "run"

    @property
    def log_root_setting(self) -> str:
        """The setting that places :attr:`log_root` (``home`` puts the logs under it)."""
        return "home" if self.home and not self.log_dir else "log_dir"

    def ensure_dirs(self) -> None:
        """Create the data, cache and log directories (never done at import time).

        Raises :class:`ConfigError` naming the setting and the path when one cannot be created
        or written: a home under /proc, a file where a directory should be, a name too long.
        """
        for setting, d in (
            ("home", self.data_dir),
            ("cache_dir", self.cache_root),
            (self.log_root_setting, self.log_root),
            ("home", self.run_dir),
        ):
            make_dir(d, setting)

    def secret_values(self) -> set[str]:
        """Every secret these settings hold: a setting, client property or ``spark_conf`` entry
        whose name looks secret (``broker_sasl_password``, ``sasl.password``), the password
        inside a JAAS/OAUTHBEARER config, the userinfo of any URL in any setting. Logging masks
        these wherever they appear (:func:`redact.remember`)."""
        found: set[str] = set()
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                found |= redact.secret_values(value)
            elif isinstance(value, str | Path):
                found |= redact.secret_values({f.name: str(value)})
        return found

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, safe to log: a value whose name looks secret is masked whole,
        and every other text has the known secrets and secret shapes masked."""
        known = redact.KnownSecrets(self.secret_values())
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value = {
                    k: redact.MASK if redact.is_secret_name(k) else redact.redact_text(v, known)
                    for k, v in value.items()
                }
            elif isinstance(value, str) and value and redact.is_secret_name(f.name):
                value = redact.MASK
            elif isinstance(value, str | Path):
                value = redact.redact_text(str(value), known)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({items})"

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings: bootstrap servers resolved by the broker layer plus pass-through."""
        return dict(self.client)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed and validated, as CLI flags do."""
        return _validated(dataclasses.replace(self, **changes), {k: "argument" for k in changes})


def make_dir(path: Path, setting: str) -> Path:
    """Create the directory ``path`` (and its parents) and check that rtfd may write there.

    A failure is a :class:`ConfigError` that names ``setting`` (the one that put the directory
    there), the path and the reason, so a bad ``--home`` or ``RTFD_LOG_DIR`` is one line.
    """
    fix = f"set {ENV_PREFIX}{setting.upper()}{' (or --home)' if setting == 'home' else ''} to a "
    fix += "writable directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        failed = getattr(e, "filename", None)
        at = f" ({short_path(failed)})" if failed and str(failed) != str(path) else ""
        raise ConfigError(
            f"setting {setting}: cannot create the directory {short_path(path)}: {reason}{at}; "
            + fix
        ) from e
    try:
        # A real write, not os.access: root passes access() checks on /proc and read-only mounts.
        fd, probe = tempfile.mkstemp(prefix=".rtfd-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(
            f"setting {setting}: cannot write in {short_path(path)}: {e.strerror or e}; {fix}"
        ) from e
    return path


def short_path(path: Path | str, limit: int = 160) -> str:
    """``path`` as text for a one-line message: control characters escaped (a newline, a NUL),
    the middle elided when longer than ``limit``."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))
    if len(text) <= limit:
        return text
    keep = limit // 2 - 2
    return f"{text[:keep]}...{text[-keep:]} ({len(text):,} characters)"


def config_file_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    explicit = env.get("RTFD_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


_HINTS: dict[str, Any] | None = None


def _hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = get_type_hints(Settings)
    return _HINTS


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Convert a raw value (string from env/CLI, or a TOML value) to the field's type."""
    meta = Settings.__dataclass_fields__[name].metadata
    if "auto_int" in meta:
        return _coerce_auto_int(name, raw, source)
    value = _coerce_type(name, raw, source)
    case = meta.get("case")
    if case is not None and isinstance(value, str):
        value = value.strip().lower() if case == "lower" else value.strip().upper()
    return value


def _coerce_auto_int(name: str, raw: Any, source: str) -> str:
    """``auto`` or a whole number, kept as text ("auto", "3"); the range is checked later."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    if isinstance(raw, str) and raw.strip().isdecimal() and raw.strip().isascii():
        return str(int(raw.strip()))
    raise ConfigError(f"setting {name} (from {source}): expected auto or a number, got {raw!r}")


def _coerce_type(name: str, raw: Any, source: str) -> Any:
    hint = _hints()[name]
    base = hint
    if str(hint).startswith("pathlib.Path | None") or hint == (Path | None):
        base = Path
    try:
        if base is Path:
            if isinstance(raw, str) and "\x00" in raw:
                raise ValueError  # no file system accepts it; os calls would raise ValueError
            return None if raw in (None, "") else Path(os.path.expanduser(str(raw)))
        if base is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(str(raw).strip().replace("_", "")) if isinstance(raw, str) else int(raw)
        if base is float:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        if base is str:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise ValueError
            return str(raw)
        if base == dict[str, str]:
            if not isinstance(raw, dict):
                raise ValueError
            return {str(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        pass
    else:
        raise ConfigError(f"setting {name}: unsupported type {hint}")
    kind = getattr(base, "__name__", str(base))
    raise ConfigError(f"setting {name} (from {source}): expected {kind}, got {raw!r}")


def _check(settings: Settings, name: str, source: str) -> None:
    meta = Settings.__dataclass_fields__[name].metadata
    value = getattr(settings, name)
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(
            f"setting {name} (from {source}): {value!r} is not one of {', '.join(choices)}"
        )
    lo, hi = meta.get("auto_int", (None, None)) if value != "auto" else (None, None)
    if lo is not None:
        value = int(value)
    lo = meta.get("min", lo)
    hi = meta.get("max", hi)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"setting {name} (from {source}): {value!r} is outside [{lo}, {hi}]")


def _validated(settings: Settings, sources: Mapping[str, str]) -> Settings:
    for f in fields(settings):
        _check(settings, f.name, sources.get(f.name, "default"))
    if settings.broker_backend == "external" and not settings.broker_bootstrap_servers:
        raise ConfigError(
            "setting broker_bootstrap_servers: required when broker_backend is external "
            "(set RTFD_BROKER_BOOTSTRAP_SERVERS=host:port)"
        )
    if settings.broker_port == settings.broker_controller_port:
        raise ConfigError("setting broker_controller_port: must differ from broker_port")
    _check_security(settings, sources)
    _check_replication(settings, sources)
    return settings


def _check_security(settings: Settings, sources: Mapping[str, str]) -> None:
    """The broker_security settings fit together."""
    security = settings.broker_security

    def fail(name: str, problem: str) -> ConfigError:
        return ConfigError(f"setting {name} (from {sources.get(name, 'default')}): {problem}")

    if security != "none" and not settings.broker_bootstrap_servers:
        raise fail(
            "broker_security",
            f"{security} applies to an external cluster: set broker_bootstrap_servers (the "
            "local redpanda and kafka brokers listen on 127.0.0.1 without authentication)",
        )
    if settings.broker_backend in ("kafka", "redpanda") and security != "none":
        raise fail(
            "broker_security",
            f"{security} needs broker_backend external (or auto), not {settings.broker_backend}",
        )
    sasl = security.startswith("sasl_")
    for name in ("broker_sasl_username", "broker_sasl_password"):
        given = bool(getattr(settings, name))
        if sasl and not given:
            raise fail(name, f"required when broker_security is {security}")
        if given and not sasl:
            raise fail(
                name, f"set broker_security to sasl_plaintext or sasl_ssl (it is {security})"
            )
    ca = settings.broker_ssl_ca_file
    if ca is not None:
        if security not in ("ssl", "sasl_ssl"):
            raise fail(
                "broker_ssl_ca_file",
                f"a CA file needs broker_security ssl or sasl_ssl (it is {security})",
            )
        if not ca.is_file() or not os.access(ca, os.R_OK):
            raise fail("broker_ssl_ca_file", f"{short_path(ca)} is not a readable file")


def _check_replication(settings: Settings, sources: Mapping[str, str]) -> None:
    rf, isr = settings.topic_replication_factor, settings.topic_min_insync_replicas
    if rf != "auto" and isr != "auto" and int(isr) > int(rf):
        source = sources.get("topic_min_insync_replicas", "default")
        raise ConfigError(
            f"setting topic_min_insync_replicas (from {source}): {isr} is more than "
            f"topic_replication_factor {rf}: no write could ever be acknowledged"
        )


def _flatten_toml(doc: Mapping[str, Any], path: Path) -> dict[str, Any]:
    names = {f.name for f in fields(Settings)}
    table_fields = set(TABLE_FIELDS)
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if key in table_fields or not isinstance(value, dict):
            flat[key] = value
            continue
        for sub, sub_value in value.items():
            flat[f"{key}_{sub}"] = sub_value
    for key in flat:
        if key not in names:
            raise ConfigError(f"setting {key} (from {path}): unknown setting")
    return flat


def _read_config_file(path: Path, *, explicit: bool) -> str | None:
    """The config file's text; None when there is none (an error if it was asked for)."""
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError) as e:
        if explicit:
            raise ConfigError(f"config file {short_path(path)}: not found") from e
        return None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {short_path(path)}: not UTF-8 text ({e.reason})") from e
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"config file {short_path(path)}: cannot read it: {reason}") from e


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Build Settings from defaults, the TOML file, the environment and CLI ``overrides``.

    ``overrides`` maps field names to values; ``None`` values are ignored, so argparse results can
    be passed straight through. Raises :class:`ConfigError` with one line naming the setting.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    path = config_file or config_file_path(env)
    text = _read_config_file(path, explicit=config_file is not None)
    if text is not None:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {short_path(path)}: {e}") from e
        for key, raw in _flatten_toml(doc, path).items():
            values[key] = _coerce(key, raw, str(path))
            sources[key] = str(path)

    tables = {name: dict(values.get(name, {})) for name in ("client", "client_java")}
    for f in fields(Settings):
        var = ENV_PREFIX + f.name.upper()
        if var in env and f.name not in TABLE_FIELDS:
            values[f.name] = _coerce(f.name, env[var], var)
            sources[f.name] = var
    # RTFD_CLIENT_JAVA_* first: it also starts with RTFD_CLIENT_.
    prefixes = ((CLIENT_JAVA_ENV_PREFIX, "client_java"), (CLIENT_ENV_PREFIX, "client"))
    for var, raw in env.items():
        for prefix, name in prefixes:
            if var.startswith(prefix):
                if len(var) > len(prefix):
                    tables[name][var[len(prefix) :].lower().replace("_", ".")] = raw
                    sources[name] = var
                break
    values |= {name: table for name, table in tables.items() if table}

    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in Settings.__dataclass_fields__:
            raise ConfigError(f"setting {key}: unknown setting")
        values[key] = _coerce(key, raw, "argument")
        sources[key] = "argument"

    return _validated(Settings(**values), sources)


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(name, env var, default, doc) for every setting, for the README's table."""
    env_names = {
        "client": CLIENT_ENV_PREFIX + "<KEY>",
        "client_java": CLIENT_JAVA_ENV_PREFIX + "<KEY>",
        "spark_conf": "(TOML only)",
    }
    rows = []
    for f in fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        env = env_names.get(f.name, ENV_PREFIX + f.name.upper())
        rows.append((f.name, env, repr(default), f.metadata.get("doc", "")))
    return rows


def settings_table_markdown() -> str:
    """The configuration table of README.md (a test keeps the README in step with this)."""
    lines = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{n}` | `{e}` | `{d}` | {doc} |" for n, e, d, doc in describe_settings()]
    return "\n".join(lines)
