"""The index: which registries have credentials, and under which username.

`list` must answer without opening the keyring (docker runs it on every
build), and a robot's cached token must be found without it either, so the
non-secret half of each credential is kept here, in a 0600 JSON file.
"""

import os

from quay_cred_helper import files, paths

VERSION = 1
ANONYMOUS = "anonymous"  # the identity of token requests made without credentials


def identity(username, secret, salt):
    """A salted, slow fingerprint of a credential.

    Token-cache keys include it so a new password never gets an old token. It
    is computed when storing, so reading the cache needs no keyring; the slow
    hash keeps a stolen index from being a cheap password oracle.
    """
    import hashlib  # only when storing: about 2 ms of OpenSSL loading

    material = username.encode() + b"\0" + secret.encode()
    return hashlib.pbkdf2_hmac("sha256", material, bytes.fromhex(salt), 50_000).hex()[:32]


class Index:
    def __init__(self, path=None):
        self.path = path or paths.index_file()

    def entries(self):
        """{key: {"server", "username", "identity"}}; empty if missing or corrupt."""
        data = files.read_json(self.path)
        if not data or data.get("version") != VERSION:
            return {}
        entries = data.get("registries")
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(v, dict) and isinstance(v.get("username"), str)}

    def get(self, key):
        return self.entries().get(key)

    def put(self, key, server, username, secret):
        salt = os.urandom(16).hex()
        entry = {
            "server": server,
            "username": username,
            "salt": salt,
            "identity": identity(username, secret, salt),
        }
        self._update(lambda entries: entries.__setitem__(key, entry))

    def remove(self, key):
        self._update(lambda entries: entries.pop(key, None))

    def _update(self, change):
        files.private_dir(os.path.dirname(self.path))
        # Read-modify-write under a lock: concurrent stores must not lose entries.
        with files.Lock(self.path + ".lock"):
            entries = self.entries()
            change(entries)
            files.write_json(self.path, {"version": VERSION, "registries": entries})
