"""Bearer tokens for a registry: from the cache, or from /v2/auth once per key.

A token is cached under (registry, identity, sorted scopes), where identity
fingerprints the credential (see credentials.index.identity) so a new
password never gets an old token. Concurrent cold calls for one key take a
lock and re-read the cache, so N of them make one request. The wait for the
lock counts against the command's deadline, and a fetch that fails leaves
its error for the calls that waited, so they fail at once with it instead of
each repeating an exchange that just failed. This module does not import
httpx: a warm `token` needs none; the session is built on a miss.
"""

from __future__ import annotations

import contextlib
import time

from quay_cred_helper import log
from quay_cred_helper.credentials.index import ANONYMOUS
from quay_cred_helper.errors import HelperError, NotFound, RegistryError
from quay_cred_helper.files import LockTimeout
from quay_cred_helper.registry.deadline import Deadline, Deadlines, exceeded

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import httpx

    from quay_cred_helper.config import Settings
    from quay_cred_helper.registry.cache import Token, TokenCache
    from quay_cred_helper.registry.challenge import Challenge
    from quay_cred_helper.registry.session import Session

    Credentials = Callable[[], "tuple[str, str] | None"]
    # (registry key, its settings as bounded) -> the OIDC token, read within those bounds
    OIDCSource = Callable[[str, Settings], str]


class TokenExchange:
    """The exchange at a registry's token realm, with the cache in front of it."""

    def __init__(
        self,
        cache: TokenCache,
        settings: Callable[[str], Settings],
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
        before_network: Callable[[], None] | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.cache = cache
        self.settings = settings  # key -> Settings (config.Config.settings, as the entry point bounds them)
        self.client = client  # tests pass one with a mock transport; else one per request
        self.sleep = sleep or time.sleep
        # Called before the first connection of each session: the kubelet provider arms its watchdog there.
        self.before_network = before_network
        # Each registry's budget in this command, shared by every session (the entry point's context's).
        self.deadlines = deadlines or Deadlines()

    def deadline(self, key: str) -> Deadline:
        """The command's budget for `key`: started by its first use, shared by everything after."""
        return self.deadlines.of(key, self.settings(key).deadline)

    def get(
        self,
        key: str,
        identity: str = ANONYMOUS,
        scopes: Sequence[str] = (),
        credentials: Credentials | None = None,
        refresh: bool = False,
    ) -> Token | None:
        """A fresh Token, or None when the registry needs none (200 on /v2/).

        `credentials` is called, only on a cache miss, for (username, secret);
        None (or no callable) asks anonymously. `refresh` skips the cache (a
        token the registry just refused), but still stores the new token.
        """
        scopes = sorted(set(scopes))

        def obtain() -> Token | None:
            username, secret = (credentials() if credentials else None) or (None, None)
            return self._from_realm(key, username, secret, scopes)

        return self._single_flight(key, identity, scopes, refresh, obtain)

    def federated(self, key: str, identity: str, robot: str, oidc_token: OIDCSource) -> Token:
        """A keyless robot's Quay JWT: from the cache, else one exchange of `oidc_token(key, settings)`.

        The OIDC token is read on a miss only, and before the single-flight lock: a source that is slow
        (a CI's token service) holds back no other process, and its time counts against the same
        deadline as the exchange that follows."""
        hit = self.cache.load(key, identity, [])
        if hit:
            log.debug("token for %s [] from the cache", key)
            return hit
        self.deadline(key)  # started now: the exchange below gets what the token's source leaves of it
        presented = oidc_token(key, self.settings(key))

        def obtain() -> Token:
            from quay_cred_helper.registry import federation  # httpx: only when an exchange is due

            with self.opened(key) as session:
                return federation.exchange(session, self.challenge(session), robot, presented)

        token = self._single_flight(key, identity, [], False, obtain)
        assert token is not None
        return token

    def made(self, key: str, identity: str, obtain: Callable[[], Token]) -> Token:
        """A token of the caller's making (an SSO ID token, refreshed): cached, else `obtain()`'s, under the
        same single flight and deadline as an exchange."""
        token = self._single_flight(key, identity, [], False, obtain)
        assert token is not None
        return token

    def _single_flight(
        self, key: str, identity: str, scopes: list[str], refresh: bool, obtain: Callable[[], Token | None]
    ) -> Token | None:
        """The cached token, else `obtain()`'s, obtained by one process at a time and cached.

        The wait for the lock is part of the command's deadline for the registry; a failure is left
        for those waiting (cache.fail), who then raise it instead of obtaining again."""
        hit = None if refresh else self.cache.load(key, identity, scopes)
        if hit:
            log.debug("token for %s %s from the cache", key, scopes)
            return hit
        deadline = self.deadline(key)
        waiting_since = time.time()  # the cache's clock: wall-clock time, shared between processes
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self.cache.lock(key, identity, scopes, timeout=max(deadline.remaining(), 0.0)))
            except LockTimeout:
                log.debug("another process held the token lock for %s past the deadline", key)
                raise exceeded(key, self.settings(key)) from None
            # Another process may have fetched it while we waited for the lock, or failed to.
            hit = None if refresh else self.cache.load(key, identity, scopes)
            if hit:
                return hit
            failure = self.cache.failed(key, identity, scopes, since=waiting_since)
            if failure is not None:
                log.debug("the fetch this call waited for failed: %s", failure)
                raise failure
            try:
                token = obtain()
            except HelperError as exc:
                if not isinstance(exc, NotFound):
                    with contextlib.suppress(OSError):  # a cache that cannot be written must not hide the error
                        self.cache.fail(key, identity, scopes, exc)
                raise
            if token is not None:
                self.cache.save(key, identity, scopes, token)
            return token

    @contextlib.contextmanager
    def opened(self, key: str) -> Iterator[Session]:
        """A session to the registry: on the injected client, else on a client of its own, closed after;
        within the command's deadline for the registry."""
        from quay_cred_helper.registry.session import Session
        from quay_cred_helper.registry.transport import make_client

        if self.before_network is not None:
            self.before_network()
        settings = self.settings(key)
        client = self.client or make_client(settings)
        try:
            yield Session(client, key, settings, self.sleep, self.deadlines.of(key, settings.deadline))
        finally:
            if client is not self.client:
                client.close()

    def challenge(self, session: Session) -> Challenge:
        """How the registry wants to be authenticated: remembered, else asked at /v2/."""
        return self.cache.load_challenge(session.key) or self.rediscover(session)

    def _from_realm(self, key: str, username: str | None, secret: str | None, scopes: Sequence[str]) -> Token | None:
        with self.opened(key) as session:
            remembered = self.cache.load_challenge(key)
            found = remembered or self.rediscover(session)
            if found.realm is None:
                return None
            try:
                return session.fetch_token(found, username, secret, scopes)
            except RegistryError:
                self.cache.forget_challenge(key)  # the realm may have moved: ask /v2/ again
                if remembered is None:
                    raise
                fresh = self.rediscover(session)
                # Only a different realm gets the credentials again: a refused password is never resent
                # to the same place (Quay doubles its lockout with every failure).
                if fresh == remembered or fresh.realm is None:
                    raise
                return session.fetch_token(fresh, username, secret, scopes)

    def rediscover(self, session: Session) -> Challenge:
        found = session.discover()
        self.cache.save_challenge(session.key, found)
        return found
