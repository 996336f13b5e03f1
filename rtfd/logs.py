"""Logging set-up: always a rotating file under the log dir, a console handler only on request.

Under the TUI nothing may write to the terminal, so the TUI calls this with ``console=False``.
Every handler made here masks secrets (:class:`rtfd.redact.RedactingFilter`) at every level: the
settings' own secrets by value, and secret shapes nobody declared.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from rtfd.config import Settings, make_dir, short_path
from rtfd.errors import ConfigError
from rtfd.redact import RedactingFilter, remember

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_CONFIGURED: set[str] = set()


def setup_logging(settings: Settings, *, console: bool = True) -> None:
    """Route rtfd's logs to ``settings.log_file`` (and stderr when ``console``). Idempotent.

    A log directory or file that cannot be written is a :class:`ConfigError` naming the setting.
    Secrets (by name, by known value, by shape) are masked in every record (rtfd.redact).
    """
    remember(settings.secret_values())
    # A handler that fails to write (a full disk, a closed terminal) must not print the record
    # and the exception being handled to stderr: that text would bypass the redaction (and
    # land on the TUI's screen).
    logging.raiseExceptions = False
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    log_file = str(settings.log_file)
    if log_file not in _CONFIGURED:
        setting = settings.log_root_setting
        make_dir(settings.log_root, setting)
        try:
            handler = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=20 * 1024 * 1024, backupCount=3, encoding="utf-8"
            )
        except OSError as e:
            raise ConfigError(
                f"setting {setting}: cannot write the log file {short_path(log_file)}: "
                f"{e.strerror or e}"
            ) from e
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(RedactingFilter())
        handler.set_name("rtfd-file")
        root.addHandler(handler)
        _CONFIGURED.add(log_file)
    has_console = any(h.get_name() == "rtfd-console" for h in root.handlers)
    if console and not has_console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        stream.addFilter(RedactingFilter())
        stream.setLevel(logging.WARNING if settings.log_level == "INFO" else settings.log_level)
        stream.set_name("rtfd-console")
        root.addHandler(stream)
    if not console:
        for h in list(root.handlers):
            if h.get_name() == "rtfd-console" or type(h) is logging.StreamHandler:
                root.removeHandler(h)
    for noisy in ("py4j", "urllib3", "matplotlib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_traceback_to_file(message: str, error: BaseException, log_file: Path) -> bool:
    """Write ``message`` and ``error``'s traceback to ``log_file`` only, never to the console
    (which may be the user's terminal); False when :func:`setup_logging` has not opened it."""
    logger = logging.getLogger("rtfd.cli")
    exc_info = (type(error), error, error.__traceback__)
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, (), exc_info)
    for handler in logging.getLogger().handlers:
        if (
            isinstance(handler, logging.FileHandler)
            and handler.get_name() == "rtfd-file"
            and handler.baseFilename == os.path.abspath(log_file)
        ):
            handler.handle(record)
            handler.flush()
            return True
    return False
