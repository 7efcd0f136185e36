"""The keyring store: secrets in the OS keyring, usernames in the index.

One keyring entry per registry key (service "quay-cred-helper", username the
key) holding {"username", "secret"} as JSON, so the pair is replaced in one
keyring write. The index changes after the keyring on store and before it on
erase, so a crash in between leaves at worst a credential that `get` finds
and `list` does not show, never an index entry without a secret.
"""

from __future__ import annotations

from quay_cred_helper import fastjson, log
from quay_cred_helper.credentials.index import Index, IndexEntry
from quay_cred_helper.errors import KeyringError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from quay_cred_helper.credentials.keyring_backend import Keyring

SERVICE = "quay-cred-helper"


class KeyringStore:
    def __init__(self, index: Index, keyring: Keyring) -> None:
        self.index = index
        self.keyring = keyring

    def add(self, key: str, server: str, username: str, secret: str) -> None:
        value = fastjson.dumps_strings({"username": username, "secret": secret})
        entry = IndexEntry.new(server, username, secret, self.index.get(key))  # the slow hash, outside the lock
        self.keyring.backend()  # and loading keyring: only the write itself happens under the lock
        with self.index.lock():
            self.keyring.set(SERVICE, key, value)
            self.index.put(key, entry)

    def get(self, key: str) -> tuple[str, str]:
        value = self.keyring.get(SERVICE, key)
        if value is None:
            raise NotFound()
        try:
            entry = fastjson.loads(value)
            username, secret = entry["username"], entry["secret"]
            if not isinstance(username, str) or not isinstance(secret, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise KeyringError(f"keyring entry for {key} is not ours or is damaged", "store it again") from None
        log.secret(secret)
        return username, secret

    def delete(self, key: str) -> None:
        self.keyring.backend()
        with self.index.lock():
            in_index = self.index.get(key) is not None
            if in_index:
                self.index.remove(key)
            existed = self.keyring.delete(SERVICE, key)
        if not (existed or in_index):
            raise NotFound()

    def list(self) -> dict[str, str]:
        return self.index.servers()
