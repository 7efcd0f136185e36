"""Requests to one registry: the HTTP client, retries and backoff, discovery, realm policy, /v2/auth.

Everything that touches the network takes an httpx.Client, so tests run the
real flow against a local registry and use a mock transport only for faults
a live server cannot produce on cue. Errors are classified by the type of
the exception under httpx's (ssl, socket), never by its text.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx

from quay_cred_helper import log
from quay_cred_helper.config import Settings, config_path
from quay_cred_helper.errors import DeadlineExceeded, RegistryError, TLSError, Unreachable
from quay_cred_helper.names import hostname, is_loopback, is_loopback_host
from quay_cred_helper.registry import jwt
from quay_cred_helper.registry.cache import Token
from quay_cred_helper.registry.challenge import Challenge, bearer

MAX_BODY = 1 << 20  # a token response is a few KiB; refuse anything over 1 MiB
DEFAULT_LIFETIME = 60.0  # seconds, when neither expires_in nor a JWT exp says
MAX_LIFETIME = 24 * 3600.0  # a server may not make us keep a token longer than this
MAX_RETRY_AFTER = 10.0  # seconds we are willing to wait on a 429 or 503
RETRY_STATUSES = {429, 502, 503, 504}


def make_client(settings: Settings) -> httpx.Client:
    """An httpx client for one registry: its CA bundle, timeouts, no redirects, proxies routed safely."""
    context = ssl.create_default_context(cafile=settings.ca_bundle or None)
    if not settings.ca_bundle and not context.get_ca_certs() and not context.cert_store_stats()["x509_ca"]:
        # No system trust store (some macOS Pythons): fall back to certifi, which httpx ships with.
        context.load_verify_locations(certifi.where())
    timeout = httpx.Timeout(settings.timeout, connect=settings.connect_timeout)
    # Redirects are never followed: Authorization must not travel to another origin. Proxies come from
    # the environment, through ProxyRoute, not httpx's own trust_env handling.
    return httpx.Client(
        transport=ProxyRoute(context, urllib.request.getproxies()),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


class ProxyRoute(httpx.BaseTransport):
    """Sends each request direct or through the environment's proxy, as Go's net/http (docker, podman,
    skopeo) does, and stricter: loopback hosts never go through a proxy, nor does a plain-http request
    carrying credentials (a proxy would read them). NO_PROXY is honoured; https goes through CONNECT."""

    def __init__(self, context: ssl.SSLContext, proxies: dict[str, str]) -> None:
        self.proxies = proxies
        self.direct = httpx.HTTPTransport(verify=context)
        self.via: dict[str, httpx.HTTPTransport] = {}
        for scheme in ("http", "https"):
            url = proxies.get(scheme) or proxies.get("all")
            if url:
                self.via[scheme] = httpx.HTTPTransport(verify=context, proxy=httpx.Proxy(url))

    def route(self, request: httpx.Request) -> httpx.HTTPTransport:
        host, scheme = request.url.host, request.url.scheme
        if is_loopback_host(host) or urllib.request.proxy_bypass(host):
            return self.direct
        if scheme == "http" and "authorization" in request.headers:
            return self.direct
        return self.via.get(scheme, self.direct)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.route(request).handle_request(request)

    def close(self) -> None:
        for transport in (self.direct, *self.via.values()):
            transport.close()


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything under it (httpx wraps httpcore, which wraps ssl and socket errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _cause(exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(cause, kinds) for cause in causes(exc))


class _NoTLS(Exception):
    """TLS could not be established (a plain-http server, or one that hangs up on the ClientHello)."""


class Session:
    """Requests to one registry with its settings, bounded retries and error mapping."""

    def __init__(
        self,
        client: httpx.Client,
        key: str,
        settings: Settings,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.key = key
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.deadline_at = clock() + settings.deadline  # the whole budget: every request and retry
        self.last_headers: httpx.Headers | None = None  # of the last response: doctor reads the Date

    def remaining(self) -> float:
        return self.deadline_at - self.clock()

    def expired(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"{self.key} did not finish within {self.settings.deadline:g} s",
            f"the registry is stalling; raise deadline = N under [{self.key}] in {config_path()} if it is only slow",
        )

    def send(
        self,
        url: str,
        params: list[tuple[str, str]] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        limit: int = MAX_BODY,
    ) -> tuple[httpx.Response, bytes]:
        """GET with retries on connection errors, 429 and 502-504; never on 401. Returns (response, body)."""
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            response = None
            left = self.remaining()
            if left <= 0:
                raise self.expired()
            # Timeouts bound the wait between bytes; the deadline bounds the whole request: a server
            # that drips its body is caught between chunks, one that drips its headers by the alarm.
            timeout = httpx.Timeout(min(self.settings.timeout, left), connect=min(self.settings.connect_timeout, left))
            try:
                with _alarm(left, self.expired):
                    response, body = self._get(url, tuple(params) if params else None, auth, headers, timeout, limit)
            except httpx.TimeoutException:
                if self.remaining() <= 0:
                    raise self.expired() from None
                if last:
                    raise Unreachable(
                        f"{self.key} did not answer within {self.settings.timeout:g} s (timeout)",
                        f"raise it with timeout = N under [{self.key}] in {config_path()}",
                    ) from None
            except httpx.ConnectError as exc:
                if _cause(exc, ssl.SSLCertVerificationError):
                    raise TLSError(
                        f"TLS verification failed for {self.key}",
                        f"set ca_bundle = /path/to/ca.pem under [{self.key}] in {config_path()} (or SSL_CERT_FILE)",
                    ) from None
                if url.startswith("https:") and _cause(
                    exc, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError)
                ):
                    raise _NoTLS() from exc
                if last:
                    raise _unreachable(self.key, exc) from None
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                if last:
                    raise Unreachable(f"{self.key} closed the connection before answering") from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:  # anything else httpx can raise: not retried
                raise RegistryError(f"request to {self.key} failed: {type(exc).__name__}") from None
            else:
                log.debug("GET %s -> %s (%d bytes)", url, response.status_code, len(body))
                self.last_headers = response.headers
                if response.status_code not in RETRY_STATUSES or last:
                    return response, body
            # Exponential backoff with jitter, or longer if the server's Retry-After says so.
            backoff = min(4.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2)
            wait = max(backoff, _retry_after(response) if response is not None else 0.0)
            if wait >= self.remaining():
                raise self.expired()
            self.sleep(wait)
        raise AssertionError("unreachable")  # the loop always returns or raises on the last attempt

    def _get(
        self,
        url: str,
        params: tuple[tuple[str, str], ...] | None,
        auth: httpx.Auth | tuple[str, str] | None,
        headers: dict[str, str] | None,
        timeout: httpx.Timeout,
        limit: int,
    ) -> tuple[httpx.Response, bytes]:
        with self.client.stream("GET", url, params=params, auth=auth, headers=headers, timeout=timeout) as response:
            return response, self._read_capped(response, limit)

    def _read_capped(self, response: httpx.Response, limit: int) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise RegistryError(f"{self.key} sent a response over {limit // 1024} KiB: refused")
            if self.remaining() <= 0:
                raise self.expired()
            chunks.append(chunk)
        return b"".join(chunks)

    def discover(self) -> Challenge:
        """Ask /v2/ how to authenticate (realm None if no token is needed)."""
        schemes = ["https", "http"] if self.plain_http_allowed() else ["https"]
        for scheme in schemes:
            base = f"{scheme}://{self.key}"
            try:
                response, body = self.send(base + "/v2/")
            except _NoTLS:
                if scheme == schemes[-1]:
                    raise RegistryError(
                        f"{self.key} does not speak TLS",
                        f"set insecure_http = true under [{self.key}] in {config_path()} if it is meant to",
                    ) from None
                continue
            if response.status_code == 200:
                return Challenge(base, None, "")
            if response.status_code == 401:
                params = bearer(response.headers.get_list("www-authenticate"))
                if params is None:
                    raise RegistryError(f"{self.key} did not offer Bearer token authentication on /v2/")
                return Challenge(base, params["realm"], params.get("service", ""))
            raise _error(response, json_body(body), self.key)
        raise AssertionError("unreachable")

    def plain_http_allowed(self) -> bool:
        # Like docker: a registry on this machine may speak plain http; elsewhere only by opt-in.
        return is_loopback(self.key) or self.settings.insecure_http

    def check_realm(self, realm: str) -> None:
        """Credentials go only to an https realm on the registry's own host (unless configured)."""
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RegistryError(f"{self.key} sent an unusable token realm: {realm[:200]}")
        if parts.scheme == "http" and not self.plain_http_allowed():
            raise RegistryError(
                f"refusing to send credentials over plain http to {parts.hostname}",
                f"set insecure_http = true under [{self.key}] in {config_path()} if you accept that",
            )
        host = parts.hostname.lower()
        # Loopback names are one host: a Quay at 127.0.0.1 whose SERVER_HOSTNAME says localhost.
        same = host == hostname(self.key) or (is_loopback_host(host) and is_loopback(self.key))
        if not same and host not in self.settings.realm_hosts:
            raise RegistryError(
                f"refusing to send credentials to {host}: the token realm is not on {hostname(self.key)}",
                f"add realm_hosts = {host} under [{self.key}] in {config_path()} if you trust it",
            )

    def fetch_token(
        self,
        challenge: Challenge,
        username: str | None = None,
        secret: str | None = None,
        scopes: Sequence[str] = (),
    ) -> Token:
        """GET the realm with Basic auth (or none) and the scopes; one scope parameter each."""
        assert challenge.realm is not None
        auth = None
        if username is not None and secret is not None:
            self.check_realm(challenge.realm)
            log.secret(secret)
            auth = (username, secret)
        params = [("service", challenge.service)] if challenge.service else []
        params += [("scope", scope) for scope in scopes]
        response, body = self.send(challenge.realm, params=params, auth=auth)
        data = json_body(body)
        if response.status_code != 200:
            raise _error(response, data, self.key)
        token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.key} answered /v2/auth without a token")
        assert isinstance(data, dict)
        now = time.time()
        claims = jwt.payload(token)
        access = claims.get("access") if claims and isinstance(claims.get("access"), list) else None
        return Token(token, now, lifetime_end(now, data.get("expires_in"), claims), access)


@contextlib.contextmanager
def _alarm(seconds: float, error: Callable[[], Exception]) -> Iterator[None]:
    """Raise `error()` in this thread when `seconds` pass: the wall-clock backstop for a server that
    keeps a read alive byte by byte. Only the main thread can take signals; elsewhere the timeouts
    and the checks between chunks are the bound."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise error()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the interpreter's stack
        return None


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "").strip()
    # isdigit() alone accepts "²"; Retry-After is ASCII digits (or an HTTP date, which we do not wait for).
    return min(float(value), MAX_RETRY_AFTER) if value.isascii() and value.isdigit() else 0.0


def lifetime_end(now: float, expires_in: object, claims: dict[str, Any] | None) -> float:
    """When a token stops being valid: expires_in, else the JWT's exp, else DEFAULT_LIFETIME; never later
    than MAX_LIFETIME from now, and never a value that is not a finite number."""
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
        end = now + float(expires_in)
    else:
        # Quay sends no expires_in: its JWTs live one hour, read exp from the payload.
        end = jwt.number(claims, "exp") or now + DEFAULT_LIFETIME
    return min(end, now + MAX_LIFETIME) if math.isfinite(end) else now + DEFAULT_LIFETIME


def _unreachable(key: str, exc: BaseException) -> Unreachable:
    if _cause(exc, socket.gaierror):
        return Unreachable(f"cannot resolve {hostname(key)}", "check the registry name and DNS")
    if _cause(exc, ConnectionRefusedError):
        return Unreachable(f"cannot connect to {key}: connection refused")
    return Unreachable(f"cannot connect to {key}: {type(exc).__name__}")


def server_error(data: object) -> tuple[str | None, str | None]:
    """(code, message) of a registry's error body, either may be None."""
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code, message = errors[0].get("code"), errors[0].get("message")
            return (str(code) if code else None), (str(message)[:300] if message else None)
        if isinstance(data.get("error"), str):
            return None, data["error"][:300]
    return None, None


def _error(response: httpx.Response, data: object, key: str) -> RegistryError:
    """One actionable line for a refused token request."""
    status = response.status_code
    code, message = server_error(data)
    if status == 401:
        if message == "Anonymous access is not allowed":
            return RegistryError(
                f"{key}: anonymous access is not allowed", f"log in first (quay-cred-helper login {key})"
            )
        reason = message or "unauthorized"
        hint = "check the username and password or token (quay-cred-helper login)"
        if "unencrypted password" in reason.lower():
            hint = "use an encrypted password (Quay: Account Settings > Generate Encrypted Password)"
        elif "robot" in reason.lower():
            hint = "check the robot's name and token in Quay (Robot Accounts)"
        return RegistryError(f"{key} refused the credentials: {reason}", hint)
    if status == 429:
        wait = response.headers.get("retry-after", "?")
        return RegistryError(
            f"{key} is throttling logins after failed attempts (Too many login attempts; retry after {wait} s)",
            "check the password before trying again, each failure doubles the lockout",
        )
    if status == 405:
        return RegistryError(f"{key} does not accept this token request (405 {code or 'UNSUPPORTED'})")
    if status == 400:
        return RegistryError(
            f"{key} rejected the token request: {code or 'INVALID_REQUEST'}: {message or 'bad request'}"
        )
    if status >= 500:
        return Unreachable(f"{key} is failing: HTTP {status}{': ' + message if message else ''}")
    if 300 <= status < 400:
        return RegistryError(f"{key} redirected the token request (HTTP {status}): not followed")
    return RegistryError(f"{key} answered HTTP {status}{': ' + message if message else ''}")
