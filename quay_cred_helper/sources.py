"""Credential sources: what a client gets for a registry, and what a token request sends.

For a robot account (`org+name`) `get` exchanges the stored long-lived robot
token at /v2/auth for a one-hour JWT and hands out only that: Quay accepts a
robot's JWT (aud = its SERVER_HOSTNAME) as the robot's password. A cached JWT
is found through the index alone, without the keyring and without httpx.
Users, `$app`, `$oauthtoken` and `<token>` entries get their stored secret.
"""

from __future__ import annotations

from quay_cred_helper import log
from quay_cred_helper.credentials.index import ANONYMOUS, identity
from quay_cred_helper.errors import NotFound, Unreachable
from quay_cred_helper.names import is_robot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from quay_cred_helper.config import Config
    from quay_cred_helper.contracts import TokenCache
    from quay_cred_helper.credentials.index import Index
    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.registry.tokens import Credentials, Tokens

_NO_SALT = "00" * 16  # identity for a credential whose index entry was lost


class ExchangingStore:
    """The helper's store (meets contracts.Store): the keyring store, with robots' secrets exchanged for JWTs."""

    def __init__(
        self,
        index: Index,
        keyring_store: Callable[[], KeyringStore],
        cache: TokenCache,
        config: Config,
        tokens: Callable[[], Tokens],
        warn: Callable[[str], None],
    ) -> None:
        self.index = index
        # Factories: `list` and a cached `get` need neither the keyring nor the exchange (httpx).
        self.keyring_store = keyring_store
        self.tokens = tokens
        self.cache = cache
        self.config = config
        self.warn = warn

    def add(self, key: str, server: str, username: str, secret: str) -> None:
        self.keyring_store().add(key, server, username, secret)
        self.cache.drop(key)

    def delete(self, key: str) -> None:
        self.cache.drop(key)
        self.keyring_store().delete(key)

    def list(self) -> dict[str, str]:
        return self.index.servers()

    def get(self, key: str) -> tuple[str, str]:
        entry = self.index.get(key)
        fingerprint = entry.identity if entry else ""
        if entry and fingerprint and is_robot(entry.username) and self.config.settings(key).robot_exchange:
            hit = self.cache.load(key, fingerprint, [])
            if hit:
                log.debug("robot JWT for %s from the cache", key)
                return entry.username, hit.token
        username, secret = self.keyring_store().get(key)
        if not is_robot(username) or not self.config.settings(key).robot_exchange:
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


def token_credentials(
    index: Index, keyring_store: Callable[[], KeyringStore], key: str
) -> tuple[str, Credentials | None]:
    """(identity, credentials) for a token request: the index's fingerprint, and a callable
    reading the keyring only on a token-cache miss; anonymous if nothing is stored."""
    entry = index.get(key)
    if entry is None:
        return ANONYMOUS, None

    def credentials() -> tuple[str, str] | None:
        try:
            return keyring_store().get(key)
        except NotFound:
            return None

    return entry.identity or ANONYMOUS, credentials
