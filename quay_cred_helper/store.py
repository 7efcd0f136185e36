"""The helper's store: what a client gets for a registry, and what a token request sends.

For a robot account (`org+name`) `get` exchanges the stored long-lived robot
token at /v2/auth for a one-hour JWT and hands out only that: Quay accepts a
robot's JWT (aud = its SERVER_HOSTNAME) as the robot's password. A cached JWT
is found through the index alone, without the keyring and without httpx.
Users, `$app`, `$oauthtoken` and `<token>` entries get their stored secret.

A keyless robot (sources/keyless.py) has nothing stored: `get` exchanges the
job's or pod's own OIDC token through Quay's robot federation for a one-hour
robot JWT, cached the same way.

A robot whose token the job holds (sources/robot_token.py's `RobotToken`: `robot_token_env`,
`robot_token_file`, or `login --token-from`) has nothing stored either, and
needs no keyring: `get` exchanges the token from the job's environment or
file for a one-hour JWT, cached under an identity that holds no secret.

An SSO login (sso/, `login --sso`) keeps only the IdP's refresh token: `get` answers `$oauthtoken`
and the ID token, cached until shortly before it expires, else refreshed (sso/session.py).
"""

from __future__ import annotations

import os
import time

from quay_cred_helper import fastjson, files, log, paths
from quay_cred_helper.credentials.index import ANONYMOUS, IndexEntry, fingerprint
from quay_cred_helper.errors import ConfigError, HelperError, NotFound, Unreachable
from quay_cred_helper.names import is_robot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from quay_cred_helper.config import Config, Settings
    from quay_cred_helper.credentials.index import Index
    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.registry.cache import Token, TokenCache
    from quay_cred_helper.registry.tokens import Credentials, TokenExchange
    from quay_cred_helper.sources.keyless import Keyless
    from quay_cred_helper.sources.robot_token import RobotToken

    class Collaborators(Protocol):
        """What the store uses, each built on first use (context.Context meets this): `list` needs
        none of them, a cached `get` the config and the cache, never the keyring or the exchange."""

        @property
        def config(self) -> Config: ...

        @property
        def cache(self) -> TokenCache: ...

        @property
        def keyring_store(self) -> KeyringStore: ...

        def tokens(self, cached: bool = True) -> TokenExchange: ...


_NO_SALT = "00" * 16  # identity for a credential whose index entry was lost
AGE_WARNINGS = "age-warnings.json"  # in the cache dir: {key: when `get` last warned of a secret's age}
WARN_EVERY = 86400.0  # seconds: `get` warns of an old secret at most once a day per registry


# A registry's credential source, decided once per request from its index entry and settings (source_of).
# One more kind of source is one more constant, one more line in source_of and one more branch in get.
KEYLESS = "keyless"  # a robot with nothing stored: its OIDC token exchanged through Quay's federation
HELD = "held"  # a robot whose token the job holds (robot_token_env, robot_token_file, login --token-from)
KEYRING = "keyring"  # what the keyring holds: a user's secret, or a robot's token exchanged for a JWT
SSO = "sso"  # a person signed in through the IdP (login --sso): the refresh token in the keyring, ID tokens out


def source_of(entry: IndexEntry | None, settings: Settings) -> str:
    """Which source serves a registry: what login recorded in the index decides, else the config file
    (the robot's own token first, as at the kubelet provider). Imports nothing: only the branch taken
    loads its module."""
    if entry is not None:
        if entry.sso:
            return SSO
        return KEYLESS if entry.oidc and entry.username else HELD if entry.token_from else KEYRING
    if settings.robot_token_env or settings.robot_token_file:
        return HELD
    return KEYLESS if settings.oidc and settings.robot else KEYRING


def held_source(key: str, settings: Settings) -> str:
    """The `env:NAME` or `file:PATH` of a section's robot_token_env or robot_token_file; a ConfigError
    when both are set or no robot is named."""
    env, path = settings.robot_token_env, settings.robot_token_file
    section = settings.section or key
    name = "robot_token_env" if env else "robot_token_file"
    if env and path:
        raise ConfigError(
            f"both robot_token_env and robot_token_file are set for {section}",
            f"keep one of them under [{section}] in {settings.file}",
        )
    if not is_robot(settings.robot):
        raise ConfigError(
            f"{name} for {section} needs the robot it belongs to", settings.where("robot = ORG+NAME", section)
        )
    return f"env:{env}" if env else f"file:{path}"


class HelperStore:
    """The store docker-credential-quay serves: the keyring store, with robots' secrets exchanged for JWTs."""

    def __init__(self, index: Index, use: Collaborators, warn: Callable[[str], None]) -> None:
        self.index = index
        self.use = use
        self.warn = warn

    def add(self, key: str, server: str, username: str, secret: str) -> None:
        def write() -> None:
            self.use.keyring_store.add(key, server, username, secret)

        entry = self.index.get(key)
        if entry is not None and entry.sso:  # an SSO session's refresh token may span more keyring entries
            from quay_cred_helper.sso import session

            session.replace(self.use.keyring_store.keyring, key, write)
        else:
            write()
        self.use.cache.drop(key)

    def add_keyless(self, key: str, server: str, keyless: Keyless) -> None:
        """Record a keyless robot: the index alone, no keyring (a CI runner may have none)."""
        # No salt and no fingerprint: nothing secret is stored; the cache identity comes from Keyless.
        entry = IndexEntry(server, keyless.robot, "", "", keyless.oidc, keyless.audience)
        with self.index.lock():
            self.index.put(key, entry)
        self.use.cache.drop(key)

    def add_robot_token(self, key: str, server: str, held: RobotToken) -> None:
        """Record a robot whose token the job holds: the index alone (the source, never the token)."""
        entry = IndexEntry(server, held.robot, "", "", token_from=held.source)
        with self.index.lock():
            self.index.put(key, entry)
        self.use.cache.drop(key)

    def delete(self, key: str) -> None:
        self.use.cache.drop(key)
        entry = self.index.get(key)
        if entry is not None and entry.sso:  # source_of's SSO, which needs no settings
            from quay_cred_helper.sso import session  # SSO: revoke at the IdP, erase every part

            return session.end(self.use, key, entry, self.warn)
        if entry is not None and (entry.oidc or entry.token_from):
            with self.index.lock():
                self.index.remove(key)
            return
        self.use.keyring_store.delete(key)

    def list(self) -> dict[str, str]:
        return self.index.servers()

    def keyless(self, key: str, entry: IndexEntry | None, settings: Settings | None = None) -> Keyless | None:
        """The keyless robot for a registry (whose index entry the caller has read): recorded by
        login --oidc, else named in the config file."""
        settings = settings or self.use.config.settings(key)
        if source_of(entry, settings) != KEYLESS:
            return None
        from quay_cred_helper.sources.keyless import Keyless  # two modules fewer for `list`, users and robots

        if entry is not None:
            return Keyless(entry.username, entry.oidc, entry.audience)
        return Keyless(settings.robot, settings.oidc, settings.audience)

    def robot_token(self, key: str, entry: IndexEntry | None, settings: Settings | None = None) -> RobotToken | None:
        """The robot whose token the job holds, for a registry (whose index entry the caller has read):
        recorded by login --token-from, else named in the config file (robot_token_env or _file)."""
        settings = settings or self.use.config.settings(key)
        if source_of(entry, settings) != HELD:
            return None
        from quay_cred_helper.sources.robot_token import RobotToken  # only for such robots (tests/test_startup.py)

        if entry is not None:
            return RobotToken(entry.username, entry.token_from)
        return RobotToken(settings.robot, held_source(key, settings))

    def federated(self, key: str, keyless: Keyless, cached: bool = True) -> Token:
        """The keyless robot's Quay JWT: cached, else one exchange of a freshly read OIDC token.

        Not `cached`: always the exchange, and nothing kept (login and doctor verify with it)."""
        from quay_cred_helper.sources.keyless import robot_jwt

        exchange: Callable[[], TokenExchange] = self.use.tokens  # built only on a miss
        cache = self.use.cache
        if not cached:
            uncached = self.use.tokens(cached=False)
            cache, exchange = uncached.cache, lambda: uncached
        return robot_jwt(cache, exchange, key, keyless.robot, keyless.identity(), keyless.oidc_token)

    def token_credentials(self, key: str, repository: str = "") -> tuple[str, Credentials | None]:
        """What a /v2/auth token request sends, as (identity, credentials).

        The identity is the credential's fingerprint. The credentials are a callable that reads the
        keyring (or exchanges an OIDC token) only on a token-cache miss; None when nothing is stored.
        With a repository (`ns/repo`), the robot of the config's prefix section that holds it comes
        first (its keyless source or the token the job holds), then the registry's own credentials."""
        entry, settings = self.source(key, repository)
        if source_of(entry, settings) == SSO:
            assert entry is not None
            from quay_cred_helper.sso import session

            return entry.identity + "v2auth", session.credentials(self.use, key, entry)
        robot = self._robot_credentials(key, entry, settings)
        if robot is not None:
            return robot
        if entry is None:
            return ANONYMOUS, None

        def credentials() -> tuple[str, str] | None:
            try:
                return self.use.keyring_store.get(key)
            except NotFound:
                return None

        return entry.identity or ANONYMOUS, credentials

    def _robot_credentials(
        self, key: str, entry: IndexEntry | None, settings: Settings
    ) -> tuple[str, Credentials] | None:
        """What a token request sends for a keyless robot or a token the job holds; None for the keyring's."""
        keyless = self.keyless(key, entry, settings)
        if keyless is not None:
            # Its /v2/auth tokens under an identity of their own: never the federation JWT itself.
            return keyless.identity() + "v2auth", lambda: (keyless.robot, self.federated(key, keyless).token)
        held = self.robot_token(key, entry, settings)
        if held is not None:
            return held.identity(), lambda: (held.robot, held.read())
        return None

    def source(self, key: str, repository: str = "") -> tuple[IndexEntry | None, Settings]:
        """The index entry and settings that decide what `get` and a token request use for `key`: with a
        repository (`ns/repo`) that `_routed` routes, no entry and its prefix section's settings."""
        routed = self._routed(key, repository) if repository else None
        if routed is not None:
            return None, routed
        return self.index.get(key), self.use.config.settings(key)

    def _routed(self, key: str, repository: str) -> Settings | None:
        """The prefix section holding `repository` (config.py), if it names a robot a command can use (its
        keyless source or the token the job holds); None for the host's own section (the kubelet's
        service_account is the kubelet's only). Every identity setting of the section is routed or
        refused here, never silently dropped."""
        settings = self.use.config.settings(key, repository)
        if "/" not in settings.section:
            return None
        if source_of(None, settings) != KEYRING:
            return settings
        if settings.oidc:  # keyless without its robot: never the host's identity instead
            raise ConfigError(
                f"oidc for {settings.section} needs the robot it belongs to",
                settings.where("robot = ORG+NAME", settings.section),
            )
        if settings.audience:
            raise ConfigError(
                f"audience for {settings.section} is the audience of an OIDC token, and it names no oidc source",
                settings.where("oidc = SOURCE (with robot = ORG+NAME)", settings.section),
            )
        return None  # the host's credentials: a robot named alone, or the kubelet's service_account

    def get(self, key: str, repository: str = "") -> tuple[str, str]:
        """What a client gets for `key` (or the robot `source` routes `repository` to): the registry's source
        decided once (source_of), then its branch."""
        entry, settings = self.source(key, repository)
        kind = source_of(entry, settings)
        if kind == SSO:
            assert entry is not None
            return "$oauthtoken", self._id_token(key, entry)  # sso.session.USERNAME, without importing it
        if kind == KEYLESS:
            keyless = self.keyless(key, entry, settings)
            assert keyless is not None
            # Never "not found" when the source is broken: the client would pull anonymously.
            return keyless.robot, self.federated(key, keyless).token
        if entry is not None and entry.stored:
            self._warn_if_old(key, entry, settings)
        if kind == HELD:
            held = self.robot_token(key, entry, settings)
            assert held is not None
            return held.robot, self.held_jwt(key, held, settings=settings)
        exchanges = settings.robot_exchange
        if entry and entry.identity and exchanges and is_robot(entry.username):
            hit = self.use.cache.load(key, entry.identity, [])
            if hit:
                log.debug("robot JWT for %s from the cache", key)
                return entry.username, hit.token  # the hot path: index, config, one cache file
        username, secret = self.use.keyring_store.get(key)
        if not (exchanges and is_robot(username)):
            return username, secret  # users, $app, $oauthtoken, <token>
        return username, self._robot_jwt(key, entry, username, secret)

    def _id_token(self, key: str, entry: IndexEntry) -> str:
        """An SSO user's ID token: cached (the index and one cache file), else one refresh (sso/session.py)."""
        hit = self.use.cache.load(key, entry.identity, [])
        if hit:
            log.debug("SSO ID token for %s from the cache", key)
            return hit.token
        from quay_cred_helper.sso import session  # only on a refresh: httpx, PyJWT

        return session.id_token(self.use, key, entry).token

    def _warn_if_old(self, key: str, entry: IndexEntry, settings: Settings) -> None:
        """Past max_secret_age, a warning on stderr (never stdout: clients parse it), at most once a day.

        Costs nothing without the setting; past it, one small file in the cache dir is read. Advisory:
        a config or cache dir it cannot use never fails the `get`."""
        try:
            limit = settings.max_secret_age
            age = time.time() - entry.stored
            if not limit or age <= limit or not self._first_warning_today(key):
                return
        except (HelperError, OSError) as exc:
            log.debug("secret age of %s not checked: %s", key, type(exc).__name__)
            return
        from quay_cred_helper.config import format_duration  # only when warning

        fix = (
            f"rotate it: quay-cred-helper robot rotate {key} {entry.username}"
            if is_robot(entry.username)
            else f"store a new one: quay-cred-helper login {key}"
        )
        self.warn(
            f"the secret of {entry.username} for {key} was stored {format_duration(age)} ago, "
            f"past max_secret_age ({format_duration(limit)}): {fix}"
        )

    @staticmethod
    def _first_warning_today(key: str) -> bool:
        """True, and remembered, if `get` has not warned about this registry's secret for a day."""
        path = os.path.join(paths.cache_dir(), AGE_WARNINGS)
        files.private_dir(os.path.dirname(path))
        with files.Lock(path + ".lock"):  # concurrent `get`s: one of them warns
            warned = files.read_json(path) or {}
            last = warned.get(key)  # a Unix time as a string: written with fastjson, no json import here either
            if isinstance(last, str) and last.isdigit() and 0 <= time.time() - int(last) < WARN_EVERY:
                return False
            stamps = {k: v for k, v in warned.items() if isinstance(v, str)}
            stamps[key] = str(int(time.time()))
            files.write_atomic(path, fastjson.dumps_strings(stamps).encode() + b"\n")
        return True

    def held_jwt(self, key: str, held: RobotToken, cached: bool = True, settings: Settings | None = None) -> str:
        """The one-hour JWT for the token the job holds: cached (a file: one stat; a variable: its keyed
        digest), else one exchange at /v2/auth. Never the token itself, unless robot_exchange = false:
        not even when the registry cannot be reached (nothing to fall back on that clients should see).

        Not `cached`: always the exchange, and nothing kept (login and ci-login verify with it)."""
        identity = held.identity()
        if cached:
            hit = self.use.cache.load(key, identity, [])
            if hit:
                log.debug("robot JWT for %s (token from %s) from the cache", key, held.source)
                return hit.token  # the hot path: index, config, the source, one cache file
        if not (settings or self.use.config.settings(key)).robot_exchange:
            return held.read()
        token = self.use.tokens(cached=cached).get(key, identity, credentials=lambda: (held.robot, held.read()))
        if token is None:
            log.debug("%s asks for no authentication: clients go anonymously", key)
            raise NotFound()
        return token.token

    def _robot_jwt(self, key: str, entry: IndexEntry | None, username: str, secret: str) -> str:
        """A robot's one-hour JWT for its token; the token itself when the registry cannot be reached."""
        known = entry.identity if entry is not None and entry.username == username else ""
        known = known or fingerprint(username, secret, _NO_SALT)  # the index entry is missing or stale
        try:
            token = self.use.tokens().get(key, known, credentials=lambda: (username, secret))
        except Unreachable as exc:
            # The client will try the robot token itself; it may reach the registry yet.
            log.debug("robot exchange for %s failed: %s", key, exc)
            self.warn(f"{exc}; returning the stored robot token")
            return secret
        return token.token if token else secret
