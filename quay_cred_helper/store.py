"""The helper's store: what a client gets for a registry, and what a token request sends.

For a robot account (`org+name`) `get` exchanges the stored long-lived robot
token at /v2/auth for a one-hour JWT and hands out only that: Quay accepts a
robot's JWT (aud = its SERVER_HOSTNAME) as the robot's password. A cached JWT
is found through the index alone, without the keyring and without httpx.
Users, `$app`, `$oauthtoken` and `<token>` entries get their stored secret.

A keyless robot (keyless/robot.py) has nothing stored: `get` exchanges the
job's or pod's own OIDC token through Quay's robot federation for a one-hour
robot JWT, cached the same way.

A robot whose token the job holds (robot_token.py's `RobotToken`: `robot_token_env`,
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
from quay_cred_helper.credentials.index import ANONYMOUS, IndexEntry, identity
from quay_cred_helper.errors import ConfigError, HelperError, NotFound, Unreachable
from quay_cred_helper.names import is_robot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from quay_cred_helper.config import Config
    from quay_cred_helper.credentials.index import Index
    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.keyless.robot import Keyless
    from quay_cred_helper.registry.cache import Token, TokenCache
    from quay_cred_helper.registry.tokens import Credentials, TokenExchange
    from quay_cred_helper.robot_token import RobotToken

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


class HelperStore:
    """The store docker-credential-quay serves: the keyring store, with robots' secrets exchanged for JWTs."""

    def __init__(self, index: Index, use: Collaborators, warn: Callable[[str], None]) -> None:
        self.index = index
        self.use = use
        self.warn = warn

    def add(self, key: str, server: str, username: str, secret: str) -> None:
        self.use.keyring_store.add(key, server, username, secret)
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
        if entry is not None and entry.sso:
            from quay_cred_helper.sso import session  # SSO: revoke at the IdP, erase every part

            return session.end(self.use, key, entry, self.warn)
        if entry is not None and (entry.oidc or entry.token_from):
            with self.index.lock():
                self.index.remove(key)
            return
        self.use.keyring_store.delete(key)

    def list(self) -> dict[str, str]:
        return self.index.servers()

    def keyless(self, key: str, entry: IndexEntry | None) -> Keyless | None:
        """The keyless robot for a registry (whose index entry the caller has read): recorded by
        login --oidc, else named in the config file."""
        if entry is not None:
            robot, oidc, audience = entry.username, entry.oidc, entry.audience
        else:
            settings = self.use.config.settings(key)
            robot, oidc, audience = settings.robot, settings.oidc, settings.audience
            if settings.robot_token_env or settings.robot_token_file:
                return None  # the robot's own token is the source, as at the kubelet provider
        if not oidc or not robot:
            return None
        from quay_cred_helper.keyless.robot import Keyless  # two modules fewer for `list`, users and robots

        return Keyless(robot, oidc, audience)

    def robot_token(self, key: str, entry: IndexEntry | None) -> RobotToken | None:
        """The robot whose token the job holds, for a registry (whose index entry the caller has read):
        recorded by login --token-from, else named in the config file (robot_token_env or _file)."""
        from quay_cred_helper.robot_token import RobotToken  # only for such robots: `list` never loads it

        if entry is not None:
            return RobotToken(entry.username, entry.token_from) if entry.token_from else None
        settings = self.use.config.settings(key)
        env, path = settings.robot_token_env, settings.robot_token_file
        if not env and not path:
            return None
        name = "robot_token_env" if env else "robot_token_file"
        if env and path:
            raise ConfigError(
                f"both robot_token_env and robot_token_file are set for {key}",
                f"keep one of them under [{key}] in {settings.file}",
            )
        if not is_robot(settings.robot):
            raise ConfigError(
                f"{name} for {key} needs the robot it belongs to", settings.where("robot = ORG+NAME", key)
            )
        return RobotToken(settings.robot, f"env:{env}" if env else f"file:{path}")

    def federated(self, key: str, keyless: Keyless, cached: bool = True) -> Token:
        """The keyless robot's Quay JWT: cached, else one exchange of a freshly read OIDC token.

        Not `cached`: always the exchange, and nothing kept (login and doctor verify with it)."""
        from quay_cred_helper.keyless.robot import robot_jwt

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
        first (its keyless source or its robot token file), then the registry's own credentials."""
        routed = self._routed(key, repository) if repository else None
        if routed is not None:
            return routed
        entry = self.index.get(key)
        if entry is not None and entry.sso:
            from quay_cred_helper.sso import session

            return entry.identity + "v2auth", session.credentials(self.use, key, entry)
        keyless = self.keyless(key, entry)
        if keyless is not None:
            # Its /v2/auth tokens under an identity of their own: never the federation JWT itself.
            return keyless.identity() + "v2auth", lambda: (keyless.robot, self.federated(key, keyless).token)
        held = self.robot_token(key, entry)
        if held is not None:
            return held.identity(), lambda: (held.robot, held.read())
        if entry is None:
            return ANONYMOUS, None

        def credentials() -> tuple[str, str] | None:
            try:
                return self.use.keyring_store.get(key)
            except NotFound:
                return None

        return entry.identity or ANONYMOUS, credentials

    def _routed(self, key: str, repository: str) -> tuple[str, Credentials] | None:
        """The robot of the prefix section holding `repository` (config.py), if it names one a command
        can use; None for the host's own section (the kubelet's service_account is the kubelet's only)."""
        settings = self.use.config.settings(key, repository)
        if "/" not in settings.section or not settings.robot:
            return None
        if settings.oidc:
            from quay_cred_helper.keyless.robot import Keyless  # routed repositories only

            keyless = Keyless(settings.robot, settings.oidc, settings.audience)
            return keyless.identity() + "v2auth", lambda: (keyless.robot, self.federated(key, keyless).token)
        if settings.robot_token_file and is_robot(settings.robot):
            from quay_cred_helper.robot_token import RobotToken  # routed robot token files only

            held = RobotToken(settings.robot, "file:" + settings.robot_token_file)
            return held.identity(), lambda: (held.robot, held.read())
        return None

    def get(self, key: str) -> tuple[str, str]:
        entry = self.index.get(key)
        if entry is not None and entry.sso:
            # SSO: the cached ID token (index and one cache file), else one refresh (sso/session.py).
            hit = self.use.cache.load(key, entry.identity, [])
            if hit:
                return "$oauthtoken", hit.token
            from quay_cred_helper.sso import session

            return session.USERNAME, session.id_token(self.use, key, entry).token
        keyless = self.keyless(key, entry)
        if keyless is not None:
            # Never "not found" when the source is broken: the client would pull anonymously.
            return keyless.robot, self.federated(key, keyless).token
        if entry is not None and entry.stored:
            self._warn_if_old(key, entry)
        held = self.robot_token(key, entry)
        if held is not None:
            return held.robot, self.held_jwt(key, held)
        if entry and entry.identity and self._exchanges(key, entry.username):
            hit = self.use.cache.load(key, entry.identity, [])
            if hit:
                log.debug("robot JWT for %s from the cache", key)
                return entry.username, hit.token  # the hot path: index, config, one cache file
        username, secret = self.use.keyring_store.get(key)
        if not self._exchanges(key, username):
            return username, secret  # users, $app, $oauthtoken, <token>
        return username, self._robot_jwt(key, entry, username, secret)

    def _warn_if_old(self, key: str, entry: IndexEntry) -> None:
        """Past max_secret_age, a warning on stderr (never stdout: clients parse it), at most once a day.

        Costs nothing without the setting; past it, one small file in the cache dir is read. Advisory:
        a config or cache dir it cannot use never fails the `get`."""
        try:
            limit = self.use.config.settings(key).max_secret_age
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

    def held_jwt(self, key: str, held: RobotToken, cached: bool = True) -> str:
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
        if not self.use.config.settings(key).robot_exchange:
            return held.read()
        token = self.use.tokens(cached=cached).get(key, identity, credentials=lambda: (held.robot, held.read()))
        if token is None:
            log.debug("%s asks for no authentication: clients go anonymously", key)
            raise NotFound()
        return token.token

    def _exchanges(self, key: str, username: str) -> bool:
        return is_robot(username) and self.use.config.settings(key).robot_exchange

    def _robot_jwt(self, key: str, entry: IndexEntry | None, username: str, secret: str) -> str:
        """A robot's one-hour JWT for its token; the token itself when the registry cannot be reached."""
        fingerprint = entry.identity if entry is not None and entry.username == username else ""
        fingerprint = fingerprint or identity(username, secret, _NO_SALT)  # the index entry is missing or stale
        try:
            token = self.use.tokens().get(key, fingerprint, credentials=lambda: (username, secret))
        except Unreachable as exc:
            # The client will try the robot token itself; it may reach the registry yet.
            log.debug("robot exchange for %s failed: %s", key, exc)
            self.warn(f"{exc}; returning the stored robot token")
            return secret
        return token.token if token else secret
