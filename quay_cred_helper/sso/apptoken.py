"""`login --sso --app-token`: an app-specific token made with the SSO login, for clients that keep a
credential for hours and for identity providers that give a public client no refresh token.

After the SSO login (ID token checked, one /v2/auth accepted it), the ID token as Bearer on
`POST /api/v1/user/apptoken {"title"}` makes the token; Quay answers its `token_code` once. The keyring
keeps it as an ordinary `$app` secret, so `get` answers it as any stored `$app` secret. The index records
(never the token) the SSO session it came from, its uuid and the expiry Quay gave it
(APP_SPECIFIC_TOKEN_EXPIRATION; none unless the admin sets one). No refresh token is kept.

Renewal is a login: `login REG --sso --app-token` again makes a new token, stores it, then revokes the
old one (`DELETE /api/v1/user/apptoken/<uuid>`) with the new ID token. Nothing renews by itself: with no
refresh token, only a sign-in gives the ID token Quay wants. `list --long` says when the token is due:
in the last tenth of its lifetime, the window Quay's own `?expiring=true` uses. Logout revokes it with
the login's ID token while that is still fresh, else says where to revoke it.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import json
import platform
import time

from quay_cred_helper import fastjson, log
from quay_cred_helper.credentials.index import IndexEntry
from quay_cred_helper.credentials.keyring_store import SERVICE
from quay_cred_helper.errors import HelperError, RegistryError
from quay_cred_helper.registry.cache import Token
from quay_cred_helper.registry.session import json_body
from quay_cred_helper.sso import session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from quay_cred_helper.registry.tokens import TokenExchange
    from quay_cred_helper.sso.session import Uses

USERNAME = "$app"  # Quay's username for an app-specific token at /v2/auth


def title(now: float) -> str:
    """What the token is called in Quay's UI: this tool, this machine, today."""
    day = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%d")
    return f"quay-cred-helper on {platform.node() or 'an unnamed machine'}, {day}"


def _call(
    exchange: TokenExchange, key: str, method: str, path: str, id_token: str, body: bytes | None = None
) -> tuple[int, Any]:
    """One /api/v1 request with the ID token as Bearer: (status, JSON answer or None)."""
    headers = {"Authorization": f"Bearer {id_token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    with exchange.opened(key) as s:
        origin = exchange.challenge(s).base
        response, answer = s.send(origin + path, headers=headers, method=method, content=body)
    return response.status_code, json_body(answer)


def _refused(key: str, status: int, answer: object) -> RegistryError:
    message = ""
    if isinstance(answer, dict):
        found = answer.get("error") or answer.get("error_message") or answer.get("message")
        message = f": {str(found)[:200]}" if found else ""
    if status == 404:
        fix = "ask the Quay admin to turn on FEATURE_APP_SPECIFIC_TOKENS, or log in with --sso alone"
    else:
        fix = "log in with --sso alone (no app token), or ask the Quay admin why the API refuses the ID token"
    return RegistryError(f"{key} made no app token (HTTP {status}{message}): nothing was stored", fix)


def create(exchange: TokenExchange, key: str, id_token: str, now: float) -> tuple[str, dict[str, str]]:
    """Make an app token: (its token_code, the index's record of it: uuid, title, created, expires)."""
    body = json.dumps({"title": title(now)}).encode()
    status, answer = _call(exchange, key, "POST", "/api/v1/user/apptoken", id_token, body)
    made = answer.get("token") if isinstance(answer, dict) else None
    code = made.get("token_code") if isinstance(made, dict) else None
    if status != 200 or not isinstance(made, dict) or not isinstance(code, str) or not code:
        raise _refused(key, status, answer)
    log.secret(code)
    uuid = made.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        raise RegistryError(f"{key} made an app token without a uuid: nothing was stored")
    record = {"uuid": uuid, "title": str(made.get("title") or ""), "created": str(int(now))}
    expires = _unix(made.get("expiration"))
    if expires:
        record["expires"] = expires
    return code, record


def _unix(date: object) -> str:
    """Quay's RFC 2822 date (format_date) as Unix time; "" for none (no expiry) or one we cannot read."""
    if not isinstance(date, str) or not date:
        return ""
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return ""
    # Quay writes "-0000" (formatdate of a UTC time), which Python reads as a naive time: it is UTC.
    return str(int(when.replace(tzinfo=when.tzinfo or datetime.timezone.utc).timestamp()))


def revoke(exchange: TokenExchange, key: str, id_token: str, uuid: str) -> bool:
    """DELETE /api/v1/user/apptoken/<uuid>: True when Quay revoked it or it is gone already."""
    status, _ = _call(exchange, key, "DELETE", f"/api/v1/user/apptoken/{uuid}", id_token)
    return status in (204, 200, 404)


def store(
    use: Uses,
    key: str,
    server: str,
    sso: dict[str, str],
    id_token: str,
    warn: Callable[[str], None],
) -> None:
    """Make an app token and keep it as the registry's `$app` secret; revoke the one it replaces, and end
    an SSO session it replaces."""
    exchange = use.tokens(cached=False)
    previous = use.keyring_store.index.get(key)
    code, made = create(exchange, key, id_token, time.time())
    record = dict(made, issuer=sso["issuer"], client=sso["client"], subject=sso["subject"], user=sso["user"])
    if previous is not None and previous.sso:
        session.end(use, key, previous, warn)  # its refresh token revoked, its parts erased
    entry = IndexEntry.new(server, USERNAME, code)
    entry.app_token = record
    keyring_store = use.keyring_store
    try:
        keyring_store.keyring.backend()  # loading keyring outside the lock
        with keyring_store.index.lock():
            keyring_store.keyring.set(SERVICE, key, fastjson.dumps_strings({"username": USERNAME, "secret": code}))
            keyring_store.index.put(key, entry)
    except BaseException:
        with contextlib.suppress(HelperError):  # not kept here: leave no live token at Quay either
            revoke(exchange, key, id_token, made["uuid"])
        raise
    use.cache.drop(key)
    # The login's ID token, cached under the session's identity: logout revokes with it while it is fresh.
    use.cache.save(key, identity(record), [], Token.issued(id_token))
    if previous is not None and previous.app_token:
        replaced(use, key, previous.app_token, id_token, warn)


def identity(record: dict[str, str]) -> str:
    """The cache identity of the SSO session an app token came from (its ID token is cached under it)."""
    return session.identity(record["issuer"], record["client"], record["subject"])


_BY_HAND = "revoke it in Quay's web UI (Account Settings, Docker CLI and other Application Tokens)"


def replaced(use: Uses, key: str, old: dict[str, str], id_token: str | None, warn: Callable[[str], None]) -> None:
    """Revoke an app token that is replaced or logged out; a warning with the fix when it cannot be."""
    name = old.get("title") or old["uuid"]
    if id_token is None:
        warn(f'the app token "{name}" stays valid at Quay (the SSO sign-in is too old to revoke it): {_BY_HAND}')
        return
    try:
        if revoke(use.tokens(cached=False), key, id_token, old["uuid"]):
            return
        problem = "Quay refused"
    except HelperError as exc:
        problem = exc.problem
    warn(f'the app token "{name}" was not revoked ({problem}): {_BY_HAND}')


def end(use: Uses, key: str, entry: IndexEntry, warn: Callable[[str], None]) -> None:
    """Before logout erases the entry: revoke the app token with the login's ID token while it is fresh."""
    record = entry.app_token or {}
    if record.get("uuid"):
        hit = use.cache.load(key, identity(record), []) if record.get("subject") else None
        replaced(use, key, record, hit.token if hit else None, warn)
