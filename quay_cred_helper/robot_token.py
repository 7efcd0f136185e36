"""A robot whose token the job holds: `robot_token_env`, `robot_token_file`, or `login --token-from`.

Nothing is stored and no keyring is needed: store.py exchanges the token from the job's environment
or file for a one-hour JWT, cached under the identity this module gives, which holds no secret.
Loaded only for such robots: `list` and the keyring's robots never import it.
"""

from __future__ import annotations

import os

from quay_cred_helper import files, log, paths
from quay_cred_helper.errors import InputError, SourceError
from quay_cred_helper.registry.cache import file_identity, fingerprint

MAX_TOKEN = 64 * 1024  # a robot token is 64 characters: a file over this is not one
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
            with self._checked() as checked:
                return file_identity(self.robot, checked.stat)  # the provider's identity for such a file
        return fingerprint("robotenv", self.robot, self.where, _keyed_digest(self.read()))

    def read(self) -> str:
        """The robot token, from its source now."""
        if self.kind == "env":
            token = os.environ.get(self.where, "").strip()
            if not token:
                raise SourceError(
                    f"the robot token variable {self.where} is not set or empty",
                    f"give the job the robot's token as the secret variable {self.where} (docs/ci.md)",
                )
        else:
            with self._checked() as checked:
                token = checked.read(MAX_TOKEN).decode("utf-8", "replace").strip()
            if not token:
                raise SourceError(
                    f"the robot token file {self.where} is empty",
                    "write the robot's token into it (Quay: Robot Accounts > the robot)",
                )
        log.secret(token)
        return token

    def _checked(self) -> files.Private:
        """The token file, opened and checked as the kubelet provider checks its files (files.check_private)."""
        try:
            os.stat(self.where)
        except OSError as exc:  # a source the job has not written (yet): its fix, not a config error
            raise SourceError(
                f"cannot read the robot token file {self.where}: {exc.strerror or type(exc).__name__}",
                "check the path, and that the job writes its secret there",
            ) from None
        return files.check_private(self.where, "robot token file")


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
    """The per-user key, made on first use (0600 in the 0700 cache dir). If it cannot be written (a
    read-only home), a key for this process only: then nothing cached is ever found again, and each
    `get` makes its own exchange."""
    path = os.path.join(paths.cache_dir(), KEY_FILE)
    try:
        with open(path, "rb") as f:
            found = bytes.fromhex(f.read(65).decode("ascii", "replace"))
        if len(found) == 32:
            return found
    except (OSError, ValueError):
        pass
    key = os.urandom(32)
    try:
        files.write_atomic(os.path.join(files.private_dir(paths.cache_dir()), KEY_FILE), key.hex().encode())
    except OSError as exc:
        log.debug("cannot keep the robot token key in %s: %s", path, type(exc).__name__)
    return key
