"""The two ways a person signs in at the IdP: authorization code with PKCE, and the device grant.

* Authorization code + PKCE (RFC 7636, S256), with `state` and `nonce`: a one-shot listener on
  127.0.0.1 (an ephemeral port, or `--port` for an SSH tunnel) is the redirect URI (RFC 8252 7.3); the
  browser is opened with Python's `webbrowser` (the user's BROWSER), or the URL printed. The listener
  answers the browser with a page that says to return to the terminal, refuses a wrong `state`, and
  gives up after `wait` seconds.
* Device authorization grant (RFC 8628): the verification URI and user code printed; polled at the
  IdP's `interval`, 5 s more on `slow_down`, until `expires_in`, `access_denied` or `expired_token`.

Each returns the token endpoint's answer; idtoken.py checks its ID token.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import secrets
import time
import urllib.parse

from quay_cred_helper.errors import IdPError, InputError
from quay_cred_helper.sso.idp import OAuthError, post

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from typing import Any

    from quay_cred_helper.registry.session import Session
    from quay_cred_helper.sso.idp import Provider

    Say = Callable[[str], None]
    OpenSession = Callable[[], AbstractContextManager[Session]]  # a session to the IdP

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>quay-cred-helper</title></head><body>"
    b"<p id='result'>%s</p></body></html>"
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Callback(http.server.BaseHTTPRequestHandler):
    """The browser's one visit: the IdP's redirect with `code` and `state` (or `error`)."""

    server: _Listener
    # A connection that sends nothing (a browser's speculative preconnect) must not hold the one-shot
    # listener: its read times out and the listener waits for the next one.
    timeout = 3

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        listener = self.server
        if parsed.path != "/callback":
            return self._answer(404, b"Not found")
        if not secrets.compare_digest(query.get("state", ""), listener.state):
            listener.refused += 1
            return self._answer(400, b"This answer is not for this login (state): refused.")
        listener.answer = query
        if "error" in query:
            return self._answer(200, b"Sign-in refused. You can close this window and return to the terminal.")
        return self._answer(200, b"Signed in. You can close this window and return to the terminal.")

    def _answer(self, status: int, text: bytes) -> None:
        body = PAGE % text
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class _Listener(http.server.HTTPServer):
    def __init__(self, port: int, state: str) -> None:
        try:
            super().__init__(("127.0.0.1", port), _Callback)
        except OSError as exc:
            raise InputError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", "choose another --port") from None
        self.state = state
        self.answer: dict[str, str] | None = None
        self.refused = 0


def authorization_code(
    opened: OpenSession,
    provider: Provider,
    client_id: str,
    scopes: str,
    port: int,
    browse: Callable[[str], bool] | None,
    say: Say,
    wait: float,
) -> tuple[dict[str, Any], str]:
    """Authorization code + PKCE: (the token answer, the nonce sent). `browse(url)` opens a browser
    (False: it could not); None prints the URL only."""
    if not provider.authorization:
        raise IdPError(f"{provider.issuer} offers no authorization endpoint", "use --device")
    verifier = secrets.token_urlsafe(64)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    listener = _Listener(port, state)
    try:
        redirect = f"http://127.0.0.1:{listener.server_address[1]}/callback"
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect,
            "scope": scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        url = provider.authorization + ("&" if "?" in provider.authorization else "?") + urllib.parse.urlencode(query)
        if browse is None or not browse(url):
            say(f"Open this URL in a browser to sign in:\n{url}")
        else:
            say(f"Signing in in your browser (or open: {url})")
        end = time.monotonic() + wait
        while listener.answer is None:
            left = end - time.monotonic()
            if left <= 0:
                raise IdPError(f"no sign-in came back within {wait:g} s", "try again, or use --device")
            listener.timeout = left
            listener.handle_request()
    finally:
        listener.server_close()
    answer = listener.answer
    if "error" in answer:
        raise _refused(answer["error"], provider)
    if not answer.get("code"):
        raise IdPError("the identity provider came back without a code")
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": redirect,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    with opened() as session:
        return post(session, provider.token, form), nonce


def device(
    opened: OpenSession,
    provider: Provider,
    client_id: str,
    scopes: str,
    say: Say,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The device grant (RFC 8628): the token answer once the person approved."""
    if not provider.device:
        raise IdPError(f"{provider.issuer} offers no device authorization", "use the browser flow (--browser)")
    with opened() as session:
        started = post(session, provider.device, {"client_id": client_id, "scope": scopes})
    device_code, user_code = started.get("device_code"), started.get("user_code")
    uri = started.get("verification_uri_complete") or started.get("verification_uri")
    if not all(isinstance(x, str) and x for x in (device_code, user_code, uri)):
        raise IdPError("the identity provider's device authorization answer lacks its codes")
    assert isinstance(device_code, str)
    say(f"To sign in, open {uri}\nand confirm the code {user_code}")
    interval = _number(started.get("interval"), 5.0)
    end = time.monotonic() + _number(started.get("expires_in"), 600.0)
    form = {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id}
    while True:
        if time.monotonic() + interval > end:
            raise IdPError("the device code expired before it was approved", "run the login again")
        sleep(interval)
        try:
            with opened() as session:
                return post(session, provider.token, form)
        except OAuthError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval += 5  # RFC 8628 3.5
                continue
            if exc.error == "expired_token":
                raise IdPError("the device code expired before it was approved", "run the login again") from None
            raise _refused(exc.error, provider) from None


def _refused(error: str, provider: Provider) -> IdPError:
    if error == "access_denied":
        return IdPError("the sign-in was refused at the identity provider (access_denied)")
    return IdPError(f"{provider.issuer} refused the sign-in: {error[:80]}")


def _number(value: object, default: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 86400
    return float(value) if ok else default  # type: ignore[arg-type]
