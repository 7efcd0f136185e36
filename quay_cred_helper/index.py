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

    @staticmethod
    def entry(server, username, secret):
        salt = os.urandom(16).hex()
        return {"server": server, "username": username, "salt": salt, "identity": identity(username, secret, salt)}

    def lock(self):
        """Held around every change, and around the keyring write that goes with it, so that
        concurrent stores and erases can neither lose an entry nor leave index and keyring apart."""
        files.private_dir(os.path.dirname(self.path))
        return files.Lock(self.path + ".lock")

    def put(self, key, entry):
        """Call with lock() held."""
        self._write(dict(self.entries(), **{key: entry}))

    def remove(self, key):
        """Call with lock() held."""
        entries = self.entries()
        entries.pop(key, None)
        self._write(entries)

    def _write(self, entries):
        files.write_json(self.path, {"version": VERSION, "registries": entries})
