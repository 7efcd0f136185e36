"""Private files: atomic replacement and inter-process locks.

Everything we write (index, token cache, config) goes through here so a crash
at any instant leaves either the old file or the new one, never a mix, and no
file is ever readable by other users whatever the umask.
"""

import contextlib
import json
import os
import tempfile

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


def private_dir(path):
    """Create `path` (and parents) as 0700 and return it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.name == "posix" and os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_atomic(path, data, mode=0o600):
    """Replace `path` with `data` (bytes): temp file, fsync, rename."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        # mkstemp already creates 0600; chmod only matters for other modes.
        if mode != 0o600:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path, obj, mode=0o600):
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n", mode)


def read_json(path):
    """Return the parsed JSON object in `path`, or None if missing or unreadable."""
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on `path` (a sidecar lock file) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
