"""Credentials at rest: secrets in the OS keyring, usernames in the index.

One keyring entry per registry key (service "quay-cred-helper", username the
key) holding {"username", "secret"} as JSON, so the pair is replaced in one
keyring write. The index changes after the keyring on store and before it on
erase, so a crash in between leaves at worst a credential that `get` finds
and `list` does not show, never an index entry without a secret.
"""

from quay_cred_helper import fastjson, log
from quay_cred_helper.backend import Keyring
from quay_cred_helper.errors import KeyringError, NotFound
from quay_cred_helper.index import ANONYMOUS, Index

SERVICE = "quay-cred-helper"


class KeyringStore:
    def __init__(self, index=None, keyring=None):
        self.index = index or Index()
        self.keyring = keyring or Keyring()

    def add(self, key, server, username, secret):
        value = fastjson.dumps_strings({"username": username, "secret": secret})
        entry = self.index.entry(server, username, secret)  # the slow hash, outside the lock
        self.keyring.backend()  # and loading keyring: only the write itself happens under the lock
        with self.index.lock():
            self.keyring.set(SERVICE, key, value)
            self.index.put(key, entry)

    def get(self, key):
        value = self.keyring.get(SERVICE, key)
        if value is None:
            raise NotFound()
        try:
            entry = fastjson.loads(value)
            log.secret(entry["secret"])
            return entry["username"], entry["secret"]
        except (ValueError, KeyError, TypeError):
            raise KeyringError(f"keyring entry for {key} is not ours or is damaged: store it again") from None

    def delete(self, key):
        self.keyring.backend()
        with self.index.lock():
            in_index = self.index.get(key) is not None
            if in_index:
                self.index.remove(key)
            existed = self.keyring.delete(SERVICE, key)
        if not (existed or in_index):
            raise NotFound()

    def list(self):
        return {e.get("server") or key: e["username"] for key, e in self.index.entries().items()}


def credentials_for(key):
    """(identity, credentials) for a token request: the index's fingerprint, and a
    callable reading the keyring only on a token-cache miss; anonymous if none stored."""
    entry = Index().get(key)
    if not entry:
        return ANONYMOUS, None

    def credentials():
        try:
            return KeyringStore().get(key)
        except NotFound:
            return None

    return entry.get("identity") or ANONYMOUS, credentials
