"""The helper's store: what `get` answers, robots included.

For a robot account (`org+name`) `get` exchanges the stored long-lived robot
token at /v2/auth for a one-hour JWT and hands out only that: Quay accepts a
robot's JWT (aud = its SERVER_HOSTNAME) as the robot's password. A cached JWT
is found through the index alone, without the keyring and without httpx.
Users, `$app`, `$oauthtoken` and `<token>` entries get their stored secret.
"""

import sys

from quay_cred_helper import config, log
from quay_cred_helper.errors import Unreachable
from quay_cred_helper.index import identity
from quay_cred_helper.names import is_robot

_NO_SALT = "00" * 16  # identity for a credential whose index entry was lost


class HelperStore:
    def __init__(self, inner, cache):
        self.inner = inner  # the KeyringStore
        self.index = inner.index
        self.cache = cache

    def add(self, key, server, username, secret):
        self.inner.add(key, server, username, secret)
        self.cache.drop(key)

    def delete(self, key):
        self.cache.drop(key)
        self.inner.delete(key)

    def list(self):
        return self.inner.list()

    def get(self, key):
        entry = self.index.get(key) or {}
        fingerprint = entry.get("identity") if isinstance(entry.get("identity"), str) else None
        if fingerprint and is_robot(entry["username"]) and config.load(key).robot_exchange:
            hit = self.cache.load(key, fingerprint, [])
            if hit:
                log.debug("robot JWT for %s from the cache", key)
                return entry["username"], hit["token"]
        username, secret = self.inner.get(key)
        if not is_robot(username) or not config.load(key).robot_exchange:
            return username, secret
        if entry.get("username") != username or not fingerprint:
            fingerprint = identity(username, secret, _NO_SALT)  # the index entry is missing or stale
        from quay_cred_helper.tokens import Tokens  # httpx: only on a cache miss

        try:
            token = Tokens(self.cache).get(key, fingerprint, credentials=lambda: (username, secret))
        except Unreachable as exc:
            # The client will try the robot token itself; it may reach the registry yet.
            log.debug("robot exchange for %s failed: %s", key, exc)
            print(f"docker-credential-quay: {exc}; returning the stored robot token", file=sys.stderr)
            return username, secret
        return username, token.token if token else secret


def open_store():
    """The store behind `docker-credential-quay` and `quay-cred-helper login/logout`."""
    from quay_cred_helper.cache import open_cache
    from quay_cred_helper.store import KeyringStore

    return HelperStore(KeyringStore(), open_cache())
