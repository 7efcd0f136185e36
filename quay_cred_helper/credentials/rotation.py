"""Secrets of a robot's rotation: the OAuth token for Quay's API, and a rotation's staged new token.

Keyring entries, beside the registry credentials (service "quay-cred-helper", username the registry
key, see keyring_store.py), under usernames that no registry key can be (a port is digits):

    api:<key>        {"token", "stored"}          the OAuth token for Quay's API at that registry
    rotating:<key>   {"robot", "token", "before", "started"}
                                                  a rotation under way: `token` is "" until Quay has
                                                  answered, `before` a digest of the token it replaces

A rotation whose new token goes only to a `robot_token_file` (a node, maybe without a keyring) is
staged beside that file instead, in `<file>.rotating`: 0600, in the file's own directory, so the new
token is never where the old one could not be. A keyring destination is staged in the keyring, never
in a file: a staging file would put the secret on disk, which the keyring is there to avoid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass

from quay_cred_helper import files, log, paths
from quay_cred_helper.credentials.keyring_backend import Keyring
from quay_cred_helper.credentials.keyring_store import SERVICE
from quay_cred_helper.errors import KeyringError

API_TOKEN = "api:"
ROTATING = "rotating:"


def digest(token: str) -> str:
    """Tells two tokens apart without keeping either (a robot token is 64 random characters)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


class ApiTokens:
    """OAuth tokens for Quay's API, one per registry, in the keyring."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def get(self, key: str) -> tuple[str, float] | None:
        """(token, when it was stored; 0 if unknown), or None."""
        value = self.keyring.get(SERVICE, API_TOKEN + key)
        if value is None:
            return None
        data = _object(value)
        token, stored = data.get("token"), data.get("stored")
        if not isinstance(token, str) or not token:
            raise KeyringError(f"keyring entry for the API token of {key} is damaged", "store it again")
        log.secret(token)
        return token, float(stored) if isinstance(stored, (int, float)) and not isinstance(stored, bool) else 0.0

    def set(self, key: str, token: str) -> None:
        self.keyring.set(SERVICE, API_TOKEN + key, json.dumps({"token": token, "stored": int(time.time())}))

    def delete(self, key: str) -> bool:
        return self.keyring.delete(SERVICE, API_TOKEN + key)


@dataclass(frozen=True)
class Pending:
    """A rotation under way: `token` is "" until Quay answered; `before` tells whether it ever did."""

    robot: str
    token: str
    before: str
    started: float

    def to_json(self) -> str:
        return json.dumps({"robot": self.robot, "token": self.token, "before": self.before, "started": self.started})

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Pending | None:
        robot, token, before, started = (data.get(k) for k in ("robot", "token", "before", "started"))
        if not isinstance(robot, str) or not isinstance(token, str) or not isinstance(before, str):
            return None
        if token:
            log.secret(token)
        return cls(robot, token, before, float(started) if isinstance(started, (int, float)) else 0.0)


class KeyringStaging:
    """A rotation staged in the keyring (its destination is the keyring)."""

    def __init__(self, keyring: Keyring, key: str) -> None:
        self.keyring = keyring
        self.username = ROTATING + key

    @property
    def where(self) -> str:
        return f"the keyring ({SERVICE}, {self.username})"

    def load(self) -> Pending | None:
        """The rotation staged here; None also for an entry that is not ours (it holds no token we can use)."""
        value = self.keyring.get(SERVICE, self.username)
        try:
            return Pending.from_json(_object(value)) if value is not None else None
        except KeyringError:
            return None

    def save(self, pending: Pending) -> None:
        self.keyring.set(SERVICE, self.username, pending.to_json())

    def clear(self) -> None:
        self.keyring.delete(SERVICE, self.username)


class FileStaging:
    """A rotation staged beside its robot_token_file: `<file>.rotating`, 0600, replaced atomically."""

    def __init__(self, token_file: str) -> None:
        self.path = os.path.realpath(token_file) + ".rotating"

    @property
    def where(self) -> str:
        return self.path

    def load(self) -> Pending | None:
        data = files.read_json(self.path)
        return Pending.from_json(data) if data is not None else None

    def save(self, pending: Pending) -> None:
        files.write_secret(self.path, pending.to_json(), "rotation staging file")

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def lock() -> files.Lock:
    """Held around a whole rotation: two at once would store whichever token Quay made first."""
    return files.Lock(os.path.join(files.private_dir(paths.config_dir()), "rotate.lock"))


def _object(value: str) -> dict[str, object]:
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise KeyringError("a keyring entry of quay-cred-helper is not ours or is damaged", "store it again")
    return data
