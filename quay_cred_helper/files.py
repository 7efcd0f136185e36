"""Private files: atomic replacement and inter-process locks.

Everything we write (index, token cache, config) goes through here so a crash
at any instant leaves either the old file or the new one, never a mix, and no
file is ever readable by other users whatever the umask. Reads are on the hot
path, so the modules only writes need (tempfile, json) are imported there.

On Windows, file modes mean nothing but read-only: privacy comes from the user
profile's ACL (%LOCALAPPDATA%, %USERPROFILE%\\.docker), so modes are not set there.
"""

from __future__ import annotations

import os
import sys

from quay_cred_helper import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Windows refuses to replace a file another process has open (a `get` reading the index or the
# token cache: Python opens files without FILE_SHARE_DELETE) with a sharing violation, which
# Python raises as PermissionError. Readers hold a file for one read, so a writer retries, briefly.
REPLACE_TRIES = 10 if sys.platform == "win32" else 1
REPLACE_WAIT = 0.02  # seconds, times the try's number: under a second over all tries


def private_dir(path: str, tighten: bool = True) -> str:
    """Create `path` and any missing parents as 0700, whatever the umask, and return it.

    `tighten` also makes an existing `path` 0700 (our own directories); a directory of another
    program's (~/.docker) keeps its mode."""
    missing = []
    head = path
    while head and not os.path.isdir(head):
        missing.append(head)
        head = os.path.dirname(head)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # another process made it first
        if os.name == "posix":
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    if tighten and os.name == "posix" and os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` (bytes): temp file, fsync, rename."""
    import contextlib
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-", suffix=".part")
    try:
        # mkstemp already creates 0600; chmod only matters for other modes, and only on POSIX.
        if sys.platform != "win32" and mode != 0o600:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _replace(tmp: str, path: str) -> None:
    """os.replace, retried on Windows while a reader holds `path` open (REPLACE_TRIES)."""
    for attempt in range(1, REPLACE_TRIES + 1):
        try:
            os.replace(tmp, path)
            return
        except PermissionError:
            if attempt == REPLACE_TRIES:
                raise
            import time

            time.sleep(REPLACE_WAIT * attempt)


def write_json(path: str, obj: object, mode: int = 0o600) -> None:
    import json

    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n", mode)


def read_json(path: str) -> dict[str, Any] | None:
    """Return the JSON object in `path`, or None if missing, unreadable or not an object."""
    try:
        with open(path, "rb") as f:
            obj = fastjson.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


class Lock:
    """An exclusive lock on `path` (a sidecar lock file) for a `with` block."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(self.fd, msvcrt.LK_LOCK, 1)
            else:
                import fcntl  # here, not at the top: reads never lock

                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
        self.fd = None


def check_private(path: str, what: str) -> os.stat_result:
    """The file's stat; a ConfigError when it is missing or other users can write it."""
    from quay_cred_helper.errors import ConfigError

    try:
        found = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or type(exc).__name__}") from None
    if found.st_mode & 0o022:
        raise ConfigError(f"refusing the {what} {path}: other users can write it", f"chmod go-w {path}")
    return found
