"""Credential sources: what a client gets for a registry, and what a token request sends.

For a robot account (`org+name`) `get` exchanges the stored long-lived robot
token at /v2/auth for a one-hour JWT and hands out only that: Quay accepts a
robot's JWT (aud = its SERVER_HOSTNAME) as the robot's password. A cached JWT
is found through the index alone, without the keyring and without httpx.
Users, `$app`, `$oauthtoken` and `<token>` entries get their stored secret.

A keyless robot (login --oidc, or `robot` and `oidc` in the config file) has
nothing stored: `get` exchanges the job's or pod's own OIDC token through
Quay's robot federation for a one-hour robot JWT, cached the same way.
"""

from __future__ import annotations

from quay_cred_helper import log
from quay_cred_helper.credentials.index import ANONYMOUS, IndexEntry, identity
from quay_cred_helper.errors import NotFound, Unreachable
from quay_cred_helper.names import is_robot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from quay_cred_helper.config import Config
    from quay_cred_helper.contracts import TokenCache
    from quay_cred_helper.credentials.index import Index
    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.registry.cache import Token
    from quay_cred_helper.registry.tokens import Credentials, Tokens

_NO_SALT = "00" * 16  # identity for a credential whose index entry was lost


class Keyless:
    """A keyless robot: its name, where its OIDC token comes from, the audience to ask for."""

    __slots__ = ("robot", "source", "audience")

    def __init__(self, robot: str, source: str, audience: str) -> None:
        self.robot, self.source, self.audience = robot, source, audience

    def identity(self) -> str:
        """The token cache's identity for the robot's Quay JWT."""
        from quay_cred_helper.registry.cache import fingerprint  # loaded already wherever a JWT is looked up

        return fingerprint("keyless", self.robot, self.source, self.audience)


def federated_token(
    cache: TokenCache,
    tokens: Callable[[], Tokens],
    key: str,
    robot: str,
    identity: str,
    oidc_token: Callable[[], str],
) -> Token:
    """A keyless robot's Quay JWT from `cache` (nothing else touched), else one exchange of `oidc_token()`."""
    hit = cache.load(key, identity, [])
    if hit:
        log.debug("keyless robot JWT for %s from the cache", key)
        return hit
    return tokens().federated(key, identity, robot, oidc_token)


def read_oidc(keyless: Keyless) -> Callable[[], str]:
    """A reader of the keyless robot's OIDC token from its source, run only when an exchange is due."""

    def read() -> str:
        from quay_cred_helper import oidc  # hot path: only when an exchange is due
        from quay_cred_helper.config import Settings
        from quay_cred_helper.registry.session import make_client

        return oidc.read(keyless.source, keyless.audience, lambda: make_client(Settings()))

    return read


class ExchangingStore:
    """The helper's store (meets contracts.Store): the keyring store, with robots' secrets exchanged for JWTs."""

    def __init__(
        self,
        index: Index,
        config: Callable[[], Config],
        cache: Callable[[], TokenCache],
        keyring_store: Callable[[], KeyringStore],
        tokens: Callable[..., Tokens],
        warn: Callable[[str], None],
    ) -> None:
        self.index = index
        # Factories, each built on first use: `list` needs none of them, a cached `get` the config
        # and the cache, never the keyring or the exchange (httpx).
        self.config = config
        self.cache = cache
        self.keyring_store = keyring_store
        self.tokens = tokens
        self.warn = warn

    def add(self, key: str, server: str, username: str, secret: str) -> None:
        self.keyring_store().add(key, server, username, secret)
        self.cache().drop(key)

    def add_keyless(self, key: str, server: str, keyless: Keyless) -> None:
        """Record a keyless robot: the index alone, no keyring (a CI runner may have none)."""
        # No salt and no fingerprint: nothing secret is stored; the cache identity comes from Keyless.
        entry = IndexEntry(server, keyless.robot, "", "", keyless.source, keyless.audience)
        with self.index.lock():
            self.index.put(key, entry)
        self.cache().drop(key)

    def delete(self, key: str) -> None:
        self.cache().drop(key)
        entry = self.index.get(key)
        if entry is not None and entry.oidc:
            with self.index.lock():
                self.index.remove(key)
            return
        self.keyring_store().delete(key)

    def list(self) -> dict[str, str]:
        return self.index.servers()

    def keyless(self, key: str, entry: IndexEntry | None) -> Keyless | None:
        """The keyless robot for a registry (whose index entry the caller has read): recorded by
        login --oidc, else named in the config file."""
        if entry is not None:
            return Keyless(entry.username, entry.oidc, entry.audience) if entry.oidc else None
        settings = self.config().settings(key)
        return Keyless(settings.robot, settings.oidc, settings.audience) if settings.robot and settings.oidc else None

    def federated(self, key: str, keyless: Keyless, fresh: bool = False) -> Token:
        """The keyless robot's Quay JWT: cached, else one exchange of a freshly read OIDC token
        (`fresh`: always the exchange, and nothing cached: login and doctor verify with it)."""
        cache, tokens = self.cache(), self.tokens
        if fresh:
            from quay_cred_helper.registry.cache import NullCache  # hot path: only for login and doctor

            cache, tokens = NullCache(), lambda: self.tokens(NullCache())
        return federated_token(cache, tokens, key, keyless.robot, keyless.identity(), read_oidc(keyless))

    def token_credentials(self, key: str) -> tuple[str, Credentials | None]:
        """(identity, credentials) for a /v2/auth token request: the credential's fingerprint, and a
        callable that reads the keyring (or exchanges an OIDC token) only on a token-cache miss;
        anonymous when nothing is stored."""
        entry = self.index.get(key)
        keyless = self.keyless(key, entry)
        if keyless is not None:
            # Its /v2/auth tokens under an identity of their own: never the federation JWT itself.
            return keyless.identity() + "v2auth", lambda: (keyless.robot, self.federated(key, keyless).token)
        if entry is None:
            return ANONYMOUS, None

        def credentials() -> tuple[str, str] | None:
            try:
                return self.keyring_store().get(key)
            except NotFound:
                return None

        return entry.identity or ANONYMOUS, credentials

    def get(self, key: str) -> tuple[str, str]:
        entry = self.index.get(key)
        keyless = self.keyless(key, entry)
        if keyless is not None:
            # Never "not found" when the source is broken: the client would pull anonymously.
            return keyless.robot, self.federated(key, keyless).token
        fingerprint = entry.identity if entry else ""
        if entry and fingerprint and is_robot(entry.username) and self.config().settings(key).robot_exchange:
            hit = self.cache().load(key, fingerprint, [])
            if hit:
                log.debug("robot JWT for %s from the cache", key)
                return entry.username, hit.token
        username, secret = self.keyring_store().get(key)
        if not is_robot(username) or not self.config().settings(key).robot_exchange:
            return username, secret
        if entry is None or entry.username != username or not fingerprint:
            fingerprint = identity(username, secret, _NO_SALT)  # the index entry is missing or stale
        try:
            token = self.tokens().get(key, fingerprint, credentials=lambda: (username, secret))
        except Unreachable as exc:
            # The client will try the robot token itself; it may reach the registry yet.
            log.debug("robot exchange for %s failed: %s", key, exc)
            self.warn(f"{exc}; returning the stored robot token")
            return username, secret
        return username, token.token if token else secret
