"""One way to say how rtfd authenticates to a cluster, spoken in each client's own language.

The user sets ``broker_security`` (none, ssl, sasl_plaintext, sasl_ssl), ``broker_sasl_mechanism``
(SCRAM-SHA-512, SCRAM-SHA-256, PLAIN), ``broker_sasl_username``, ``broker_sasl_password`` and
``broker_ssl_ca_file``. rtfd has two kinds of Kafka client and they name the same things
differently:

* librdkafka (confluent-kafka: the generator, the stream's alert and dead-letter producer, topic
  admin, the TUI's alert feed) takes ``security.protocol``, ``sasl.mechanism``,
  ``sasl.username``, ``sasl.password`` and a PEM CA file as ``ssl.ca.location``;
* the Java client inside Spark's Kafka connector takes ``security.protocol``,
  ``sasl.mechanism``, a JAAS line (``sasl.jaas.config``) naming the login module of the mechanism
  with the user name and password in it, and a trust store. Java 17 reads a PEM file as a trust
  store only with ``ssl.truststore.type=PEM`` (kafka-clients 2.7 and later), which is what rtfd
  sets, so the same CA file serves both.

Raw pass-through stays: ``[client]`` (librdkafka, and Spark's connector too, as before) and
``[client_java]`` (Spark's connector only) are laid over what is derived here. A Java-only
property found in ``[client]`` (``sasl.jaas.config`` ...) goes to Spark only: librdkafka refuses to
create a client given one.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtfd.config import Settings

log = logging.getLogger(__name__)

# Java client properties that librdkafka refuses (a client given one is never created; a unit
# test checks each against librdkafka). Older rtfd sent [client] to both kinds of client, so a
# JAAS line put there for Spark broke every librdkafka client: they now go to Spark only.
JAVA_ONLY_PROPERTIES = frozenset(
    {
        "sasl.jaas.config",
        "sasl.client.callback.handler.class",
        "sasl.login.callback.handler.class",
        "sasl.login.class",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.type",
        "ssl.truststore.certificates",
        "ssl.keystore.type",
        "ssl.protocol",
        "ssl.enabled.protocols",
        "ssl.trustmanager.algorithm",
        "ssl.keymanager.algorithm",
        "ssl.provider",
        "ssl.engine.factory.class",
        "security.providers",
    }
)
_warned: set[str] = set()
_warned_lock = threading.Lock()

PROTOCOLS = {
    "none": None,
    "ssl": "SSL",
    "sasl_plaintext": "SASL_PLAINTEXT",
    "sasl_ssl": "SASL_SSL",
}

LOGIN_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


def librdkafka_security(settings: Settings) -> dict[str, str]:
    """librdkafka's properties for ``broker_security`` and friends (empty for none)."""
    protocol = PROTOCOLS[settings.broker_security]
    if protocol is None:
        return {}
    props = {"security.protocol": protocol}
    if protocol == "SASL_PLAINTEXT" and settings.broker_sasl_mechanism == "PLAIN":
        _warn_once(
            "plain-over-plaintext",
            "broker_sasl_mechanism PLAIN over sasl_plaintext sends the password unencrypted: "
            "use sasl_ssl (or SCRAM)",
        )
    if protocol.startswith("SASL"):
        props |= {
            "sasl.mechanism": settings.broker_sasl_mechanism,
            "sasl.username": settings.broker_sasl_username,
            "sasl.password": settings.broker_sasl_password,
        }
    if protocol.endswith("SSL") and settings.broker_ssl_ca_file is not None:
        props["ssl.ca.location"] = str(settings.broker_ssl_ca_file)
    return props


def librdkafka_passthrough(settings: Settings) -> dict[str, str]:
    """``[client]`` minus the Java-only properties (:data:`JAVA_ONLY_PROPERTIES`), which are
    left to Spark's connector, with a warning (once per property) to move them to
    ``[client_java]``."""
    java_only = [k for k in settings.client if k.strip().lower() in JAVA_ONLY_PROPERTIES]
    for key in java_only:
        _warn_once(
            key,
            f"[client] {key} is a Java client property that librdkafka refuses: it goes to "
            "Spark's connector only; move it to [client_java]",
        )
    return {k: v for k, v in settings.client.items() if k not in java_only}


def _warn_once(what: str, message: str) -> None:
    """Log ``message`` the first time ``what`` comes up in this process (client configs are
    built for every client)."""
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    log.warning("%s", message)


def java_security(settings: Settings) -> dict[str, str]:
    """The Java Kafka client's properties for the same settings (without Spark's ``kafka.``)."""
    protocol = PROTOCOLS[settings.broker_security]
    if protocol is None:
        return {}
    props = {"security.protocol": protocol}
    if protocol.startswith("SASL"):
        mechanism = settings.broker_sasl_mechanism
        props |= {
            "sasl.mechanism": mechanism,
            "sasl.jaas.config": jaas_config(
                LOGIN_MODULES[mechanism],
                settings.broker_sasl_username,
                settings.broker_sasl_password,
            ),
        }
    if protocol.endswith("SSL") and settings.broker_ssl_ca_file is not None:
        props |= {
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(settings.broker_ssl_ca_file),
        }
    return props


def java_client_properties(settings: Settings) -> dict[str, str]:
    """Every property Spark's connector gets (as ``kafka.<key>``), lowest precedence first:
    the derived security, ``[client]`` (sent to Spark as it always was), ``[client_java]``."""
    return {**java_security(settings), **settings.client, **settings.client_java}


def jaas_config(module: str, username: str, password: str) -> str:
    """A one-line JAAS config: ``<module> required username="..." password="...";``.

    Kafka parses it with java.io.StreamTokenizer, whose quoted strings end at a line break and
    read backslash escapes: a backslash, a quote and control characters are escaped, so any
    user name or password comes through unchanged.
    """
    return (
        f'{module} required username="{_jaas_quote(username)}" password="{_jaas_quote(password)}";'
    )


_JAAS_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _jaas_quote(text: str) -> str:
    out = []
    for ch in text:
        if ch in _JAAS_ESCAPES:
            out.append(_JAAS_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")  # StreamTokenizer reads octal escapes
        else:
            out.append(ch)
    return "".join(out)
