"""A test identity provider for SSO logins, on 127.0.0.1 over https with its own CA (a trustme.CA).

It serves what a company's IdP (Keycloak, Entra ID, Okta) serves a public CLI client:

* discovery (`/.well-known/openid-configuration`) and the JWKS;
* `/authorize`: authorization code with PKCE (S256 only), `state` and `nonce`, through a login page
  (an HTML form posted to `/login`), then a redirect to the client's loopback `redirect_uri`;
* `/token`: `authorization_code` (the verifier checked against the challenge), `refresh_token` (rotated
  on each use; a rotated token presented again revokes its whole family, as Keycloak's "revoke refresh
  token" and Okta's rotation do) and the device code grant (RFC 8628 polling answers);
* `/device` (device authorization) and `/device/verify`, the verification page (a form to approve);
* `/revoke` (RFC 7009: 200 for any token, known or not).

ID tokens are RS256 with a `kid` and `typ: JWT`, `aud` the client (plus `extra_audiences`, as an
audience mapper adds Quay's CLIENT_ID), `azp`, `nonce`, `email`, `email_verified`, `preferred_username`.
Refresh tokens are opaque and start with REFRESH_PREFIX, so the secret watcher can look for them.

Switches for misbehaving on cue (attributes; tests set them): `slow` (seconds before each /token
answer), `slow_down` (that many device polls answered `slow_down`), `access_denied` (the user refuses:
on the login page and the verification page), `wrong_nonce`, `no_typ`, `no_refresh` (no refresh token
issued), `rotation` (False: the refresh token is kept, as Entra ID's public clients often do),
`id_token_lifetime`, `refresh_lifetime`, `refresh_length` (a long refresh token: Windows' 2,560-byte cap).

`autologin` (username, password) makes the login and verification pages submit themselves with one line
of script: a test-only switch, so that a headless browser (which cannot type) drives the real forms.
"""

import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.fakes.issuer import OIDCIssuer, _Handler, b64url

REFRESH_PREFIX = "R3FRESHT0KEN"  # every refresh token this IdP issues starts with it
# Every ID token's header starts with this member, so its encoding starts alike: the secret watcher's needle.
_MARK_MEMBER = '{"idp": "test-idp-sso", '  # 24 bytes: 32 base64url characters, whatever follows
ID_TOKEN_MARK = b64url(_MARK_MEMBER.encode())
CLIENT_ID = "quay-cli"  # the public CLI client registered at the IdP
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class IdPUser:
    def __init__(self, username, password, email=None, subject=None):
        self.username, self.password = username, password
        self.email = email or f"{username}@example.com"
        self.subject = subject or f"sub-{username}-{secrets.token_hex(4)}"


class _IdPHandler(_Handler):
    def form(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}

    def query(self):
        parsed = urllib.parse.urlsplit(self.path)
        return parsed.path, {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}

    def page(self, status, body, headers=()):
        data = f"<!doctype html><html><head><title>Test IdP</title></head><body>{body}</body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        idp = self.owner
        path, query = self.query()
        idp.log("GET", path)
        if path == "/.well-known/openid-configuration":
            return self.answer(200, idp.discovery())
        if path == "/jwks":
            return self.answer(200, {"keys": idp.jwks()})
        if path == "/authorize":
            return self.authorize(query)
        if path == "/device/verify":
            return self.verification_page(query.get("user_code", ""))
        return self.answer(404, {"error": "not_found"})

    def do_POST(self):
        idp = self.owner
        path, _ = self.query()
        form = self.form()
        idp.log("POST", path, form.get("grant_type", ""))
        if path == "/login":
            return self.login(form)
        if path == "/token":
            if idp.slow:
                time.sleep(idp.slow)
            status, body = idp.token(form)
            return self.answer(status, body)
        if path == "/device":
            status, body = idp.device_authorization(form)
            return self.answer(status, body)
        if path == "/device/approve":
            return self.approve(form)
        if path == "/revoke":
            idp.revoke(form.get("token", ""))
            return self.answer(200, {})
        return self.answer(404, {"error": "not_found"})

    # -- the authorization code flow --------------------------------------------------------------

    def authorize(self, query):
        idp = self.owner
        redirect = query.get("redirect_uri", "")
        client = query.get("client_id")
        if client not in idp.clients or not idp.loopback_redirect(redirect):
            return self.page(400, "<p>Invalid client or redirect_uri</p>")
        problem = None
        if query.get("response_type") != "code":
            problem = "unsupported_response_type"
        elif query.get("code_challenge_method") != "S256" or len(query.get("code_challenge", "")) < 43:
            problem = "invalid_request"  # PKCE S256 is required of public clients
        if problem:
            return self.redirect(idp.with_query(redirect, error=problem, state=query.get("state", "")))
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
        )
        return self.sign_in_form("/login", fields, "Sign in")

    def sign_in_form(self, action, fields, button):
        """A page with a form asking for the user's name and password (prefilled and submitted by one line of
        script under `autologin`)."""
        idp = self.owner
        username, password = idp.autologin or ("", "")
        script = "<script>document.forms[0].submit()</script>" if idp.autologin else ""
        return self.page(
            200,
            f'<form method="post" action="{action}">{fields}'
            f'<input name="username" value="{html.escape(username)}">'
            f'<input name="password" type="password" value="{html.escape(password)}">'
            f'<button type="submit">{button}</button></form>' + script,
        )

    def login(self, form):
        idp = self.owner
        redirect, state = form.get("redirect_uri", ""), form.get("state", "")
        if form.get("client_id") not in idp.clients or not idp.loopback_redirect(redirect):
            return self.page(400, "<p>Invalid client or redirect_uri</p>")
        if idp.access_denied:
            return self.redirect(idp.with_query(redirect, error="access_denied", state=state))
        user = idp.check_password(form.get("username", ""), form.get("password", ""))
        if user is None:
            return self.page(401, "<p>Invalid username or password</p>")
        code = secrets.token_urlsafe(24)
        with idp.lock:
            idp.codes[code] = {
                "client": form["client_id"],
                "redirect_uri": redirect,
                "challenge": form.get("code_challenge", ""),
                "nonce": form.get("nonce", ""),
                "scope": form.get("scope", ""),
                "user": user,
                "expires": time.time() + 60,
            }
        return self.redirect(idp.with_query(redirect, code=code, state=state))

    # -- the device grant's verification page --------------------------------------------------------

    def verification_page(self, user_code):
        field = f'<input name="user_code" value="{html.escape(user_code)}">'
        return self.sign_in_form("/device/approve", field, "Approve")

    def approve(self, form):
        idp = self.owner
        with idp.lock:
            grant = next((g for g in idp.device_codes.values() if g["user_code"] == form.get("user_code")), None)
            if grant is None:
                return self.page(400, "<p>Unknown code</p>")
            if idp.access_denied:
                grant["status"] = "denied"
                return self.page(200, "<p id='result'>Access denied</p>")
            user = idp.check_password(form.get("username", ""), form.get("password", ""))
            if user is None:
                return self.page(401, "<p>Invalid username or password</p>")
            grant["status"], grant["user"] = "approved", user
        return self.page(200, "<p id='result'>Device approved: you may close this window</p>")


class TestIdP(OIDCIssuer):
    """The identity provider. Use as a context manager; `.url` is its issuer."""

    handler = _IdPHandler
    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, ca, users=(), clients=(CLIENT_ID,)):
        super().__init__(ca)
        self.users = {u.username: u for u in users}
        self.clients = set(clients)
        self.lock = threading.Lock()
        self.codes = {}
        self.refresh_tokens = {}  # token -> {"family", "user", "client", "scope", "used", "expires"}
        self.revoked_families = set()
        self.device_codes = {}  # device code -> {"user_code", "client", "status", "user", "expires", "interval", ...}
        self.token_log = []  # {"grant", "status", "error", "refresh"} per /token request
        self.revocations = []  # every token /revoke was given
        self.access = []  # (method, path[, grant]) of every request
        # switches
        self.slow = 0.0
        self.slow_down = 0
        self.access_denied = False
        self.wrong_nonce = False
        self.no_typ = False
        self.no_refresh = False
        self.rotation = True
        self.revocation = True  # discovery names a revocation_endpoint
        self.device_grant = True  # discovery names a device_authorization_endpoint
        self.id_token_lifetime = 300
        self.refresh_lifetime = 1800
        self.refresh_length = 0
        self.device_interval = 1
        self.device_lifetime = 600
        self.extra_audiences = []
        self.autologin = None

    def log(self, *what):
        with self.lock:
            self.access.append(what)

    @staticmethod
    def with_query(url, **params):
        return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)

    @staticmethod
    def loopback_redirect(uri):
        """RFC 8252 7.3: http on the loopback address, any port."""
        parts = urllib.parse.urlsplit(uri)
        return parts.scheme == "http" and parts.hostname == "127.0.0.1" and parts.port is not None

    def check_password(self, username, password):
        user = self.users.get(username)
        return user if user is not None and secrets.compare_digest(user.password, password) else None

    def discovery(self):
        found = {
            "issuer": self.url,
            "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token",
            "jwks_uri": self.url + "/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "email", "profile", "offline_access"],
        }
        if self.device_grant:
            found["device_authorization_endpoint"] = self.url + "/device"
            found["grant_types_supported"].append(DEVICE_GRANT)
        if self.revocation:
            found["revocation_endpoint"] = self.url + "/revoke"
        return found

    # -- tokens -------------------------------------------------------------------------------------

    def id_token(self, user, client, nonce, lifetime=None):
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": user.subject,
            "aud": [client, *self.extra_audiences] if self.extra_audiences else client,
            "azp": client,
            "iat": now,
            "auth_time": now,
            "exp": now + (self.id_token_lifetime if lifetime is None else lifetime),
            "email": user.email,
            "email_verified": True,
            "preferred_username": user.username,
        }
        if nonce:
            claims["nonce"] = "not-" + nonce if self.wrong_nonce else nonce
        header = {"idp": "test-idp-sso", "alg": "RS256", "kid": self.kid}
        if not self.no_typ:
            header["typ"] = "JWT"
        encoded = json.dumps(header).encode()
        assert encoded.startswith(_MARK_MEMBER.encode())
        signing_input = f"{b64url(encoded)}.{b64url(json.dumps(claims).encode())}"
        signature = self.keys[self.kid].sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def _new_refresh(self, user, client, scope, family, nonce):
        """Call with the lock held."""
        filler = secrets.token_urlsafe(max(self.refresh_length - len(REFRESH_PREFIX), 32))
        token = (REFRESH_PREFIX + filler)[: self.refresh_length] if self.refresh_length else REFRESH_PREFIX + filler
        self.refresh_tokens[token] = {
            "family": family,
            "user": user,
            "client": client,
            "scope": scope,
            "nonce": nonce,
            "used": False,
            "expires": time.time() + self.refresh_lifetime,
        }
        return token

    def _issue(self, user, client, scope, nonce, family=None, refresh=True):
        """Call with the lock held: the token response (with a new refresh token when `refresh`)."""
        body = {
            "access_token": "AT." + secrets.token_urlsafe(16),  # an access token: Quay refuses these
            "token_type": "Bearer",
            "expires_in": self.id_token_lifetime,
            "id_token": self.id_token(user, client, nonce),
            "scope": scope,
        }
        if refresh and not self.no_refresh and "offline_access" in scope.split():
            body["refresh_token"] = self._new_refresh(user, client, scope, family or secrets.token_hex(8), nonce)
            body["refresh_expires_in"] = self.refresh_lifetime
        return body

    def token(self, form):
        grant = form.get("grant_type", "")
        with self.lock:
            status, body = self._token(grant, form)
            self.token_log.append(
                {
                    "grant": grant,
                    "status": status,
                    "error": body.get("error"),
                    "refresh": form.get("refresh_token"),
                    "issued_refresh": body.get("refresh_token"),
                }
            )
        return status, body

    def _token(self, grant, form):
        client = form.get("client_id", "")
        if client not in self.clients:
            return 401, {"error": "invalid_client"}
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            if code is None or code["expires"] < time.time() or code["client"] != client:
                return 400, {"error": "invalid_grant", "error_description": "Code not valid"}
            if form.get("redirect_uri") != code["redirect_uri"]:
                return 400, {"error": "invalid_grant", "error_description": "Incorrect redirect_uri"}
            verifier = form.get("code_verifier", "")
            digest = b64url(hashlib.sha256(verifier.encode()).digest())
            if not verifier or not secrets.compare_digest(digest, code["challenge"]):
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            return 200, self._issue(code["user"], client, code["scope"], code["nonce"])
        if grant == "refresh_token":
            presented = form.get("refresh_token", "")
            found = self.refresh_tokens.get(presented)
            if found is None or found["client"] != client:
                return 400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}
            if found["family"] in self.revoked_families:
                return 400, {"error": "invalid_grant", "error_description": "Session not active"}
            if found["expires"] < time.time():
                return 400, {"error": "invalid_grant", "error_description": "Token is not active"}
            if found["used"]:
                # A rotated refresh token presented again: someone else holds the family. Revoke it all.
                self.revoked_families.add(found["family"])
                return 400, {"error": "invalid_grant", "error_description": "Maximum allowed refresh token reuse"}
            # Without rotation the client keeps the refresh token it has.
            body = self._issue(found["user"], client, found["scope"], "", family=found["family"], refresh=self.rotation)
            found["used"] = "refresh_token" in body
            return 200, body
        if grant == DEVICE_GRANT:
            found = self.device_codes.get(form.get("device_code", ""))
            if found is None or found["client"] != client:
                return 400, {"error": "invalid_grant"}
            now = time.time()
            if found["expires"] < now:
                return 400, {"error": "expired_token"}
            if self.slow_down > 0:
                self.slow_down -= 1
                found["interval"] += 5
                return 400, {"error": "slow_down"}
            if found["status"] == "denied":
                return 400, {"error": "access_denied"}
            if found["status"] == "pending":
                return 400, {"error": "authorization_pending"}
            if found["status"] == "used":
                return 400, {"error": "invalid_grant"}
            found["status"] = "used"
            return 200, self._issue(found["user"], client, found["scope"], "")
        return 400, {"error": "unsupported_grant_type"}

    def device_authorization(self, form):
        client = form.get("client_id", "")
        if client not in self.clients or not self.device_grant:
            return 400, {"error": "unauthorized_client"}
        device_code = secrets.token_urlsafe(24)
        user_code = "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(8))
        user_code = user_code[:4] + "-" + user_code[4:]
        with self.lock:
            self.device_codes[device_code] = {
                "user_code": user_code,
                "client": client,
                "scope": form.get("scope", ""),
                "status": "pending",
                "user": None,
                "expires": time.time() + self.device_lifetime,
                "interval": self.device_interval,
            }
        uri = self.url + "/device/verify"
        return 200, {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": uri,
            "verification_uri_complete": self.with_query(uri, user_code=user_code),
            "expires_in": self.device_lifetime,
            "interval": self.device_interval,
        }

    def approve_device(self, user_code, username, deny=False):
        """What a person does on the verification page (tests that do not drive a browser)."""
        with self.lock:
            for grant in self.device_codes.values():
                if grant["user_code"] == user_code:
                    grant["status"], grant["user"] = ("denied", None) if deny else ("approved", self.users[username])
                    return
        raise KeyError(user_code)

    def revoke(self, token):
        """RFC 7009: a refresh token revokes its family; anything else is accepted and ignored."""
        with self.lock:
            self.revocations.append(token)
            found = self.refresh_tokens.get(token)
            if found is not None:
                self.revoked_families.add(found["family"])

    def refresh_grants(self):
        return [e for e in self.token_log if e["grant"] == "refresh_token"]

    def live_refresh_tokens(self):
        """Refresh tokens that would still be honoured."""
        now = time.time()
        with self.lock:
            return [
                t
                for t, f in self.refresh_tokens.items()
                if not f["used"] and f["family"] not in self.revoked_families and f["expires"] > now
            ]
