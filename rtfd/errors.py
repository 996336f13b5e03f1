"""The project's own error types.

Every error a user can cause carries a short human ``title`` and a ``message`` that says what to
do, so the CLI and the TUI can show it as one line instead of a traceback.
"""

from __future__ import annotations


class RtfdError(Exception):
    """Base class of every error rtfd raises on purpose."""

    title = "rtfd error"

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class ConfigError(RtfdError):
    """A setting has an invalid value; the message names the setting and its source."""

    title = "Invalid configuration"


class UsageError(RtfdError):
    """A command-line argument is malformed or out of range; the message names the flag."""

    title = "Invalid argument"


class BrokerError(RtfdError):
    """The broker could not be started, stopped or reached."""

    title = "Broker error"


class BrokerUnavailable(BrokerError):
    """No broker answers at the configured address."""

    title = "Broker unavailable"


class DependencyMissing(RtfdError):
    """A program rtfd needs (Java, Docker, Maven) is not installed or too old."""

    title = "Missing dependency"


class ValidationError(RtfdError):
    """A record does not match its schema; ``reason`` is the short, countable cause."""

    title = "Invalid record"

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class ArtifactError(RtfdError):
    """A model artifact is missing, incomplete or does not match its manifest."""

    title = "Model artifact refused"


class DataError(RtfdError):
    """An input data file is missing, unreadable or lacks required columns."""

    title = "Bad input data"
