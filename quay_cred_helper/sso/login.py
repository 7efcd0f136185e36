"""`login --sso`: sign in at the IdP, check what it sent, have Quay accept it once, then keep the session.

Nothing is stored until the ID token passed every check (idtoken.py) and Quay accepted it at
/v2/auth as `$oauthtoken`; a refusal stores nothing and says what fixes it (quay.py).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import webbrowser

from quay_cred_helper.errors import IdPError, InputError
from quay_cred_helper.registry.cache import Token
from quay_cred_helper.sso import apptoken, flows, idp, idtoken, quay, session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from quay_cred_helper.registry.session import Session
    from quay_cred_helper.sso.session import Uses

WAIT = 300.0  # seconds the browser flow waits for the person to sign in


def display_likely() -> bool:
    """Whether a browser can be opened here: a desktop, or a BROWSER named; not an SSH session without one."""
    if os.environ.get("BROWSER"):
        return True
    if sys.platform in ("win32", "darwin"):
        return not os.environ.get("SSH_CONNECTION")
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _browse(url: str) -> bool:
    """Open the browser in the background: some BROWSER commands wait for the browser to close, while
    the listener must already answer it."""
    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    return True


def login(
    use: Uses,
    key: str,
    server: str,
    issuer: str | None,
    client: str | None,
    flow: str,
    port: int,
    browser: bool,
    say: Callable[[str], None],
    app_token: bool = False,
) -> tuple[str, str]:
    """Sign in and keep the session (or, with `app_token`, an app token made with it: apptoken.py):
    (the Quay user, the issuer)."""
    settings = use.config.settings(key)
    issuer = idp.check_issuer(issuer or settings.sso_issuer or _no_issuer(key, settings.where("sso_issuer = URL", key)))
    exchange = use.tokens(cached=False)
    if not client:
        client = settings.sso_client_id
    if not client:
        offered = quay.client_ids(exchange, key)
        hint = (
            f" (Quay's own OIDC login client is {offered[0]}; it must allow PKCE or the device grant)"
            if offered
            else ""
        )
        raise InputError(
            f"no SSO client id for {key}",
            f"pass --client-id ID or set {settings.where('sso_client_id = ID', key)}{hint}",
        )
    scopes = settings.sso_scopes
    if app_token:  # no refresh token is kept: ask for none that outlives the sign-in
        scopes = " ".join(scope for scope in scopes.split() if scope != "offline_access")

    def opened() -> AbstractContextManager[Session]:
        return idp.opened(issuer, settings)

    with idp.opened(issuer, settings) as s:
        provider = idp.discover(s, issuer)
    flow = flow or ("browser" if display_likely() else "device")
    if flow == "device" and not provider.device:
        say(f"{issuer} offers no device grant: signing in in a browser instead")
        flow = "browser"
    elif flow == "browser" and not provider.authorization and provider.device:
        say(f"{issuer} offers no browser sign-in: using a device code instead")
        flow = "device"
    nonce = ""
    if flow == "device":
        answer = flows.device(opened, provider, client, scopes, say)
    else:
        browse = _browse if browser else None
        answer, nonce = flows.authorization_code(opened, provider, client, scopes, port, browse, say, WAIT)
    token, refresh = answer.get("id_token"), answer.get("refresh_token")
    if not isinstance(token, str):
        raise IdPError(f"{issuer} sent no ID token", f"check that the scopes ({scopes}) include openid")
    with idp.opened(issuer, settings) as s:
        jwks = idp.get_json(s, provider.jwks_uri)
    claims = idtoken.check(token, jwks, provider.issuer, client, nonce)
    if not app_token and (not isinstance(refresh, str) or not refresh):
        raise IdPError(
            f"{issuer} gave no refresh token: nothing was stored",
            "ask the IdP admin to allow refresh tokens for the client (offline_access), or check sso_scopes",
        )
    user = quay.verify(exchange, key, token, client, provider.issuer)
    user = user or str(claims.get("preferred_username") or claims["sub"]).split("@")[0]
    record = session.record(provider, client, claims, user, scopes)
    id_token = Token.issued(token)
    if id_token.expires_at <= time.time():
        raise IdPError("the identity provider's ID token is already expired", "check this machine's clock")
    if app_token:
        apptoken.store(use, key, server, record, token, say)
        return user, provider.issuer
    previous = use.keyring_store.index.get(key)
    assert isinstance(refresh, str)
    session.store(use, key, server, record, refresh, id_token, session.refresh_expiry(answer))
    if previous is not None and previous.app_token:
        apptoken.replaced(use, key, previous.app_token, token, say)  # the session replaces an app token
    return user, provider.issuer


def _no_issuer(key: str, where: str) -> str:
    raise InputError(f"no SSO issuer for {key} (Quay does not publish it)", f"pass --issuer URL or set {where}")
