"""Secrets out of every log: masked by name, by known value and by shape.

Three nets, because each misses what the others catch:

* **by name** — a client property whose name looks secret (:func:`is_secret_name`) is masked
  whole wherever rtfd prints settings;
* **by known value** — the secrets of the loaded Settings (those values, the password inside a
  JAAS or OAUTHBEARER config, the userinfo of any URL) are remembered (:func:`remember`) and
  masked wherever they turn up, in whatever words surround them (an exception message, a
  library's log line);
* **by shape** — :data:`RULES` catch a secret nobody told us about: ``password="..."`` in JAAS
  text, ``user:pass@host``, ``sasl.password=...``, ``Authorization: Bearer ...``, PEM private
  keys, JWTs, AWS access key ids.

The shape rules are written in the syntax that Python's :mod:`re` and ``java.util.regex`` share
(no named groups, no ``\\Z``, no possessive quantifiers; a brace only in a ``{n}`` quantifier, or
log4j's option parser loses count: ``\\x7d`` inside a class), so the same rules also feed the log4j2
``%replace`` converter of the JVM logs (:func:`log4j2_pattern`) and Spark's redaction settings
(:func:`spark_redaction_conf`). Known values never go to the JVM side: the generated log4j2 file
would then hold the secrets itself.

This module sits below :mod:`rtfd.config` and imports nothing from rtfd.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

MASK = "***"

# A property name containing one of these is a secret (``ssl.key.password``, ``sasl.jaas.config``,
# ``sasl.oauthbearer.client.secret``, ``basic.auth.user.info`` ...) ...
SECRET_NAME_MARKERS = (
    "password",
    "secret",
    "token",
    "key",
    "credential",
    "jaas",
    "oauthbearer.config",
    "user.info",
    "userinfo",
)
# ... unless it names where a secret is stored, not the secret (``ssl.keystore.location``).
NOT_SECRET_NAME_MARKERS = ("location",)

# Known values shorter than this are masked only where a name or shape says they are secret:
# masking every "abc" in every log line would make the logs unreadable.
MIN_KNOWN_LENGTH = 4

# Key words that mark ``word=value`` / ``word: value`` as a secret in free text. Bare ``key`` is
# not one of them: ``key=card-17`` is an ordinary record key in a log line.
_KEY_WORDS = (
    r"(?:passw(?:or)?d|pwd|secret[._-]?key|secret|token|credential|api[._-]?key|access[._-]?key"
    r"|private[._-]?key|key[._]pem|keystore[._]key|jaas[._]config|oauthbearer[._]config"
    r"|user[._]?info)"
)
# The key word sits in the key's last dotted part (``ssl.key.password``, ``clientSecret``), not
# before it (``delegation.token.max.lifetime.ms`` is a duration). A key starts where a word
# starts and every repeat is bounded: without that, a long word or a long run of "a:b:c..." makes
# the scan quadratic (100 s for 200 KB, measured); with it, the worst 200 KB line measured takes
# 0.6-2 s.
_KEY = r"(?<![\w.-])[\w.-]{0,64}" + _KEY_WORDS + r"[\w-]{0,64}"
_USER = r"[^\s/@:,;'\"<>()\x7b\x7d\[\]=]"  # a character of a URL's user name
# Between a key and its value: the key's closing quote (escaped inside JSON), then '=' or ':'.
_SEP = r"(?:\\?[\"'])?\s*[=:]\s*"


@dataclass(frozen=True)
class Rule:
    """One secret shape.

    ``regex`` uses only syntax that Python and Java read alike; ``replacement`` is in Java's form
    (``$1`` for group 1); ``secret_group`` is the group that holds the secret itself (0: the whole
    match), which :func:`secrets_in_text` collects as a known value.
    """

    name: str
    regex: str
    replacement: str
    secret_group: int
    userinfo: bool = False  # the secret is ``user:password``; the password alone is one too

    @property
    def python_replacement(self) -> str:
        return re.sub(r"\$(\d)", r"\\g<\1>", self.replacement)


RULES: tuple[Rule, ...] = (
    Rule(
        "pem private key",
        r"-----BEGIN [A-Z ]{0,32}PRIVATE KEY-----(?:[^-]|-(?!----)){0,16384}"
        r"-----END [A-Z ]{0,32}PRIVATE KEY-----",
        MASK,
        0,
    ),
    # scheme://user:pass@host — the password may hold any character but '/' and whitespace
    # (the last '@' before the host ends it).
    Rule(
        "url userinfo",
        r"(?i:(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,30}://)([^\s/@:]{1,256}:[^\s/]{0,256})@)",
        "$1" + MASK + "@",
        2,
        userinfo=True,
    ),
    # user:pass@host without a scheme, as in a bootstrap server list (',' separates servers).
    Rule(
        "bare userinfo",
        r"(?<!" + _USER + r")(" + _USER + r"{1,256}:[^\s/,;'\"<>]{0,256})@(?=[A-Za-z0-9\[])",
        MASK + "@",
        1,
        userinfo=True,
    ),
    Rule("bearer token", r"(?i:(\bbearer\s+))([A-Za-z0-9\-._~+/]+=*)", "$1" + MASK, 2),
    Rule(
        "basic auth",
        r"(?i:(authorization[\"']?\s*[:=]\s*[\"']?basic\s+))([A-Za-z0-9+/]+=*)",
        "$1" + MASK,
        2,
    ),
    Rule("jwt", r"(eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)", MASK, 1),
    Rule("aws access key id", r"\b((?:AKIA|ASIA)[0-9A-Z]{16})\b", MASK, 1),
    # password=\"...\" (a JAAS config inside JSON) before password="...", which would stop at
    # the escaped quote.
    Rule(
        "escaped-quoted secret",
        r"(?i:(" + _KEY + _SEP + r"\\\"))((?:[^\"\\]|\\[^\"]){0,2048})(\\\")",
        "$1" + MASK + "$3",
        2,
    ),
    Rule(
        "double-quoted secret",
        r"(?i:(" + _KEY + _SEP + r"\"))([^\"]{0,4096})(\")",
        "$1" + MASK + "$3",
        2,
    ),
    Rule(
        "single-quoted secret",
        r"(?i:(" + _KEY + _SEP + r"'))([^']{0,4096})(')",
        "$1" + MASK + "$3",
        2,
    ),
    # Unquoted, up to a separator. Kafka's own "[hidden]" and "null" (not set), an already masked
    # value and the escaped quote of a masked value stay.
    Rule(
        "bare secret",
        r"(?i:(" + _KEY + _SEP + r"))(?!\[hidden\]|\*|\\|null\b)([^\s,;'\"&<>\x7d)\]]+)",
        "$1" + MASK,
        2,
    ),
)

_COMPILED: tuple[tuple[Rule, re.Pattern[str], str], ...] = tuple(
    (r, re.compile(r.regex), r.python_replacement) for r in RULES
)


def is_secret_name(name: str) -> bool:
    """Whether a property of this name holds a secret (its whole value is masked)."""
    n = name.lower()
    return any(m in n for m in SECRET_NAME_MARKERS) and not any(
        m in n for m in NOT_SECRET_NAME_MARKERS
    )


def _strip_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def secrets_in_text(text: str) -> set[str]:
    """The secret parts of ``text`` that the shape rules find (a JAAS password, a userinfo)."""
    found: set[str] = set()
    for rule, pattern, _ in _COMPILED:
        for m in pattern.finditer(text):
            secret = m.group(rule.secret_group)
            found.add(_strip_quotes(secret))
            if rule.userinfo:
                found.add(secret.split(":", 1)[1])
    return {s for s in found if s}


def secret_values(properties: Mapping[str, str]) -> set[str]:
    """Every secret value in some named ``properties``: the whole value of a property whose name
    looks secret, and what the shape rules find in any value."""
    found: set[str] = set()
    for name, value in properties.items():
        if is_secret_name(name) and value:
            found.add(value)
        found |= secrets_in_text(value)
    return found


def _spellings(secret: str) -> set[str]:
    """How a secret may be written in a log: as is, escaped by repr() or JSON, URL-(un)quoted."""
    return {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        unquote(secret),
    }


class KnownSecrets:
    """A set of secret values and one compiled regex that finds any of them, longest first."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        #: The secrets as given; ``values`` are their spellings. A union spells only the secrets,
        #: never the spellings again: re-spelling them (URL-quoting a URL-quoted value ...) grew
        #: the set and the regex with every call, until compiling it took minutes.
        self.secrets = frozenset(values)
        spelled = {s for v in self.secrets for s in _spellings(v) if len(s) >= MIN_KNOWN_LENGTH}
        self.values = frozenset(spelled)
        alternatives = sorted(self.values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def union(self, values: Iterable[str]) -> KnownSecrets:
        new = set(values) - self.secrets
        return KnownSecrets(self.secrets | new) if new else self

    def mask(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text


_known = KnownSecrets()
_known_lock = threading.Lock()


def remember(values: Iterable[str]) -> None:
    """Add secret values that every later :func:`redact_text` call masks (for the process)."""
    global _known
    with _known_lock:
        _known = _known.union(values)


def redact_text(text: str, known: KnownSecrets | None = None) -> str:
    """``text`` with every known secret and every secret shape masked.

    ``known`` defaults to the values given to :func:`remember`.
    """
    text = (known if known is not None else _known).mask(text)
    for _, pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record a handler emits: final message (after % args), exception text and
    stack with every secret masked, at every level.

    The record is changed in place, so handlers that see it later (pytest's, a benchmark's) get
    the masked text too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging would print the args raw to stderr
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


# --- the JVM side ---------------------------------------------------------------------------


def log4j2_pattern(prefix: str, body: str = "%m%n%ex") -> str:
    """A log4j2 PatternLayout pattern: ``prefix`` then ``body`` with every shape rule applied
    (nested ``%replace``, the first rule innermost).

    The layout must set ``alwaysWriteExceptions = false``, or log4j appends the exception a second
    time, unmasked, since it cannot see the ``%ex`` inside ``%replace``.
    """
    for rule in RULES:
        body = f"%replace{{{body}}}{{{rule.regex}}}{{{rule.replacement}}}"
    return prefix + body


def properties_value(value: str) -> str:
    """``value`` escaped for a Java .properties file (which reads ``\\\\`` as one backslash)."""
    return value.replace("\\", "\\\\")


def spark_redaction_conf() -> dict[str, str]:
    """Spark's own redaction, widened to rtfd's secret names and shapes.

    ``spark.redaction.regex`` masks a conf entry or data source option (``kafka.sasl.jaas.config``)
    whose key *or value* matches; the string regexes mask the matching text of plans and
    ``explain`` output.
    """
    names = "|".join(re.escape(m) for m in SECRET_NAME_MARKERS if m != "key")
    shapes = "|".join(f"(?:{r.regex})" for r in RULES)
    return {
        "spark.redaction.regex": (
            rf"(?i)access[.]?key|{names}|[^\s/@:,;'\"]+:[^\s/,;'\"]*@[A-Za-z0-9\[]"
        ),
        "spark.redaction.string.regex": shapes,
        "spark.sql.redaction.string.regex": shapes,
    }
