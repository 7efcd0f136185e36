"""A robot whose token the job holds: `robot_token_env`, `robot_token_file`, or `login --token-from`.

Nothing is stored and no keyring is needed: store.py exchanges the token from the job's environment
or file for a one-hour JWT, cached under the identity this module gives, which holds no secret.
Loaded only for such robots: `list`, and a user's or a keyring robot's `get`, never import it
(tests/test_startup.py). THE reader and writer of a robot token file: the helper, the kubelet
provider (kubelet/sources.py) and `robot rotate` all go through `read_token_file`, `token_of` and
`write_token_file` (files.check_private, sources.MAX_TOKEN, typed errors).
"""

from __future__ import annotations

import os

from quay_cred_helper import files, log, paths, sources
from quay_cred_helper.errors import InputError
from quay_cred_helper.registry.cache import file_identity
from quay_cred_helper.registry.cache import identity as cache_identity

WHAT = "robot token file"
FILE_FIX = "check the path, and that the job writes its secret there"
EMPTY_FIX = "write the robot's token into it (Quay: Robot Accounts > the robot)"
KEY_FILE = "robot-token.key"  # in the cache dir: the per-user key of RobotToken's identities


class RobotToken:
    """A robot whose token the job holds, in an environment variable (`env:NAME`) or a file (`file:PATH`).

    Nothing is stored and the token is never written anywhere. Its JWT is cached under an identity
    that holds no secret and changes when the token does, so a new token never gets the old one's JWT:
    for a file, its path and stat (device, inode, mtime, size), as the kubelet provider knows a robot
    token file (a cached `get` reads no secret); for a variable, which cannot be stat'ed, a keyed
    BLAKE2b of the token (a MAC: without the key it confirms no guess) under a random per-user key in
    the private cache dir, which goes when the cache goes."""

    __slots__ = ("robot", "source")

    def __init__(self, robot: str, source: str) -> None:
        self.robot, self.source = robot, source

    @property
    def kind(self) -> str:
        return self.source.partition(":")[0]

    @property
    def where(self) -> str:
        return self.source.partition(":")[2]

    def identity(self) -> str:
        """The token cache's identity for the robot's JWT (a variable is read, a file only checked)."""
        if self.kind == "file":
            with self.checked() as checked:
                return file_identity(self.robot, checked.stat)  # the provider's identity for such a file
        return cache_identity("robotenv", self.robot, self.where, _keyed_digest(self.read()))

    def read(self) -> str:
        """The robot token, from its source now."""
        if self.kind == "env":
            return sources.read_variable(
                (self.where,),
                f"the robot token variable {self.where} is not set or empty",
                f"give the job the robot's token as the secret variable {self.where} (docs/ci.md)",
            )
        return read_token_file(self.where)

    def checked(self) -> files.Private:
        """The token file, opened and checked as the kubelet provider checks its files (files.check_private)."""
        return sources.checked_file(self.where, WHAT, FILE_FIX)


def read_token_file(path: str) -> str:
    """A robot token file's token: checked (files.check_private: a ConfigError), at most MAX_TOKEN; a
    SourceError when it is missing or empty."""
    return sources.read_file(path, WHAT, FILE_FIX, EMPTY_FIX)


def token_of(checked: files.Private) -> str:
    """The token of a robot token file opened by RobotToken.checked(), read through that descriptor."""
    return sources.token_of(checked, EMPTY_FIX)


def write_token_file(path: str, token: str) -> None:
    """Replace a robot token file (through a symlink, at its target): 0600, fsynced, renamed into place."""
    files.write_secret(os.path.realpath(path), token, WHAT)


def robot_token_source(spec: str) -> str:
    """`env:NAME` or `file:PATH` (made absolute: the index outlives the working directory); InputError else."""
    kind, _, rest = spec.partition(":")
    if kind == "env" and rest:
        return spec
    if kind == "file" and rest:
        return "file:" + os.path.abspath(rest)
    raise InputError(f"unknown robot token source {spec!r}", "use env:NAME or file:PATH")


def _keyed_digest(secret: str) -> str:
    """BLAKE2b of `secret` keyed with this user's random key (builtin _blake2: hashlib loads OpenSSL)."""
    try:
        from _blake2 import blake2b
    except ImportError:  # pragma: no cover - other Pythons
        from hashlib import blake2b
    return blake2b(secret.encode(), key=_user_key(), digest_size=16).hexdigest()


def _user_key() -> bytes:
    """The per-user key, made once (0600 in the 0700 cache dir): created atomically, the first process's
    key wins and every other process reads the winner's, so parallel `get`s on a fresh runner share one
    identity, one lock and one exchange. If it cannot be written (a read-only home), a key for this
    process only: then nothing cached is ever found again, and each `get` makes its own exchange."""
    path = os.path.join(paths.cache_dir(), KEY_FILE)
    found = _read_key(path)
    if found is not None:
        return found
    key = os.urandom(32)
    try:
        made = os.path.join(files.private_dir(paths.cache_dir()), KEY_FILE)
        try:
            _create(made, key.hex().encode())
        except FileExistsError:  # another process made it first: its key is the key
            found = _read_key(path)
            if found is not None:
                return found
            files.write_atomic(made, key.hex().encode())  # a damaged key file: replaced, as it always was
    except OSError as exc:
        log.debug("cannot keep the robot token key in %s: %s", path, type(exc).__name__)
    return key


def _read_key(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            found = bytes.fromhex(f.read(65).decode("ascii", "replace"))
    except (OSError, ValueError):
        return None
    return found if len(found) == 32 else None


def _create(path: str, data: bytes) -> None:
    """Create `path` holding `data`, whole or not at all: written to a temporary file, then linked into
    place (link, unlike rename, never replaces: FileExistsError when another process won)."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
