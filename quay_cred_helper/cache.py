"""The token cache: one small JSON file per token, private, replaced atomically.

Layout: <user cache dir>/tokens/<registry>/<sha256 of identity and scopes>.json
plus `challenge.json` per registry (the realm and service learnt from /v2/),
so a cold call makes one request instead of two. Files that are corrupt or
of another version are ignored and overwritten, never fatal.
"""

import os
import time

from quay_cred_helper import files, paths

VERSION = 1
MAX_MARGIN = 300.0  # seconds before expiry at which a token stops being handed out


def margin(lifetime):
    """Hand out a token only while it has this much life left: min(300 s, 10% of its lifetime)."""
    return min(MAX_MARGIN, 0.1 * max(lifetime, 0.0))


def fresh(entry, now):
    expires, issued = entry.get("expires_at"), entry.get("issued_at")
    if not isinstance(expires, (int, float)) or not isinstance(issued, (int, float)):
        return False
    return now < expires - margin(expires - issued)


class TokenCache:
    def __init__(self, root=None, clock=time.time):
        self.root = root or os.path.join(paths.cache_dir(), "tokens")
        self.clock = clock

    def _dir(self, key):
        # Registry keys hold only [a-z0-9.-:[]]; ':' and brackets are not portable in names.
        return os.path.join(self.root, key.replace(":", "_").replace("[", "").replace("]", ""))

    def _path(self, key, identity, scopes):
        # identity is already a hex fingerprint (or "anonymous"); scopes, when
        # any, are hashed. The common case, no scope, needs no hashlib at all.
        name = identity if identity.isalnum() else ""
        if scopes or not name:
            import hashlib

            name += "-" + hashlib.sha256("\n".join([identity, *sorted(scopes)]).encode()).hexdigest()[:24]
        return os.path.join(self._dir(key), name + ".json")

    def load(self, key, identity, scopes):
        """The cached entry while fresh, else None."""
        entry = files.read_json(self._path(key, identity, scopes))
        if not entry or entry.get("version") != VERSION or not isinstance(entry.get("token"), str):
            return None
        return entry if fresh(entry, self.clock()) else None

    def save(self, key, identity, scopes, token, issued_at, expires_at, access=None):
        directory = files.private_dir(self._dir(key))
        files.private_dir(self.root)
        entry = {
            "version": VERSION,
            "token": token,
            "issued_at": issued_at,
            "expires_at": expires_at,
            "scopes": sorted(scopes),
            "access": access,
        }
        files.write_json(self._path(key, identity, scopes), entry)
        return directory

    def lock(self, key, identity, scopes):
        """Single flight: one process per token fetches; the others wait, then re-read."""
        files.private_dir(self._dir(key))
        return files.Lock(self._path(key, identity, scopes)[: -len(".json")] + ".lock")

    def load_challenge(self, key):
        entry = files.read_json(os.path.join(self._dir(key), "challenge.json"))
        if not entry or entry.get("version") != VERSION or not isinstance(entry.get("base"), str):
            return None
        return entry

    def save_challenge(self, key, challenge):
        files.private_dir(self._dir(key))
        files.write_json(os.path.join(self._dir(key), "challenge.json"), dict(challenge, version=VERSION))

    def forget_challenge(self, key):
        import contextlib

        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self._dir(key), "challenge.json"))

    def drop(self, key):
        """Forget every token and the challenge of a registry (logout, erase, new credentials)."""
        import shutil

        shutil.rmtree(self._dir(key), ignore_errors=True)


class NullCache:
    """Caching turned off (QUAY_CRED_HELPER_NO_CACHE=1): every call asks the registry."""

    def load(self, key, identity, scopes):
        return None

    def save(self, *args, **kwargs):
        return None

    def lock(self, key, identity, scopes):
        return _NoLock()

    def load_challenge(self, key):
        return None

    def save_challenge(self, key, challenge):
        return None

    def forget_challenge(self, key):
        return None

    def drop(self, key):
        TokenCache().drop(key)  # still forget tokens cached before caching was turned off


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def open_cache():
    from quay_cred_helper.config import cache_enabled

    return TokenCache() if cache_enabled() else NullCache()
