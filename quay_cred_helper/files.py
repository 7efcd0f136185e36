"""Private files: atomic replacement, inter-process locks, and files only root or we can change.

Everything we write (index, token cache, config) goes through here so a crash
at any instant leaves either the old file or the new one, never a mix, and no
file is ever readable by other users whatever the umask. Reads are on the hot
path, so the modules only writes need (tempfile, json) are imported there.

On Windows, file modes mean nothing but read-only: privacy comes from the user
profile's ACL (%LOCALAPPDATA%, %USERPROFILE%\\.docker), so modes are not set there.
`check_private` opens a file the kubelet provider trusts (its config, a robot
token, a CA bundle) and checks it as sshd's StrictModes does.
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


def write_secret(path: str, text: str, what: str) -> None:
    """Replace `path` (a `what`: "robot token file") with `text` and a newline, 0600 (write_atomic); a
    ConfigError naming it when it cannot be written."""
    try:
        write_atomic(path, text.encode() + b"\n")
    except OSError as exc:
        from quay_cred_helper.errors import ConfigError

        raise ConfigError(f"cannot write the {what} {path}: {exc.strerror or type(exc).__name__}") from None


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


class LockTimeout(Exception):
    """The lock was not had within the time given."""


class Lock:
    """An exclusive lock on `path` (a sidecar lock file) for a `with` block: waited for without limit, or
    for at most `timeout` seconds (then LockTimeout), polling so that the wait can end."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.fd: int | None = None

    def __enter__(self) -> Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if self.timeout is None:
                _lock(self.fd, wait=True)
            else:
                _poll(self.fd, self.timeout)
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
        self.fd = None


def _lock(fd: int, wait: bool) -> bool:
    """Take the lock on `fd`; without `wait`, False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt
        import time

        while True:  # LK_LOCK gives up after ten tries a second apart: wait as flock does, polling
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not wait:
                    return False
                time.sleep(0.05)
    import fcntl  # here, not at the top: reads never lock

    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _poll(fd: int, timeout: float) -> None:
    """Try the lock until `timeout` seconds have passed: short sleeps, growing to 50 ms."""
    import time

    ends = time.monotonic() + timeout
    pause = 0.005
    while not _lock(fd, wait=False):
        left = ends - time.monotonic()
        if left <= 0:
            raise LockTimeout(f"lock {fd} not had within {timeout:g} s")
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)


MAX_PRIVATE = 1 << 20  # config files, tokens and CA bundles are far smaller


class Private:
    """A file opened and checked by check_private: read it through this descriptor, then close it
    (a `with` block closes it)."""

    __slots__ = ("path", "what", "fd", "stat")

    def __init__(self, path: str, what: str, fd: int, found: os.stat_result) -> None:
        self.path, self.what, self.fd, self.stat = path, what, fd, found

    def read(self, limit: int = MAX_PRIVATE) -> bytes:
        """The whole file (from its start), at most `limit` bytes; a ConfigError if it holds more."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks, size = [], 0
        while True:
            chunk = os.read(self.fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                from quay_cred_helper.errors import ConfigError

                raise ConfigError(f"refusing the {self.what} {self.path}: more than {limit // 1024} KiB")
        return b"".join(chunks)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Private:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_private(path: str, what: str) -> Private:
    """The file opened, and checked on that descriptor as sshd's StrictModes checks: a regular file,
    owned by root or by us, that neither group nor others can write, in directories up to / that are
    each owned by root or by us and writable by neither group nor others (root's sticky directories,
    /tmp, aside). A ConfigError when it is missing or fails the check. On the kubelet provider's cached
    path: one open, one fstat, a realpath and a stat per directory."""
    from quay_cred_helper.errors import ConfigError

    real = os.path.realpath(path)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        found = os.fstat(fd)
        problem = _unsafe(path, real, found)
    except BaseException:
        os.close(fd)
        raise
    if problem is not None:
        os.close(fd)
        raise ConfigError(f"refusing the {what} {path}: {problem[0]}", problem[1])
    return Private(path, what, fd, found)


def _unsafe(path: str, real: str, found: os.stat_result) -> tuple[str, str] | None:
    """(what is wrong, the fix) with the opened file `found` (`path`, really at `real`) and the directories
    above it."""
    import stat

    if not stat.S_ISREG(found.st_mode):
        return "not a regular file", "point the setting at the file itself"
    if sys.platform == "win32":
        return None  # no owners or modes to speak of: the profile's ACL keeps the file private
    me = os.geteuid()
    owner = "root" if me == 0 else str(me)
    if found.st_uid not in (0, me):
        return f"it is owned by uid {found.st_uid}, not {owner}", f"chown {owner} {path}"
    if found.st_mode & 0o022:
        return "other users can write it", f"chmod go-w {path}"
    return unsafe_directories(os.path.dirname(real))


def unsafe_directories(directory: str, name: str = "its directory") -> tuple[str, str] | None:
    """(what is wrong, the fix) when a user other than root or us can change `directory` or one above it
    (root's sticky directories, /tmp, aside); None when none can. `name` introduces the directory."""
    import stat

    if sys.platform == "win32":
        return None
    me = os.geteuid()
    owner = "root" if me == 0 else str(me)
    while True:
        above = os.stat(directory)
        sticky = above.st_uid == 0 and above.st_mode & stat.S_ISVTX
        if above.st_uid not in (0, me):
            return f"{name} {directory} is owned by uid {above.st_uid}", f"chown {owner} {directory}"
        if above.st_mode & 0o022 and not sticky:
            return f"other users can write {name} {directory}", f"chmod go-w {directory}"
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
