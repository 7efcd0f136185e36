"""A local registry that answers like Red Hat Quay's Python endpoints.

Serves on 127.0.0.1 over plain HTTP (or HTTPS with a given certificate):

* `GET /v2/`: 401 with a Bearer challenge, 200 with a valid token.
* `GET /v2/auth`: Quay's token endpoint (GET only, Basic auth only, the
  scope grammar, downscoping with HTTP 200, `{"token"}` only, RS256 JWTs
  living 3600 s, robots' JWTs accepted back as their password, failed-login
  throttling with 429 and Retry-After).

It counts requests per path and can be told to misbehave on cue (`faults`).
The signing key comes with a self-signed certificate so that a real
registry (Debian's docker-registry, `auth: token`) can trust its tokens.
"""

import base64
import collections
import contextlib
import datetime
import hashlib
import http.server
import json
import math
import re
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME = 3600
FEDERATION = "/oauth2/federation/robot/token"
LEEWAY = 30  # seconds Quay allows on an OIDC token's iat and exp
ISSUER = "quay"
_REPO_PATH = re.compile(r"/v2/(?P<name>[a-z0-9._/-]+?)/(?P<kind>manifests|blobs|referrers)/(?P<ref>.+)")
_SCOPE = re.compile(r"repository:([a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)+):(pull|push|pull,push|push,pull|\*)")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SigningKey:
    """An RSA key and a self-signed certificate for it (created once per process)."""

    _shared = None

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quay-test-token-signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.cert_der_b64 = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()

    @classmethod
    def shared(cls):
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def sign(self, claims):
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.cert_der_b64]}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def verify(self, token):
        """Return the claims of a token we signed, or None."""
        try:
            head, payload, signature = token.split(".")
            self.key.public_key().verify(
                b64url_decode(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            return json.loads(b64url_decode(payload))
        except Exception:
            return None


class Account:
    def __init__(self, password, namespaces):
        self.password = password
        self.namespaces = set(namespaces)
        self.failures = 0
        self.last_failure = 0.0


class QuayRegistry:
    """The server. Use as a context manager; `.host` is `127.0.0.1:PORT`."""

    def __init__(
        self, users=None, robots=None, public_namespaces=(), anonymous=True, server_hostname=None, ssl_context=None
    ):
        self.accounts = {}
        for name, (password, namespaces) in (users or {}).items():
            self.accounts[name] = Account(password, namespaces)
        for name, token in (robots or {}).items():
            self.accounts[name] = Account(token, [name.split("+", 1)[0]])
        self.public_namespaces = set(public_namespaces)
        self.anonymous = anonymous
        self.key = SigningKey.shared()
        self.requests = collections.Counter()
        self.auth_log = []  # {"user", "scopes", "status", "credential"} per /v2/auth request
        self.created = set()  # repositories created by a push scope
        self.manifests = {}  # repository -> {digest: (media type, bytes)}
        self.tags = {}  # repository -> {tag: digest}
        self.blobs = {}  # repository -> {digest: bytes}
        self.uploads = {}  # upload location -> the bytes PATCHed so far (skopeo and podman push in chunks)
        self.referrers_api = True  # Quay's FEATURE_REFERRERS_API
        self.apply_filters = True  # answer artifactType filters (and say so with OCI-Filters-Applied)
        self.page_size = None  # Quay never paginates; set to behave like a registry that does
        self.date_offset = 0  # seconds added to the Date header: a registry with a wrong clock
        self.clock = time.time  # when tokens are issued (tests move it instead of sleeping)
        self.v2_open = False  # /v2/ answers 200 to anyone, as a maintenance page in front of Quay might
        # Robot federation: robot -> [{"issuer", "subject"(, "audiences")}] (Quay HEAD checks an entry's
        # audiences when it has some); issuers are fetched over https trusting oidc_ca.
        self.federation = {}
        self.oidc_ca = None
        # SSO (Quay's OIDC login service, DESIGN.md section 10): None, or {"issuer", "client_id",
        # "audiences", "check_aud" (3.18+; False: 3.9-3.17), "allowed_clients", "user_creation"}.
        self.sso = None
        self.sso_links = {}  # IdP subject -> Quay username (federated logins)
        self.sso_log = []  # {"subject", "status", "message"} per ID token presented (/v2/auth and /api/v1)
        # App-specific tokens (endpoints/api/appspecifictokens.py): uuid -> {"user", "title", "code", "created",
        # "expiration" (Unix time or None), "last_accessed"}; FEATURE_APP_SPECIFIC_TOKENS and
        # APP_SPECIFIC_TOKEN_EXPIRATION (seconds; None: no expiry, Quay's default). `sso_api` False: /api/v1
        # answers an ID token 401 (a proxy or policy in front of the API), while /v2/auth still takes it.
        self.app_tokens = {}
        self.app_tokens_feature = True
        self.app_token_expiration = None
        self.sso_api = True
        self.federation_log = []  # {"robot", "subject", "jti", "status"} per exchange
        self.faults = collections.deque()  # ("status", code) | ("slow", s) | ("malformed",) | ("notjwt",) ...
        self.api = RobotApi(self)  # Quay's REST API for robots: OAuth tokens, regenerate, federation, permissions
        self.hook = None  # hook(event) at "token request" and the regenerate stages (RobotApi): a test's cue
        self.lock = threading.Lock()
        self._server_hostname = server_hostname
        self._ssl_context = ssl_context
        self._httpd = None

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self):
        handler = type("Handler", (_Handler,), {"registry": self})
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        if self._ssl_context:
            self._httpd.socket = self._ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self):
        return "https" if self._ssl_context else "http"

    @property
    def url(self):
        return f"{self.scheme}://{self.host}"

    @property
    def server_hostname(self):
        """Quay's SERVER_HOSTNAME: the service name, and the `aud` of its tokens."""
        return self._server_hostname or self.host

    def count(self, path):
        return self.requests[path]

    def log_auth(self, user, scopes, status, credential):
        with self.lock:
            self.auth_log.append({"user": user, "scopes": scopes, "status": status, "credential": credential})

    # -- token logic ----------------------------------------------------------

    def issue(self, subject, service, access, context=None):
        now = int(self.clock())
        claims = {
            "iss": ISSUER,
            "aud": service,
            "nbf": now,
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
            "sub": subject,
            "access": access,
            "context": context or {"version": 2, "entity_kind": "anonymous" if subject is None else "user"},
        }
        return self.key.sign(claims)

    def check_password(self, username, password):
        """None if accepted, else Quay's message."""
        account = self.accounts.get(username)
        robot = "+" in username
        if account is None:
            return f"Could not find robot with username: {username}" if robot else "Invalid Username or Password"
        if password == account.password:
            return None
        if robot:
            claims = self.key.verify(password)
            if (
                claims
                and claims.get("sub") == username
                and claims.get("aud") == self.server_hostname
                and claims.get("exp", 0) > time.time()
            ):
                return None
            return f"Could not find robot with username: {username} and supplied password."
        return "Invalid Username or Password"

    def allowed_actions(self, username, name, wanted):
        namespace = name.split("/", 1)[0]
        account = self.accounts.get(username) if username else None
        if account and namespace in account.namespaces:
            if "push" in wanted and name not in self.created:
                self.created.add(name)  # as on Quay: a push scope creates the repository
            return [a for a in ("pull", "push", "*") if a in wanted]
        if namespace in self.public_namespaces and "pull" in wanted:
            return ["pull"]
        return []


def _parse_scope_actions(actions):
    return ["pull", "push", "*"] if actions == "*" else actions.split(",")


class _Handler(http.server.BaseHTTPRequestHandler):
    registry = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def date_time_string(self, timestamp=None):
        return super().date_time_string(time.time() + self.registry.date_offset)

    def handle(self):
        # A client that gave up (a timeout test) is nothing to report.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def send(self, status, body=b"", content_type="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def errors(self, status, code, message, headers=()):
        self.send(status, {"errors": [{"code": code, "message": message, "detail": {}}]}, headers=headers)

    def challenge(self, scope=None):
        reg = self.registry
        value = f'Bearer realm="{reg.url}/v2/auth",service="{reg.server_hostname}"'
        if scope:
            value += f',scope="{scope}"'
        return ("WWW-Authenticate", value)

    def bearer_claims(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        claims = self.registry.key.verify(auth[7:])
        if not claims or claims.get("exp", 0) < time.time() or claims.get("aud") != self.registry.server_hostname:
            return None
        return claims

    # -- dispatch ---------------------------------------------------------------

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        reg = self.registry
        with reg.lock:
            reg.requests[path] += 1
            fault = reg.faults.popleft() if reg.faults and path == "/v2/auth" else None
        if fault and self.apply_fault(fault):
            return
        if path == "/v2/auth":
            return self.token()
        if path == FEDERATION:
            return self.federated()
        if path.startswith("/api/v1/"):
            return robot_api(self, path)
        if path == "/config":  # public: the OIDC logins' CLIENT_IDs, never their issuers
            logins = [{"service": "sso", "CLIENT_ID": reg.sso["client_id"], "OIDC": True}] if reg.sso else []
            return self.send(200, {"external_login": logins, "config": {"SERVER_HOSTNAME": reg.server_hostname}})
        if path == "/v2/" or path == "/v2":
            if self.bearer_claims() is None and not reg.v2_open:
                return self.errors(
                    401,
                    "UNAUTHORIZED",
                    "access to the requested resource is not authorized",
                    headers=[self.challenge()],
                )
            return self.send(200, {})
        return self.repository_request(path)

    do_HEAD = do_GET

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        with self.registry.lock:
            self.registry.requests[path] += 1
        if path == FEDERATION:
            return self.send(405, b"<html>Method Not Allowed</html>", "text/html")
        if path.startswith("/api/v1/"):
            return robot_api(self, path)
        if path == "/v2/auth":
            # Quay's /v2/auth is GET only: no OAuth2 password or refresh grant.
            body = {"errors": [{"code": "UNSUPPORTED", "message": "The operation is unsupported.", "detail": {}}]}
            return self.send(405, body)
        return self.repository_request(path)

    do_PUT = do_PATCH = do_POST

    def do_DELETE(self):
        path = urllib.parse.urlsplit(self.path).path
        with self.registry.lock:
            self.registry.requests[path] += 1
        if path.startswith("/api/v1/"):
            return robot_api(self, path)
        return self.send(405, {})

    # -- repositories: manifests, blobs, referrers -------------------------------------------

    def repository_request(self, path):
        match = _REPO_PATH.fullmatch(path)
        if not match:
            return self.errors(404, "NOT_FOUND", "not found")
        reg = self.registry
        name, kind, ref = match.group("name"), match.group("kind"), match.group("ref")
        if kind == "referrers" and not reg.referrers_api:
            return self.send(404, {"error": "Not Found"})  # Quay registers no such route without the feature
        action = "pull" if self.command in ("GET", "HEAD") else "push"
        claims = self.bearer_claims()
        granted = {
            a
            for entry in (claims or {}).get("access", [])
            if entry.get("name") == name
            for a in entry.get("actions", [])
        }
        if action not in granted and "*" not in granted:
            scope = f"repository:{name}:{action}"
            return self.errors(
                401,
                "UNAUTHORIZED",
                "access to the requested resource is not authorized",
                headers=[self.challenge(scope)],
            )
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self.read_chunked()  # Go's clients stream blob uploads of unknown length
        with reg.lock:
            if kind == "blobs" and ref == "uploads/":
                return self.send(202, b"", headers=[("Location", f"/v2/{name}/blobs/uploads/{time.time_ns()}")])
            if kind == "blobs" and ref.startswith("uploads/") and self.command == "PATCH":
                reg.uploads[ref] = reg.uploads.get(ref, b"") + body
                received = f"0-{len(reg.uploads[ref]) - 1}"
                return self.send(202, b"", headers=[("Location", f"/v2/{name}/blobs/{ref}"), ("Range", received)])
            if kind == "blobs" and ref.startswith("uploads/"):
                body = reg.uploads.pop(ref, b"") + body
                digest = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("digest", [""])[0]
                if digest != "sha256:" + hashlib.sha256(body).hexdigest():
                    return self.errors(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
                reg.blobs.setdefault(name, {})[digest] = body
                return self.send(201, b"", headers=[("Docker-Content-Digest", digest)])
            if kind == "blobs":
                data = reg.blobs.get(name, {}).get(ref)
                if data is None:
                    return self.errors(404, "BLOB_UNKNOWN", "blob unknown to registry")
                return self.send(200, data, "application/octet-stream", headers=[("Docker-Content-Digest", ref)])
            if kind == "manifests" and self.command == "PUT":
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
                media_type = self.headers.get("Content-Type", "")
                reg.manifests.setdefault(name, {})[digest] = (media_type, body)
                if not ref.startswith("sha256:"):
                    reg.tags.setdefault(name, {})[ref] = digest
                return self.send(201, b"", headers=[("Docker-Content-Digest", digest)])
            if name not in reg.manifests:
                return self.errors(404, "NAME_UNKNOWN", "repository not found")
            if kind == "manifests":
                digest = ref if ref.startswith("sha256:") else reg.tags.get(name, {}).get(ref)
                stored = reg.manifests[name].get(digest)
                if stored is None:
                    return self.errors(404, "MANIFEST_UNKNOWN", "manifest unknown")
                return self.send(200, stored[1], stored[0], headers=[("Docker-Content-Digest", digest)])
            return self.referrers(name, ref)

    def read_chunked(self):
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def referrers(self, name, digest):
        reg = self.registry
        if not reg.referrers_api:
            return self.send(404, {"error": "Not Found"})
        if digest not in reg.manifests[name]:
            return self.errors(400, "MANIFEST_INVALID", "manifest invalid")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        wanted = query.get("artifactType", [])
        found = []
        for child, (media_type, body) in sorted(reg.manifests[name].items()):
            manifest = json.loads(body)
            if (manifest.get("subject") or {}).get("digest") != digest:
                continue
            descriptor = {
                "mediaType": media_type,
                "digest": child,
                "size": len(body),
                "artifactType": manifest.get("artifactType") or manifest.get("config", {}).get("mediaType"),
            }
            if manifest.get("annotations"):
                descriptor["annotations"] = manifest["annotations"]
            if not wanted or not reg.apply_filters or descriptor["artifactType"] in wanted:
                found.append(descriptor)
        headers = [("OCI-Filters-Applied", "artifactType")] if wanted and reg.apply_filters else []
        if reg.page_size:
            after = query.get("last", [""])[0]
            found = [d for d in found if d["digest"] > after]
            if len(found) > reg.page_size:
                found = found[: reg.page_size]
                link = f"/v2/{name}/referrers/{digest}?last={found[-1]['digest']}"
                if wanted:
                    link += "&" + urllib.parse.urlencode([("artifactType", t) for t in wanted])
                headers.append(("Link", f'<{link}>; rel="next"'))
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": found}
        # Quay copies the artifacts' annotations onto the index it returns.
        copied = {k: v for d in found for k, v in d.get("annotations", {}).items()}
        if copied:
            index["annotations"] = copied
        return self.send(200, index, "application/vnd.oci.image.index.v1+json", headers=headers)

    def apply_fault(self, fault):
        kind = fault[0]
        if kind == "status":
            self.errors(fault[1], "UNAVAILABLE", "service unavailable")
            return True
        if kind == "retry-after":
            self.send(429, b"Too many login attempts", "text/html", headers=[("Retry-After", str(fault[1]))])
            return True
        if kind == "slow":
            time.sleep(fault[1])
            return False
        if kind == "malformed":
            self.send(200, b'{"token": ')
            return True
        if kind == "raw":  # any bytes as a 200 body
            self.send(200, fault[1])
            return True
        if kind == "refuse":  # a 401 with the given message, as Quay words its refusals
            self.errors(401, "UNAUTHORIZED", fault[1])
            return True
        if kind == "notjwt":
            self.send(200, {"token": "not-a-jwt"})
            return True
        if kind == "token":  # any JSON body, e.g. a JWT without exp
            self.send(200, fault[1])
            return True
        if kind == "huge":  # 10 MB of JSON-looking bytes
            size = 10 * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(size // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client gave up, as it should
            return True
        if kind == "reset":  # headers, part of the body, then the connection drops
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"token": "ab')
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        raise ValueError(f"unknown fault {fault!r}")

    # -- robot federation, as quay/quay does it ------------------------------------------------------

    def federated(self):
        reg = self.registry
        auth = self.headers.get("Authorization", "")
        if not auth:
            return self.send(401, {"error": "No auth header"})
        try:
            assert auth.startswith("Basic ")
            robot, _, token = base64.b64decode(auth[6:]).decode().partition(":")
        except Exception:
            return self.send(401, {"error": "Invalid basic auth header"})
        if "+" not in robot:
            return self.send(401, {"error": "Invalid robot"})
        status, body, claims = self.check_federated(robot, token)
        with reg.lock:
            entry = {"robot": robot, "subject": claims.get("sub"), "jti": claims.get("jti"), "status": status}
            reg.federation_log.append(entry)
        if status == 500:
            return self.send(500, b"<html><body>Internal Server Error</body></html>", "text/html")
        if status != 200:
            return self.send(status, body)
        kind = {"version": 2, "entity_kind": "robot"}
        return self.send(200, {"token": reg.issue(robot, reg.server_hostname, [], kind)})

    def check_federated(self, robot, token):
        """(status, body, the token's claims) for an OIDC token presented for `robot`, checked in the order
        and answered in the words of quay/quay (util/security/federated_robot_auth.py, oauth/oidc.py
        decode_user_jwt, util/security/jwtutil.py over PyJWT 2.13): DESIGN.md section 6."""
        reg = self.registry

        def refused(message):
            return 400, {"message": message}, claims

        claims = {}
        if robot not in reg.accounts:
            return refused("Could not find robot with specified username")
        parts = token.split(".")
        try:
            header, claims = (json.loads(b64url_decode(p)) for p in parts[:2])
            assert len(parts) == 3 and isinstance(header, dict) and isinstance(claims, dict)
        except Exception:
            return 500, None, {}  # get_jwt_issuer's DecodeError is not caught
        issuer, subject = claims.get("iss"), claims.get("sub")
        if not issuer:
            return refused("Token does not contain issuer")
        entries = reg.federation.get(robot)
        if not entries:
            return refused("Robot does not have federated login configured")
        matching = [e for e in entries if e["issuer"] == issuer]
        if not matching:
            return refused(f"issuer {issuer} not configured for this robot")
        audiences = None
        for entry in matching:  # as Quay: the last matching entry that lists audiences
            audiences = entry.get("audiences") or audiences
        if not header.get("kid"):
            return refused("Invalid token: Missing `kid` header")
        if not str(issuer).startswith("https://"):
            return 500, None, claims  # discovery is https only
        key = self.issuer_key(issuer, header["kid"])
        if key is None:
            return 500, None, claims  # the kid is gone from the issuer's JWKS (keys rotated)
        hashes_for = {"RS256": hashes.SHA256(), "RS384": hashes.SHA384()}
        if header.get("alg") not in hashes_for:
            return refused("Invalid token: The specified alg value is not allowed")
        try:
            signed = f"{parts[0]}.{parts[1]}".encode()
            key.verify(b64url_decode(parts[2]), signed, padding.PKCS1v15(), hashes_for[header["alg"]])
        except Exception:
            return refused("Invalid token: Signature verification failed")
        for claim in ("iat", "exp"):
            if claim not in claims:
                return refused(f'Invalid token: Token is missing the "{claim}" claim')
        now = time.time()
        if claims["exp"] <= now - LEEWAY:
            return refused("Invalid token: Signature has expired")
        if audiences:
            aud = claims.get("aud")
            if not aud:
                return refused('Invalid token: Token is missing the "aud" claim')
            if not set([aud] if isinstance(aud, str) else aud) & set(audiences):
                return refused("Invalid token: Audience doesn't match")
        if claims["iat"] > now + LEEWAY:
            return refused("Invalid token: Issued At claim (iat) cannot be in the future.")
        if not any(e["subject"] == subject for e in matching):
            return refused("Token does not match robot")
        return 200, None, claims

    def issuer_key(self, issuer, kid):
        """The issuer's public key `kid`, by discovery and JWKS over https (None if it has no such key)."""
        import ssl
        import urllib.request

        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

        context = ssl.create_default_context(cafile=self.registry.oidc_ca)
        with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", context=context, timeout=5) as f:
            jwks_uri = json.load(f)["jwks_uri"]
        with urllib.request.urlopen(jwks_uri, context=context, timeout=5) as f:
            keys = json.load(f)["keys"]
        for found in keys:
            if found.get("kid") == kid:
                n, e = (int.from_bytes(b64url_decode(found[x]), "big") for x in ("n", "e"))
                return RSAPublicNumbers(e, n).public_key()
        return None

    def token(self):
        reg = self.registry
        if reg.hook:
            reg.hook("token request")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
        service = (query.get("service") or [""])[0]
        scopes = query.get("scope", [])
        auth = self.headers.get("Authorization", "")
        username = credential = None
        if auth:
            if not auth.startswith("Basic "):
                return self.errors(401, "UNAUTHORIZED", "Invalid Username or Password")
            try:
                username, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                return self.errors(401, "UNAUTHORIZED", "Invalid Username or Password")
            if username == "$app" and reg.app_tokens_feature:
                # auth/credentials.py: an app token's code, unexpired; its user's rights.
                found = reg.api.app_token_user(password)
                reg.log_auth(found or username, scopes, 200 if found else 401, "app_token")
                if found is None:
                    return self.errors(401, "UNAUTHORIZED", "Invalid token")
                return self.grant(found, service, scopes)
            if username == "$oauthtoken" and reg.sso is not None and _looks_like_jwt(password) is not None:
                problem, user = self.check_sso(password)
                reg.log_auth(user or username, scopes, 401 if problem else 200, "id_token")
                if problem:
                    return self.errors(401, "UNAUTHORIZED", problem)
                return self.grant(user, service, scopes)
            account = reg.accounts.get(username)
            with reg.lock:
                if account and account.failures:
                    wait = account.last_failure + 0.5 * (2**account.failures - 1) - time.time()
                    if wait > 0:
                        # Quay's login throttling: any attempt, right password or not.
                        return self.send(
                            429, b"Too many login attempts", "text/html", headers=[("Retry-After", str(int(wait)))]
                        )
                problem = reg.check_password(username, password)
                if account:
                    if problem:
                        account.failures += 1
                        account.last_failure = time.time()
                    else:
                        account.failures = 0
            credential = "jwt" if reg.key.verify(password) else "password"
            if problem:
                reg.log_auth(username, scopes, 401, credential)
                return self.errors(401, "UNAUTHORIZED", problem)
        elif not reg.anonymous:
            return self.send(401, {"error": "Anonymous access is not allowed"})
        reg.log_auth(username, scopes, 200, credential)
        return self.grant(username, service, scopes)

    def grant(self, username, service, scopes):
        reg = self.registry
        access = []
        for scope in scopes:
            match = _SCOPE.fullmatch(scope)
            if not match:
                return self.errors(400, "INVALID_REQUEST", f"Unable to parse scope: {scope}")
            name, actions = match.group(1), _parse_scope_actions(match.group(2))
            granted = reg.allowed_actions(username, name, actions)
            if granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        kind = "robot" if username and "+" in username else ("user" if username else "anonymous")
        token = reg.issue(username, service, access, {"version": 2, "entity_kind": kind})
        self.send(200, {"token": token})

    def check_sso(self, token):
        """(Quay's refusal or None, the Quay user) for an ID token presented as `$oauthtoken`'s password or
        as Bearer on /api/v1: quay/quay oauth/oidc.py decode_user_jwt and the federated login, in the
        words DESIGN.md section 10 lists. Creates the user on first use unless user creation is off."""
        reg = self.registry
        sso = reg.sso
        parts = token.split(".")
        subject, problem, user = None, None, None
        try:
            header, claims = (json.loads(b64url_decode(p)) for p in parts[:2])
            assert len(parts) == 3 and isinstance(header, dict) and isinstance(claims, dict)
        except Exception:
            header, claims = {}, None
        now = time.time()
        allowed = {"RS256": hashes.SHA256(), "RS384": hashes.SHA384()}
        if claims is None or header.get("typ") not in ("JWT", "at+jwt"):
            problem = "OAuth access token could not be validated"  # taken for a Quay OAuth application token
        elif sso is None or str(claims.get("iss", "")).rstrip("/") != sso["issuer"].rstrip("/"):
            problem = f"Issuer {claims.get('iss')} not configured"
        elif not header.get("kid"):
            problem = "Missing `kid` header"
        elif header.get("alg") not in allowed:
            problem = "The specified alg value is not allowed"
        else:
            key = self.issuer_key(sso["issuer"], header["kid"])
            try:
                assert key is not None
                signed = f"{parts[0]}.{parts[1]}".encode()
                key.verify(b64url_decode(parts[2]), signed, padding.PKCS1v15(), allowed[header["alg"]])
            except Exception:
                problem = "Signature verification failed" if key else f"Public key {header['kid']} not found"
        if problem is None:
            subject = claims.get("sub")
            aud = claims.get("aud")
            audiences = {sso["client_id"], *sso.get("audiences", ())}
            allowed_clients = sso.get("allowed_clients")
            if "exp" not in claims or "iat" not in claims:
                problem = f'Token is missing the "{"exp" if "exp" not in claims else "iat"}" claim'
            elif claims["exp"] <= now - LEEWAY:
                problem = "Signature has expired"
            elif sso.get("check_aud", True) and not aud:
                problem = 'Token is missing the "aud" claim'
            elif sso.get("check_aud", True) and not set([aud] if isinstance(aud, str) else aud) & audiences:
                problem = "Audience doesn't match"
            elif (
                sso.get("check_aud", True)
                and allowed_clients
                and claims.get("azp", sso["client_id"]) not in (allowed_clients)
            ):
                problem = f"Client '{claims.get('azp')}' is not in the allowed clients list"
            elif claims["iat"] > now + LEEWAY:
                problem = "Issued At claim (iat) cannot be in the future."
        if problem is None:
            with reg.lock:
                user = reg.sso_links.get(subject)
                if user is None and not sso.get("user_creation", True):
                    problem = "User creation is disabled. Please contact your administrator"
                elif user is None:
                    base = str(claims.get("preferred_username") or subject).split("@")[0]
                    user, serial = base, 0
                    while user in reg.accounts:
                        user, serial = f"{base}{serial}", serial + 1
                    reg.accounts[user] = Account(None, [user])
                    reg.sso_links[subject] = user
        with reg.lock:
            reg.sso_log.append({"subject": subject, "status": 401 if problem else 200, "message": problem})
        return problem, (None if problem else user)


# -- Quay's REST API for robots (quay/quay endpoints/api/robot.py, auth/oauth.py, endpoints/csrf.py) ---------

APP_TOKEN = "4PPT0KEN"  # every app-specific token starts with it (tests/support.py SECRETS watches it)
ROTATED = "R0TATEDR0B0T"  # every regenerated robot token starts with it (tests/support.py SECRETS watches it)
_API_ROBOT = re.compile(
    r"/api/v1/(?:organization/(?P<org>[^/]+)|user)/robots/(?P<short>[^/]+)(?P<rest>/regenerate|/federation|/permissions)?"
)
CSRF = "CSRF token was invalid or missing."
FORBIDDEN = (
    "You don't have the permission to access the requested resource. It is either read-protected or not "
    "readable by the server."
)


class RobotApi:
    """The state behind Quay's robot API: OAuth application tokens (40 characters, not JWTs: a JWT-looking
    bearer is an SSO token to Quay), each robot's metadata and permissions, and what happened."""

    def __init__(self, registry):
        self.registry = registry
        self.oauth = {}  # OAuth token -> (user, {scopes}): org:admin, user:admin, repo:read, ...
        self.created = {}  # robot -> Unix time (default: when the registry started)
        self.descriptions = {}  # robot -> description
        self.permissions = {}  # robot -> [{"repository": {"name", "is_public"}, "role"}]
        self.requests = []  # (method, path, status) of every API request
        self.audit = []  # (kind, namespace, metadata), as Quay's audit log: regenerate_robot_token
        self.started = int(time.time())
        self.serial = 0

    def new_token(self):
        """64 characters, like Quay's random_string_generator(length=64)."""
        import secrets

        self.serial += 1
        head = f"{ROTATED}{self.serial:04d}"
        return head + "".join(
            secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
            for _ in range(64 - len(head))
        )

    def new_app_token(self, user, title, now):
        """data/model/appspecifictoken.py create_token: a 60-character name and a 60-character secret
        (ours start with APP_TOKEN, a secret-watcher needle); the expiry from APP_SPECIFIC_TOKEN_EXPIRATION."""
        import secrets
        import uuid

        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        code = APP_TOKEN + "".join(secrets.choice(alphabet) for _ in range(120 - len(APP_TOKEN)))
        expiration = self.registry.app_token_expiration
        token = {
            "uuid": str(uuid.uuid4()),
            "user": user,
            "title": title,
            "code": code,
            "created": now,
            "expiration": now + expiration if expiration else None,
            "last_accessed": None,
        }
        self.registry.app_tokens[token["uuid"]] = token
        self.audit.append(("create_app_specific_token", user, {"app_specific_token": token["uuid"]}))
        return token

    def app_token_view(self, token, include_code=False):
        """appspecifictokens.py token_view."""
        import email.utils

        def date(value):
            return None if value is None else email.utils.formatdate(value)

        data = {
            "uuid": token["uuid"],
            "title": token["title"],
            "last_accessed": date(token["last_accessed"]),
            "created": date(token["created"]),
            "expiration": date(token["expiration"]),
        }
        if include_code:
            data["token_code"] = token["code"]
        return data

    def app_token_user(self, code):
        """access_valid_token: the user of an unexpired app token with this code, else None."""
        now = time.time()
        with self.registry.lock:
            for token in self.registry.app_tokens.values():
                live = token["expiration"] is None or token["expiration"] > now
                if live and len(code) >= 120 and token["code"] == code:
                    token["last_accessed"] = now
                    return token["user"]
        return None

    def robot(self, name, include_token, metadata=True):
        """Robot.to_dict: RFC 2822 dates (email.utils.formatdate, as Quay's format_date)."""
        import email.utils

        data = {
            "name": name,
            "created": email.utils.formatdate(self.created.get(name, self.started)),
            "last_accessed": None,  # FEATURE_USER_LAST_ACCESSED is off by default
            "description": self.descriptions.get(name, ""),
        }
        if include_token:
            data["token"] = self.registry.accounts[name].password
        if metadata:
            data["unstructured_metadata"] = {}
        return data


def app_token_api(self, path, user, scopes, answer, problem):
    """/api/v1/user/apptoken[/<uuid>] as endpoints/api/appspecifictokens.py answers: POST {"title"} -> 200
    {"token": view + token_code}; GET [?expiring=true] -> {"tokens": [views], "only_expiring"}; DELETE
    /<uuid> -> 204 (404 when not the user's). Dates are RFC 2822 (format_date); views never hold the code."""
    reg = self.registry
    state = reg.api
    if not reg.app_tokens_feature:  # @show_if(features.APP_SPECIFIC_TOKENS): no such route
        return answer(404, {"message": "The requested URL was not found on the server."})
    uuid = path[len("/api/v1/user/apptoken/") :] if path.startswith("/api/v1/user/apptoken/") else None
    allowed = ("GET", "DELETE") if uuid else ("GET", "POST")
    if self.command not in allowed:
        return answer(405, {"message": "The method is not allowed for the requested URL."})
    if self.command != "GET" and user is None:
        headers = [("Access-Control-Allow-Origin", "*")]
        return answer(403, json.dumps({"error": CSRF}).encode(), "text/html; charset=utf-8", headers)
    if user is None:
        return problem(401, "invalid_token", "Requires authentication")
    if "user:admin" not in scopes:
        return problem(403, "insufficient_scope", "Unauthorized")
    now = time.time()
    if self.command == "POST":
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("title"), str):
            return problem(400, "invalid_request", "'title' is a required property")
        with reg.lock:
            token = state.new_app_token(user, body["title"], now)
        return answer(200, {"token": state.app_token_view(token, include_code=True)})
    if uuid is None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        expiring = (query.get("expiring") or [""])[0].lower() in ("true", "1", "yes", "y", "t")
        window = math.ceil((reg.app_token_expiration or 4 * 7 * 86400) * 0.1) or 1
        mine = [t for t in reg.app_tokens.values() if t["user"] == user]
        if expiring:
            mine = [t for t in mine if t["expiration"] is not None and now < t["expiration"] <= now + window]
        views = [state.app_token_view(t) for t in mine]
        return answer(200, {"tokens": views, "only_expiring": expiring if "expiring" in query else None})
    token = reg.app_tokens.get(uuid)
    if token is None or token["user"] != user or (token["expiration"] is not None and token["expiration"] <= now):
        return problem(404, "not_found", "Not Found")
    if self.command == "GET":
        return answer(200, {"token": state.app_token_view(token, include_code=True)})
    with reg.lock:
        del reg.app_tokens[uuid]
        state.audit.append(("revoke_app_specific_token", user, {"app_specific_token": uuid}))
    return answer(204, b"", "application/json")


def _looks_like_jwt(token):
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        json.loads(b64url_decode(parts[0]))
        return json.loads(b64url_decode(parts[1]))
    except Exception:
        return None


def robot_api(self, path):
    """One request to /api/v1/...robots/... (`self` is its handler): process_oauth, csrf_protect, the
    permission checks, the answer."""
    reg = self.registry
    state = reg.api

    def answer(status, body, content_type="application/json", headers=()):
        with reg.lock:
            state.requests.append((self.command, path, status))
        return self.send(status, body, content_type, headers)

    def problem(status, error_type, detail):
        url = f"{reg.scheme}://{reg.server_hostname}/api/v1/error/{error_type}"
        body = {"detail": detail, "error_message": detail, "error_type": error_type, "title": error_type}
        return answer(status, dict(body, type=url, status=status))

    # process_oauth: exactly "Bearer <token>" (scheme in any case); a JWT is an SSO token and fails at once,
    # an unknown application token leaves the request anonymous.
    parts = [part.strip() for part in self.headers.get("Authorization", "").split(" ") if part]
    user, scopes = None, set()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        claims = _looks_like_jwt(parts[1])
        if claims is not None and reg.sso is not None and not reg.sso_api:
            return answer(401, {"error": "Invalid token"})
        if claims is not None and reg.sso is not None:
            # A valid SSO ID token is a full user session: no OAuth scopes.
            message, user = self.check_sso(parts[1])
            if message:
                return answer(401, {"error": message})
            scopes = {"user:admin", "org:admin", "repo:read", "repo:write", "repo:admin", "repo:create"}
        elif claims is not None:
            issuer = claims.get("iss") if isinstance(claims, dict) else None
            message = f"Issuer {issuer} not configured" if issuer else "Token does not contain issuer"
            return answer(401, {"error": message})
        else:
            user, scopes = state.oauth.get(parts[1], (None, set()))
    if path == "/api/v1/user/apptoken" or path.startswith("/api/v1/user/apptoken/"):
        return app_token_api(self, path, user, scopes, answer, problem)
    if path == "/api/v1/user/":
        if user is None:
            return problem(401, "invalid_token", "Requires authentication")
        return answer(200, {"username": user, "anonymous": False, "verified": True})
    match = _API_ROBOT.fullmatch(path)
    if not match:
        return answer(404, {"message": "The requested URL was not found on the server."})
    org, short, rest = match.group("org"), match.group("short"), match.group("rest") or ""
    post = rest == "/regenerate"
    if self.command != ("POST" if post else "GET"):
        return answer(405, {"message": "The method is not allowed for the requested URL."})
    if self.command != "GET" and user is None:
        # csrf_protect: no validated OAuth token on a POST. Built by util/http.py abort: text/html, CORS headers.
        headers = [("Access-Control-Allow-Origin", "*")]
        return answer(403, json.dumps({"error": CSRF}).encode(), "text/html; charset=utf-8", headers)

    def unauthorized():  # endpoints/exception.py Unauthorized
        if user is None:
            return problem(401, "invalid_token", "Requires authentication")
        return problem(403, "insufficient_scope", "Unauthorized")

    users = {name for name in reg.accounts if "+" not in name}
    if (org is None or rest == "/permissions") and (user is None or "user:admin" not in scopes):
        return unauthorized()  # require_user_admin
    if org is not None:
        admin = user is not None and "org:admin" in scopes and org in reg.accounts[user].namespaces
        if not admin:
            if rest == "/permissions":
                return answer(403, {"message": FORBIDDEN})  # flask abort(403), as Flask-RESTful words it
            return unauthorized()
        if org in users:
            return answer(400, {"message": f"Organization does not exist: {org}"})
    name = f"{org or user}+{short}"
    if name not in reg.accounts:
        return answer(400, {"message": "Could not find robot with specified username"})
    if rest == "":
        return answer(200, state.robot(name, include_token=True))
    if rest == "/federation":
        return answer(200, reg.federation.get(name, []))
    if rest == "/permissions":
        return answer(200, {"permissions": state.permissions.get(name, [])})
    # POST .../regenerate: the hook may kill the client at each stage, or drop the request before it counts.
    if reg.hook and reg.hook("regenerate received") == "abort":
        self.close_connection = True
        self.connection.shutdown(2)
        return None
    with reg.lock:
        reg.accounts[name].password = state.new_token()
        reg.accounts[name].failures = 0
        state.audit.append(("regenerate_robot_token", org or user, {"robot": short}))
    if reg.hook:
        reg.hook("regenerate done")
    answer(200, state.robot(name, include_token=True, metadata=False))
    self.wfile.flush()
    if reg.hook:
        reg.hook("regenerate answered")
    return None
