"""The token cache: one small JSON file per token, private, replaced atomically.

Layout: <user cache dir>/tokens/<registry>/<identity and scopes>.json plus
`challenge.json` per registry (the realm and service learnt from /v2/), so a
cold call makes one request instead of two. Files that are corrupt or of
another version are ignored and overwritten, never fatal. A cache hit is the
hot path of a robot's `get`: this module imports nothing heavy.

`Token` owns its whole lifetime: when it ends (`issued`), and until when we
hand it out (`usable_until`), which both the helper's cache and the kubelet
provider's cacheDuration go by.
"""

from __future__ import annotations

import os
import time

from quay_cred_helper import files

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager
    from typing import Any, Protocol

    from quay_cred_helper.errors import HelperError
    from quay_cred_helper.registry.challenge import Challenge

    class TokenCache(Protocol):
        """Where bearer tokens and registries' challenges are kept between runs (a type for mypy only:
        `typing` costs as much as the interpreter's start; tests/test_contracts.py runs one suite on each).

        `load` hands out only tokens that are still usable; `lock` is held around a fetch so that
        concurrent cold calls for one token make one request (waited for at most `timeout` seconds,
        then files.LockTimeout); a fetch that failed leaves its error for a few seconds (`failed`),
        so that the calls that waited for it fail with it instead of trying again."""

        def load(self, key: str, identity: str, scopes: Sequence[str]) -> Token | None: ...

        def save(self, key: str, identity: str, scopes: Sequence[str], token: Token) -> None: ...

        def lock(
            self, key: str, identity: str, scopes: Sequence[str], timeout: float | None = None
        ) -> AbstractContextManager[object]: ...

        def fail(self, key: str, identity: str, scopes: Sequence[str], error: HelperError) -> None: ...

        def failed(self, key: str, identity: str, scopes: Sequence[str], since: float) -> HelperError | None: ...

        def load_challenge(self, key: str) -> Challenge | None: ...

        def save_challenge(self, key: str, challenge: Challenge) -> None: ...

        def forget_challenge(self, key: str) -> None: ...

        def drop(self, key: str) -> None: ...


VERSION = 1
MAX_MARGIN = 300.0  # seconds before expiry at which a token stops being handed out
DEFAULT_LIFETIME = 60.0  # seconds, when neither expires_in nor a JWT exp says
MAX_LIFETIME = 24 * 3600.0  # a server may not make us keep a token longer than this
# How long what /v2/ said is remembered: a realm for an hour, "no authentication" only briefly,
# so a maintenance page answering 200 once cannot switch the token exchange off for long.
CHALLENGE_LIFETIME = 3600.0
NO_AUTH_LIFETIME = 60.0
FAILURE_LIFETIME = 10.0  # seconds a failed fetch's error answers the calls that waited for it


def identity(prefix: str, *parts: str) -> str:
    """A token-cache identity made of non-secret parts: exact (hex) while short, else a BLAKE2b digest.

    The cache of a keyless `get` or a kubelet's cached answer looks it up on every call: _blake2 is
    a builtin module, where hashlib loads OpenSSL (milliseconds)."""
    material = "\0".join(parts).encode()
    if len(material) <= 100:
        return prefix + material.hex()
    try:
        from _blake2 import blake2b
    except ImportError:  # pragma: no cover - other Pythons
        from hashlib import blake2b
    return prefix + blake2b(material, digest_size=20).hexdigest()


def file_identity(robot: str, found: os.stat_result) -> str:
    """The cache identity of a robot token file, from its stat: a new token in it (a new inode, mtime
    or size) is a new identity with its own JWT, and a cached answer reads no secret."""
    return identity("file", robot, str(found.st_dev), str(found.st_ino), str(found.st_mtime_ns), str(found.st_size))


def folder_name(key: str) -> str:
    """A registry key as one portable, unique folder name: `host_port`, or `ipv6_<address with - for :>_port`.

    Keys are validated (names.registry_key), so a name holds only [a-z0-9.-] and cannot be . or ..;
    IPv6 literals get their own prefix, which no DNS name can have ('_' is not allowed in one)."""
    if key.startswith("["):
        address, _, port = key[1:].partition("]")
        name = "ipv6_" + address.replace(":", "-") + port.replace(":", "_")
    else:
        name = key.replace(":", "_")
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"not a registry key: {key!r}")
    return name


def margin(lifetime: float) -> float:
    """Hand out a token only while it has this much life left: min(300 s, 10% of its lifetime)."""
    return min(MAX_MARGIN, 0.1 * max(lifetime, 0.0))


class Token:
    """A bearer token as issued and as cached (a plain class: read on the hot path).

    `access` is the JWT's access claim, None when the token says nothing about it (not a JWT)."""

    __slots__ = ("token", "issued_at", "expires_at", "access")

    def __init__(self, token: str, issued_at: float, expires_at: float, access: list[Any] | None = None) -> None:
        self.token, self.issued_at, self.expires_at = token, issued_at, expires_at
        self.access = access

    @classmethod
    def issued(cls, token: str, expires_in: object = None) -> Token:
        """A token just issued: it lives `expires_in` seconds, else until the JWT's exp, else
        DEFAULT_LIFETIME; never longer than MAX_LIFETIME, never a time that is not a finite number.
        Wall-clock time, as the JWT's exp is."""
        import math  # builtin; only when a token is issued

        from quay_cred_helper.registry import jwt

        now = time.time()
        claims = jwt.claims(token)
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
            end = now + float(expires_in)
        else:
            # Quay sends no expires_in: its JWTs live one hour, read exp from the payload.
            end = jwt.number(claims, "exp") or now + DEFAULT_LIFETIME
        end = min(end, now + MAX_LIFETIME) if math.isfinite(end) else now + DEFAULT_LIFETIME
        access = claims.get("access") if claims else None
        return cls(token, now, end, access if isinstance(access, list) else None)

    @property
    def usable_until(self) -> float:
        """When we stop handing the token out: its margin before it expires."""
        return self.expires_at - margin(self.expires_at - self.issued_at)

    def fresh(self, now: float) -> bool:
        return now < self.usable_until

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Token | None:
        if not data or data.get("version") != VERSION or not isinstance(data.get("token"), str):
            return None
        issued, expires, access = data.get("issued_at"), data.get("expires_at"), data.get("access")
        if not isinstance(issued, (int, float)) or not isinstance(expires, (int, float)):
            return None
        # NaN fails every comparison, infinities the second: such an entry is never handed out.
        if not (0 <= expires - issued <= MAX_LIFETIME):
            return None
        return cls(data["token"], float(issued), float(expires), access if isinstance(access, list) else None)

    def to_json(self, scopes: Sequence[str]) -> dict[str, Any]:
        return {
            "version": VERSION,
            "token": self.token,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "scopes": sorted(scopes),
            "access": self.access,
        }


class FileTokenCache:
    """Tokens and challenges on disk."""

    def __init__(self, root: str, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.clock = clock

    def _dir(self, key: str) -> str:
        return os.path.join(self.root, folder_name(key))

    def _path(self, key: str, identity: str, scopes: Sequence[str]) -> str:
        # identity is already a hex fingerprint (or "anonymous"); scopes, when
        # any, are hashed. The common case, no scope, needs no hashlib at all.
        name = identity if identity.isalnum() else ""
        if scopes or not name:
            import hashlib  # hot-path module: only for scoped tokens

            name += "-" + hashlib.sha256("\n".join([identity, *sorted(scopes)]).encode()).hexdigest()[:24]
        return os.path.join(self._dir(key), name + ".json")

    def load(self, key: str, identity: str, scopes: Sequence[str]) -> Token | None:
        """The cached token while fresh, else None."""
        token = Token.from_json(files.read_json(self._path(key, identity, scopes)))
        return token if token is not None and token.fresh(self.clock()) else None

    def save(self, key: str, identity: str, scopes: Sequence[str], token: Token) -> None:
        files.private_dir(self.root)
        files.private_dir(self._dir(key))
        files.write_json(self._path(key, identity, scopes), token.to_json(scopes))

    def lock(self, key: str, identity: str, scopes: Sequence[str], timeout: float | None = None) -> files.Lock:
        """Single flight: one process per token fetches; the others wait (at most `timeout` s), then re-read."""
        files.private_dir(self._dir(key))
        return files.Lock(self._path(key, identity, scopes)[: -len(".json")] + ".lock", timeout)

    def _failure_path(self, key: str, identity: str, scopes: Sequence[str]) -> str:
        return self._path(key, identity, scopes)[: -len(".json")] + ".failed"  # not *.json: no token

    def fail(self, key: str, identity: str, scopes: Sequence[str], error: HelperError) -> None:
        """Leave a fetch's error beside its lock (its class and its words, which never hold a secret)."""
        data = {"version": VERSION, "error": type(error).__name__, "problem": error.problem, "fix": error.fix}
        files.private_dir(self._dir(key))
        files.write_json(self._failure_path(key, identity, scopes), dict(data, at=self.clock()))

    def failed(self, key: str, identity: str, scopes: Sequence[str], since: float) -> HelperError | None:
        """The error of a fetch that failed at `since` or later, within FAILURE_LIFETIME; else None."""
        from quay_cred_helper import errors  # hot-path module: only on a miss

        data = files.read_json(self._failure_path(key, identity, scopes))
        if not data or data.get("version") != VERSION:
            return None
        at, problem, fix = data.get("at"), data.get("problem"), data.get("fix")
        kind = getattr(errors, str(data.get("error")), None)
        if not isinstance(at, (int, float)) or not since <= at or not 0 <= self.clock() - at <= FAILURE_LIFETIME:
            return None  # from before this call waited, too old, or from the future
        if not isinstance(problem, str):
            return None
        if not isinstance(kind, type) or not issubclass(kind, errors.HelperError) or kind is errors.NotFound:
            return None
        error: HelperError = kind(problem, fix if isinstance(fix, str) else None)
        return error

    def load_challenge(self, key: str) -> Challenge | None:
        """What /v2/ said, while it is recent enough to trust."""
        from quay_cred_helper.registry.challenge import Challenge  # hot-path module: only on a miss

        data = files.read_json(os.path.join(self._dir(key), "challenge.json"))
        found = Challenge.from_json(data, VERSION)
        saved = data.get("saved_at") if data else None
        if found is None or not isinstance(saved, (int, float)):
            return None
        age = self.clock() - saved
        return found if 0 <= age < (CHALLENGE_LIFETIME if found.realm else NO_AUTH_LIFETIME) else None

    def save_challenge(self, key: str, challenge: Challenge) -> None:
        files.private_dir(self._dir(key))
        data = dict(challenge.to_json(VERSION), saved_at=self.clock())
        files.write_json(os.path.join(self._dir(key), "challenge.json"), data)

    def forget_challenge(self, key: str) -> None:
        import contextlib  # hot-path module: only after a failure

        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self._dir(key), "challenge.json"))

    def drop(self, key: str) -> None:
        """Forget every token and the challenge of a registry (logout, erase, new credentials)."""
        import shutil  # hot-path module: only on store and erase

        shutil.rmtree(self._dir(key), ignore_errors=True)


class NullTokenCache:
    """No cache: every call asks the registry (QUAY_CRED_HELPER_NO_CACHE=1, and login and doctor,
    which verify with a fresh exchange).

    `stale` is the cache that was in use before, so that logout and erase still
    forget the tokens it holds."""

    def __init__(self, stale: FileTokenCache | None = None) -> None:
        self.stale = stale

    def load(self, key: str, identity: str, scopes: Sequence[str]) -> Token | None:
        return None

    def save(self, key: str, identity: str, scopes: Sequence[str], token: Token) -> None:
        return None

    def lock(self, key: str, identity: str, scopes: Sequence[str], timeout: float | None = None) -> _NoLock:
        return _NoLock()

    def fail(self, key: str, identity: str, scopes: Sequence[str], error: HelperError) -> None:
        return None

    def failed(self, key: str, identity: str, scopes: Sequence[str], since: float) -> HelperError | None:
        return None

    def load_challenge(self, key: str) -> Challenge | None:
        return None

    def save_challenge(self, key: str, challenge: Challenge) -> None:
        return None

    def forget_challenge(self, key: str) -> None:
        return None

    def drop(self, key: str) -> None:
        if self.stale is not None:
            self.stale.drop(key)


class _NoLock:
    def __enter__(self) -> _NoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


if TYPE_CHECKING:  # conformance, checked by mypy, free at run time

    def _file_cache_is_a_token_cache(cache: FileTokenCache) -> TokenCache:
        return cache

    def _null_cache_is_a_token_cache(cache: NullTokenCache) -> TokenCache:
        return cache
