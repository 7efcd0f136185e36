"""The one composition root: what each entry point (helper, CLI commands, kubelet provider) assembles.

Building does no I/O (the config file is read on first use, the keyring
backend on first keyring call), and what a path does not need is not even
imported: `list` reads the index, a cached `get` the index, config and token
cache; the keyring and the token exchange (httpx) are built on first use.

An entry point says how its world differs, and nothing else:
    config          another config file (the provider's --config)
    cache_root      another cache folder (the provider's --cache-dir)
    limits          tighter bounds on every registry's settings (the provider's deadline, doctor's quick checks)
    before_network  called before each session's first connection (the provider's 30 s watchdog)
"""

from __future__ import annotations

import os

from quay_cred_helper import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from quay_cred_helper.config import Config, Settings
    from quay_cred_helper.credentials.index import Index
    from quay_cred_helper.credentials.keyring_backend import Keyring
    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.registry.cache import TokenCache
    from quay_cred_helper.registry.deadline import Deadlines
    from quay_cred_helper.registry.tokens import TokenExchange
    from quay_cred_helper.store import Collaborators, HelperStore


def _fast_read(service: str, username: str) -> str | None:
    from quay_cred_helper.credentials import secretservice  # only when the keyring is read

    return secretservice.read(service, username)


class Context:
    def __init__(
        self,
        warn: Callable[[str], None],
        config: Config | None = None,
        cache_root: str | None = None,
        limits: Callable[[Settings], Settings] | None = None,
        before_network: Callable[[], None] | None = None,
    ) -> None:
        self.warn = warn
        self._config = config
        self._cache_root = cache_root
        self._limits = limits
        self._before_network = before_network
        self._index: Index | None = None
        self._store: HelperStore | None = None
        self._cache: TokenCache | None = None
        self._keyring_store: KeyringStore | None = None
        self._deadlines: Deadlines | None = None

    @property
    def index(self) -> Index:
        """What is stored, without secrets (the kubelet provider never reads it)."""
        if self._index is None:
            from quay_cred_helper.credentials.index import Index

            self._index = Index(paths.index_file())
        return self._index

    @property
    def store(self) -> HelperStore:
        """The helper's store: what docker-credential-quay serves and the commands use."""
        if self._store is None:
            from quay_cred_helper.store import HelperStore

            self._store = HelperStore(self.index, self, self.warn)
        return self._store

    @property
    def config(self) -> Config:
        """The config file, read once (on first use: `list` never reads it)."""
        if self._config is None:
            from quay_cred_helper.config import Config

            self._config = Config()
        return self._config

    @property
    def cache(self) -> TokenCache:
        """The token cache (built on first use: `list` needs none)."""
        if self._cache is None:
            from quay_cred_helper.config import cache_enabled
            from quay_cred_helper.registry.cache import FileTokenCache, NullTokenCache

            disk = FileTokenCache(os.path.join(self._cache_root or paths.cache_dir(), "tokens"))
            self._cache = disk if cache_enabled() else NullTokenCache(stale=disk)
        return self._cache

    @property
    def keyring_store(self) -> KeyringStore:
        """The keyring store, built on first use (`list` and a cached `get` never open the keyring)."""
        if self._keyring_store is None:
            from quay_cred_helper.credentials.keyring_backend import Keyring
            from quay_cred_helper.credentials.keyring_store import KeyringStore

            self._keyring_store = KeyringStore(self.index, Keyring(fast_read=_fast_read))
        return self._keyring_store

    @property
    def keyring(self) -> Keyring:
        return self.keyring_store.keyring

    def settings(self, key: str) -> Settings:
        """A registry's settings, within this entry point's limits."""
        found = self.config.settings(key)
        return self._limits(found) if self._limits is not None else found

    @property
    def deadlines(self) -> Deadlines:
        """Each registry's budget in this command (`deadline`), shared by every exchange built here."""
        if self._deadlines is None:
            from quay_cred_helper.registry.deadline import Deadlines

            self._deadlines = Deadlines()
        return self._deadlines

    def tokens(self, cached: bool = True) -> TokenExchange:
        """The token exchange, through this context's cache; not `cached`: through none (login and
        doctor verify with a fresh exchange). Every exchange shares the context's deadlines."""
        from quay_cred_helper.registry.cache import NullTokenCache
        from quay_cred_helper.registry.tokens import TokenExchange  # a cached `get` needs no exchange

        cache = self.cache if cached else NullTokenCache()
        return TokenExchange(cache, self.settings, before_network=self._before_network, deadlines=self.deadlines)


if TYPE_CHECKING:  # conformance, checked by mypy, free at run time

    def _context_serves_the_store(ctx: Context) -> Collaborators:
        return ctx
