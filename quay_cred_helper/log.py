"""Debug logging: off unless asked, never on stdout, never a secret.

`quay-cred-helper --debug` logs to stderr; the helper, which clients run with
no flags, logs when QUAY_CRED_HELPER_LOG=debug, to a 0600 file in the user
log dir (rotated at 1 MiB, three old files kept; on Windows checked at start,
one old file), or to stderr with QUAY_CRED_HELPER_LOG_FILE=-. A log file in a
missing directory gets it (0700); one that cannot be written costs a warning
line, never the command. When logging is off, `debug()` costs one
attribute check and imports nothing: it is called on hot paths.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

LOG_ENV = "QUAY_CRED_HELPER_LOG"
LOG_FILE_ENV = "QUAY_CRED_HELPER_LOG_FILE"
MAX_BYTES = 1 << 20
BACKUPS = 3

_logger: logging.Logger | None = None
_secrets: set[str] = set()


def secret(value: object) -> None:
    """Register a value that must never appear in a log line."""
    if isinstance(value, str) and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, "[secret]")
    if "Basic " in text or "Bearer " in text or "eyJ" in text:
        import re

        text = re.sub(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9._~+/=-]+", r"\1 [redacted]", text)
        text = re.sub(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*", "[jwt]", text)
    return text


def enable(to_stderr: bool = False, warn: Callable[[str], None] | None = None) -> None:
    """Start logging at debug level: to stderr, or to the rotated file. A file that cannot be opened
    (its directory cannot be made or written) is one `warn` line, and the command goes on without a log."""
    global _logger
    import logging

    target = os.environ.get(LOG_FILE_ENV, "")
    handler: logging.Handler
    if to_stderr or target == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        from quay_cred_helper import files, paths

        try:
            if target:
                files.private_dir(os.path.dirname(os.path.abspath(target)), tighten=False)
            path = target or os.path.join(files.private_dir(paths.log_dir()), "quay-cred-helper.log")
            handler = _size_checked_file(path) if sys.platform == "win32" else _rotating_file(path)
        except OSError as exc:
            if warn is not None:
                where = target or paths.log_dir()
                warn(f"warning: no debug log: cannot write {where}: {exc.strerror or type(exc).__name__}")
            return
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(message)s"))
    logger = logging.getLogger("quay_cred_helper")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    _logger = logger


def _private_open(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _rotating_file(path: str) -> logging.Handler:
    """A rotating file handler whose files, the one it opens after each rotation too, are 0600 whatever the umask."""
    import logging.handlers

    class PrivateRotatingFile(logging.handlers.RotatingFileHandler):
        def _open(self):  # type: ignore[no-untyped-def]
            return open(self.baseFilename, self.mode, encoding=self.encoding, opener=_private_open)  # noqa: SIM115

        def handleError(self, record: logging.LogRecord) -> None:
            pass  # a log that fails later (disk full, rotation refused) must not print a traceback

    return PrivateRotatingFile(path, maxBytes=MAX_BYTES, backupCount=BACKUPS)


def _size_checked_file(path: str) -> logging.Handler:
    """The log for Windows: the size is checked once, when a process opens the log, and one old file is kept.

    RotatingFileHandler renames the log when it fills up, and Windows refuses to rename a file another
    helper process has open (docker runs several at once): the rollover then fails on every line after.
    Here a log over MAX_BYTES becomes `.1` when no other process holds it; else it grows a little
    until a later start finds it free."""
    import contextlib
    import logging

    with contextlib.suppress(OSError):  # missing, or held open by another process
        if os.path.getsize(path) > MAX_BYTES:
            os.replace(path, path + ".1")
    return logging.FileHandler(path, encoding="utf-8")


def enable_from_environment(warn: Callable[[str], None] | None = None) -> None:
    if os.environ.get(LOG_ENV, "").lower() == "debug":
        enable(warn=warn)


def debug(message: str, *args: object) -> None:
    if _logger is not None:
        _logger.debug(redact(message % args if args else message))
