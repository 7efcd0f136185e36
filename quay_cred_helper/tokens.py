"""Bearer tokens for a registry: from the cache, or from /v2/auth once per key.

A token is cached under (registry, identity, sorted scopes), where identity
fingerprints the credential (see index.identity) so a new password never
gets an old token. Concurrent cold calls for one key take a lock and re-read
the cache, so N of them make one request.
"""

from quay_cred_helper import config, log
from quay_cred_helper.cache import open_cache
from quay_cred_helper.claims import Token
from quay_cred_helper.index import ANONYMOUS


class Tokens:
    def __init__(self, cache=None, client=None):
        self.cache = cache if cache is not None else open_cache()
        self.client = client  # tests pass one with a mock transport; else one per registry

    def get(self, key, identity=ANONYMOUS, scopes=(), credentials=None, refresh=False):
        """A fresh Token, or None when the registry needs none (200 on /v2/).

        `credentials` is called, only on a cache miss, for (username, secret);
        None (or no callable) asks anonymously. `refresh` skips the cache (a
        token the registry just refused), but still stores the new token.
        """
        scopes = sorted(set(scopes))
        hit = None if refresh else self._cached(key, identity, scopes)
        if hit:
            log.debug("token for %s %s from the cache", key, scopes)
            return hit
        with self.cache.lock(key, identity, scopes):
            # Another process may have fetched it while we waited for the lock.
            hit = None if refresh else self._cached(key, identity, scopes)
            if hit:
                return hit
            username, secret = (credentials() if credentials else None) or (None, None)
            token = self._fetch(key, username, secret, scopes)
            if token is not None:
                self.cache.save(key, identity, scopes, token.token, token.issued_at, token.expires_at, token.access)
            return token

    def _cached(self, key, identity, scopes):
        hit = self.cache.load(key, identity, scopes)
        return Token(hit["token"], hit["issued_at"], hit["expires_at"], hit.get("access") or []) if hit else None

    def challenge(self, session):
        """How the registry wants to be authenticated: remembered, else asked at /v2/."""
        found = self.cache.load_challenge(session.key)
        if found is None:
            found = session.discover()
            self.cache.save_challenge(session.key, found)
        return found

    def _fetch(self, key, username, secret, scopes):
        from quay_cred_helper.auth import Session, make_client  # httpx: only when a request is due

        settings = config.load(key)
        client = self.client or make_client(key, settings)
        try:
            session = Session(client, key, settings)
            found = self.challenge(session)
            if found["realm"] is None:
                return None
            try:
                return session.fetch_token(found, username, secret, scopes)
            except Exception:
                # The realm may have moved: the next call asks /v2/ again.
                self.cache.forget_challenge(key)
                raise
        finally:
            if self.client is None:
                client.close()


def verify(key, username, secret, client=None):
    """Check credentials with one token request (no scope: the cheapest); raises on refusal."""
    from quay_cred_helper.cache import NullCache

    Tokens(cache=NullCache(), client=client).get(key, credentials=lambda: (username, secret))
