"""The one place that builds: the collaborators an entry point assembles and passes in.

Building does no I/O (the config file is read on first use, the keyring
backend on first keyring call), and what a path does not need is not even
imported: `list` reads the index, a cached `get` the index, config and token
cache; the keyring and the token exchange (httpx) are built on first use.
Tests build a Context with their own clock, sleep, HTTP client or cache.
"""

from __future__ import annotations

import os
import time

from quay_cred_helper import paths
from quay_cred_helper.credentials.index import Index
from quay_cred_helper.sources import ExchangingStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from quay_cred_helper.config import Config
    from quay_cred_helper.contracts import TokenCache as TokenCacheContract
    from quay_cred_helper.credentials.keyring_backend import Keyring
    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.registry.tokens import Tokens


def _fast_read(service: str, username: str) -> str | None:
    from quay_cred_helper.credentials import secretservice  # hot path: only when the keyring is read

    return secretservice.read(service, username)


class Context:
    def __init__(
        self,
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        client: httpx.Client | None = None,
        cache: TokenCacheContract | None = None,
    ) -> None:
        self.warn = warn
        self.index = Index(paths.index_file())
        self.client = client
        self.sleep = sleep
        self.clock = clock
        self._config: Config | None = None
        self._cache = cache
        self._keyring_store: KeyringStore | None = None
        self.store = ExchangingStore(
            self.index, lambda: self.config, lambda: self.cache, self.keyring_store, self.tokens, warn
        )

    @property
    def config(self) -> Config:
        """The config file, read once (on first use: `list` never reads it)."""
        if self._config is None:
            from quay_cred_helper.config import Config

            self._config = Config()
        return self._config

    @property
    def cache(self) -> TokenCacheContract:
        """The token cache (built on first use: `list` needs none)."""
        if self._cache is None:
            from quay_cred_helper.config import cache_enabled
            from quay_cred_helper.registry.cache import NullCache, TokenCache

            disk = TokenCache(os.path.join(paths.cache_dir(), "tokens"), self.clock)
            self._cache = disk if cache_enabled() else NullCache(stale=disk)
        return self._cache

    @property
    def keyring(self) -> Keyring:
        return self.keyring_store().keyring

    def keyring_store(self) -> KeyringStore:
        """The keyring store, built on first use (hot path: `list` and a cached `get` never open the keyring)."""
        if self._keyring_store is None:
            from quay_cred_helper.credentials.keyring_backend import Keyring
            from quay_cred_helper.credentials.keyring_store import KeyringStore

            self._keyring_store = KeyringStore(self.index, Keyring(fast_read=_fast_read))
        return self._keyring_store

    def tokens(self, cache: TokenCacheContract | None = None) -> Tokens:
        """The token exchange (through this context's cache unless another is given)."""
        from quay_cred_helper.registry.tokens import Tokens  # hot path: a cached `get` needs no exchange

        return Tokens(cache or self.cache, self.config.settings, self.client, self.sleep)
