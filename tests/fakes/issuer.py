"""Keyless robots' counterparts: an OIDC issuer and GitHub Actions' token service, both on 127.0.0.1.

The issuer serves discovery and JWKS over https (a test CA that the Quay-compatible
registry trusts, as Quay fetches issuers over https only) and signs tokens on demand.
"""

import base64
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(number):
    return b64url(number.to_bytes((number.bit_length() + 7) // 8, "big"))


class _Server:
    handler = None

    def __init__(self, ssl_context=None):
        handler = type("Handler", (self.handler,), {"owner": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if ssl_context:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if ssl_context else "http"
        self.requests = []

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    owner = None

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _IssuerHandler(_Handler):
    def do_GET(self):
        issuer = self.owner
        issuer.requests.append(self.path)
        if self.path == "/.well-known/openid-configuration":
            return self.answer(200, {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"})
        if self.path == "/jwks":
            return self.answer(200, {"keys": issuer.jwks()})
        return self.answer(404, {})


class OIDCIssuer(_Server):
    """An https issuer (certificate from `ca`, a trustme.CA) that signs RS256 (or RS384) tokens with a `kid`."""

    handler = _IssuerHandler

    def __init__(self, ca):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        super().__init__(context)
        self.ca = ca
        self.keys = {}
        self.rotate()

    def trusted_by(self, registry, workdir):
        """Make a QuayRegistry trust this issuer's certificate (as a Quay trusts the public web's CAs)."""
        path = workdir / "oidc-ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        registry.oidc_ca = str(path)

    def rotate(self):
        """A new signing key: the old kid disappears from the JWKS, as when an issuer rotates."""
        self.kid = f"key-{len(self.keys) + 1}"
        self.keys = {self.kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}

    def jwks(self):
        found = []
        for kid, key in self.keys.items():
            numbers = key.public_key().public_numbers()
            found.append(
                {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": _uint(numbers.n), "e": _uint(numbers.e)}
            )
        return found

    def token(
        self, subject, audience="quay", lifetime=600, issued=None, issuer=None, kid=None, alg="RS256", omit=(), **claims
    ):
        """A signed token. `alg`: RS256, RS384, or HS256 (signed with a shared secret, which Quay refuses);
        `omit`: claims left out (iat, exp, aud); `kid=False`: no kid header; `forged=True` (in claims):
        signed with a key that is not the issuer's."""
        forged = claims.pop("forged", False)
        now = int(time.time()) if issued is None else int(issued)
        body = {"iss": issuer or self.url, "sub": subject, "aud": audience, "iat": now, "exp": now + lifetime, **claims}
        for name in omit:
            body.pop(name, None)
        header = {"alg": alg, "typ": "JWT"}
        if kid is not False:
            header["kid"] = kid or self.kid
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
        if alg == "HS256":
            signature = hmac.new(b"shared-secret", signing_input.encode(), hashlib.sha256).digest()
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if forged else self.keys[self.kid]
            digest = hashes.SHA384() if alg == "RS384" else hashes.SHA256()
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), digest)
        return f"{signing_input}.{b64url(signature)}"


class _GitHubHandler(_Handler):
    def do_GET(self):
        service = self.owner
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        service.requests.append({"query": query, "authorization": self.headers.get("Authorization")})
        if self.headers.get("Authorization") != f"bearer {service.request_token}":
            return self.answer(401, {"message": "Bad credentials"})
        audience = query.get("audience", [""])[0]
        return self.answer(200, {"value": service.issuer.token(service.subject, audience=audience or "github")})


class GitHubTokenService(_Server):
    """A stand-in for the runner's ACTIONS_ID_TOKEN_REQUEST_URL (plain http: it is on loopback)."""

    handler = _GitHubHandler

    def __init__(self, issuer, subject, request_token="runner-request-token"):
        super().__init__()
        self.issuer, self.subject, self.request_token = issuer, subject, request_token

    def env(self):
        """The variables the runner sets for a job with `permissions: id-token: write` (the URL has a query)."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}/_apis/idtoken?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }
