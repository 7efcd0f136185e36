"""An SSO session: the refresh token in the keyring, the index's record, the ID token cached like a JWT.

What is kept:
* the keyring: only the refresh token, under the registry's own entry (service "quay-cred-helper",
  as every credential) as {"username": "$oauthtoken", "secret": ..., "parts": N, "generation": G}.
  A refresh token longer than CHUNK characters is split across entries `KEY#sso.G.2` ... (Windows
  Credential Manager takes 2,560 bytes of UTF-16 per entry); a new token is written under a new
  generation before the main entry names it, and the old parts are erased after, so a crash at any
  point leaves one complete token.
* the index: the issuer, client, subject, Quay user and the IdP's endpoints (never a secret), and
  `identity`, the ID token's cache identity.
* the token cache: the ID token, 0600, handed out until shortly before its `exp` (registry/cache.py).

A refresh happens inside the token exchange's single flight (one process refreshes, the others wait
for its ID token within the same deadline), and reads the refresh token inside that lock: the newest.
The keyring is written only when the IdP rotated the refresh token.
"""

from __future__ import annotations

import contextlib
import os
import time

from quay_cred_helper import fastjson, files, log
from quay_cred_helper.credentials.index import IndexEntry
from quay_cred_helper.credentials.keyring_store import SERVICE
from quay_cred_helper.errors import HelperError, IdPError, KeyringError, NotFound
from quay_cred_helper.registry import cache
from quay_cred_helper.registry.cache import Token, folder_name
from quay_cred_helper.registry.deadline import exceeded
from quay_cred_helper.sso import idp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from quay_cred_helper.config import Config
    from quay_cred_helper.credentials.keyring_backend import Keyring
    from quay_cred_helper.credentials.keyring_store import KeyringStore
    from quay_cred_helper.registry.cache import TokenCache
    from quay_cred_helper.registry.tokens import TokenExchange

    class Uses(Protocol):
        """What a session uses (context.Context and store.Collaborators meet it)."""

        @property
        def config(self) -> Config: ...

        @property
        def cache(self) -> TokenCache: ...

        @property
        def keyring_store(self) -> KeyringStore: ...

        def tokens(self, cached: bool = True) -> TokenExchange: ...


USERNAME = "$oauthtoken"  # what `get` answers with the ID token (Quay: /v2/auth's SSO username)
CHUNK = 1000  # characters of a refresh token per keyring entry (Windows: 2,560 bytes of UTF-16)


def identity(issuer: str, client: str, subject: str) -> str:
    """The ID token's cache identity: who it is for, nothing secret."""
    return cache.identity("sso", issuer, client, subject)


def record(provider: idp.Provider, client: str, claims: dict[str, Any], user: str, scopes: str) -> dict[str, str]:
    """The index's record of a session: never a secret."""
    return {
        "issuer": provider.issuer,
        "client": client,
        "subject": str(claims["sub"]),
        "user": user,
        "scopes": scopes,
        "token_endpoint": provider.token,
        "jwks_uri": provider.jwks_uri,
        "revocation_endpoint": provider.revocation,
    }


def _part_name(key: str, generation: str, number: int) -> str:
    return f"{key}#sso.{generation}.{number}"


def read_refresh(keyring: Keyring, key: str) -> str:
    """The refresh token, joined from its entries; SessionExpired when it is gone or incomplete."""
    value = keyring.get(SERVICE, key)
    if value is None:
        raise idp.expired(key, " (no refresh token in the keyring)")
    try:
        data = fastjson.loads(value)
        token, parts, generation = data["secret"], int(data.get("parts", "1")), data.get("generation", "")
        assert isinstance(token, str) and isinstance(generation, str) and 1 <= parts <= 64
    except (ValueError, KeyError, TypeError, AssertionError):
        raise KeyringError(f"keyring entry for {key} is not ours or is damaged", "store it again") from None
    for number in range(2, parts + 1):
        more = keyring.get(SERVICE, _part_name(key, generation, number))
        if more is None:
            raise idp.expired(key, " (the refresh token in the keyring is incomplete)")
        token += more
    log.secret(token)
    return token


def _parts_of(keyring: Keyring, key: str) -> list[str]:
    """The names of the extra entries the main entry now names."""
    value = keyring.get(SERVICE, key)
    try:
        data = fastjson.loads(value) if value else {}
        parts, generation = int(data.get("parts", "1")), str(data.get("generation", ""))
    except (ValueError, TypeError, AttributeError):
        return []
    return [_part_name(key, generation, n) for n in range(2, min(parts, 64) + 1)]


def write_refresh(keyring: Keyring, key: str, token: str) -> None:
    """Store a refresh token (call under the index lock): new parts, then the main entry, then the old
    parts erased."""
    log.secret(token)
    chunks = [token[i : i + CHUNK] for i in range(0, len(token), CHUNK)] or [""]
    old = _parts_of(keyring, key)
    generation = cache.identity("", str(time.time_ns()))[-12:]
    for number, chunk in enumerate(chunks[1:], start=2):
        keyring.set(SERVICE, _part_name(key, generation, number), chunk)
    main = {"username": USERNAME, "secret": chunks[0], "parts": str(len(chunks)), "generation": generation}
    keyring.set(SERVICE, key, fastjson.dumps_strings(main))
    for name in old:
        keyring.delete(SERVICE, name)


def replace(keyring: Keyring, key: str, write: Callable[[], None]) -> None:
    """Another credential stored over a session (docker login, a password login): `write` overwrites the
    main entry, then the refresh token's other parts are erased, as they would be at logout."""
    parts = _parts_of(keyring, key)
    write()
    for name in parts:
        with contextlib.suppress(KeyringError):
            keyring.delete(SERVICE, name)


def store(use: Uses, key: str, server: str, sso: dict[str, str], refresh: str, id_token: Token, expires: str) -> None:
    """Keep a new session: the refresh token in the keyring, the record in the index, the ID token cached."""
    keyring_store = use.keyring_store
    entry = IndexEntry(server, USERNAME, "", identity(sso["issuer"], sso["client"], sso["subject"]))
    entry.stored = float(int(time.time()))
    entry.sso = dict(sso, refresh_expires=expires) if expires else sso
    keyring_store.keyring.backend()  # loading keyring outside the lock
    with keyring_store.index.lock():
        write_refresh(keyring_store.keyring, key, refresh)
        keyring_store.index.put(key, entry)
    use.cache.drop(key)
    use.cache.save(key, entry.identity, [], id_token)


def refresh_expiry(answer: dict[str, Any]) -> str:
    """When the IdP says the refresh token ends (Keycloak's refresh_expires_in), as Unix time; "" if not."""
    seconds = answer.get("refresh_expires_in")
    ok = isinstance(seconds, int) and not isinstance(seconds, bool) and 0 < seconds < 10 * 365 * 86400
    return str(int(time.time()) + seconds) if ok else ""  # type: ignore[operator]


def id_token(use: Uses, key: str, entry: IndexEntry) -> Token:
    """The session's ID token: cached, else one refresh (single flight, the registry's deadline).

    Never a browser, never a prompt: a session that is over raises SessionExpired at once."""
    sso = entry.sso
    assert sso is not None
    exchange = use.tokens()

    def obtain() -> Token:
        # The token cache's single flight already serialises refreshes; without a cache
        # (QUAY_CRED_HELPER_NO_CACHE) this lock does, or two processes would present one rotating token.
        keyring_store = use.keyring_store
        files.private_dir(os.path.dirname(keyring_store.index.path))
        lock = os.path.join(os.path.dirname(keyring_store.index.path), f"sso-{folder_name(key)}.lock")
        try:
            with files.Lock(lock, timeout=max(exchange.deadline(key).remaining(), 0.0)):
                return refresh(keyring_store)
        except files.LockTimeout:
            raise exceeded(key, exchange.settings(key)) from None

    def refresh(keyring_store: KeyringStore) -> Token:
        old = read_refresh(keyring_store.keyring, key)  # inside the lock: the newest one
        form = {"grant_type": "refresh_token", "refresh_token": old, "client_id": sso["client"]}
        with idp.opened(sso["issuer"], exchange.settings(key), exchange.deadline(key)) as session:
            try:
                answer = idp.post(session, sso["token_endpoint"], form)
            except idp.OAuthError as exc:
                if exc.error == "invalid_grant":  # revoked, expired, reused: the session is over
                    raise idp.expired(key) from None
                raise
            new = answer.get("refresh_token")
            if isinstance(new, str) and new and new != old:
                # Rotated: the only keyring write, first of all (the IdP has revoked the old one already).
                _keep_rotated(keyring_store, key, new, refresh_expiry(answer))
            token = answer.get("id_token")
            if not isinstance(token, str):
                raise IdPError(f"the identity provider {session.key} refreshed without an ID token")
            jwks = idp.get_json(session, sso["jwks_uri"])
        # PyJWT (and cryptography's compiled core) only where an ID token is checked: logout, list and
        # doctor load this module too, and a Windows that cannot load cryptography still logs users in.
        from quay_cred_helper.sso import idtoken  # noqa: PLC0415

        claims = idtoken.check(token, jwks, sso["issuer"], sso["client"])
        if claims.get("sub") != sso["subject"]:
            raise IdPError("the identity provider refreshed the session of another user: refused")
        log.debug("SSO ID token for %s refreshed", key)
        return Token.issued(token)

    return exchange.made(key, entry.identity, obtain)


def _keep_rotated(keyring_store: KeyringStore, key: str, token: str, expires: str) -> None:
    with keyring_store.index.lock():
        write_refresh(keyring_store.keyring, key, token)
        current = keyring_store.index.get(key)
        if current is not None and current.sso is not None and expires:
            current.sso["refresh_expires"] = expires
            keyring_store.index.put(key, current)


def credentials(use: Uses, key: str, entry: IndexEntry) -> Callable[[], tuple[str, str]]:
    """What a /v2/auth token request sends for an SSO session: $oauthtoken and the ID token."""
    return lambda: (USERNAME, id_token(use, key, entry).token)


def end(use: Uses, key: str, entry: IndexEntry, warn: Callable[[str], None]) -> None:
    """Log out: revoke the refresh token at the IdP (RFC 7009) when it names a revocation endpoint,
    then erase the keyring entries, the index entry and the cached ID token."""
    sso = entry.sso or {}
    keyring = use.keyring_store.keyring
    endpoint = sso.get("revocation_endpoint", "")
    if endpoint:
        try:
            token = read_refresh(keyring, key)
            form = {"token": token, "token_type_hint": "refresh_token", "client_id": sso.get("client", "")}
            with idp.opened(sso["issuer"], use.config.settings(key)) as session:
                response, _ = session.send(endpoint, method="POST", data=form, limit=idp.MAX_ANSWER)
            if response.status_code != 200:
                warn(f"the identity provider did not revoke the session (HTTP {response.status_code}); erased here")
        except HelperError as exc:
            warn(f"the SSO session was not revoked at the identity provider ({exc.problem}); erased here")
    use.cache.drop(key)
    keyring.backend()
    with use.keyring_store.index.lock():
        parts = _parts_of(keyring, key)
        use.keyring_store.index.remove(key)
        existed = keyring.delete(SERVICE, key)
        for name in parts:
            with contextlib.suppress(KeyringError):
                keyring.delete(SERVICE, name)
    if not existed and not sso:
        raise NotFound()
