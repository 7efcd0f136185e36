"""Requests to one registry: retries and backoff, discovery, realm policy, /v2/auth, refusals as errors.

Everything that touches the network takes an httpx.Client (registry/transport.py
makes them), so tests run the real flow against a local registry and use a
mock transport only for faults a live server cannot produce on cue. Errors
are classified by the type of the exception under httpx's (ssl, socket),
never by its text.
"""

from __future__ import annotations

import json
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from quay_cred_helper import log
from quay_cred_helper.config import Settings
from quay_cred_helper.errors import DeadlineExceeded, RegistryError, TLSError, Unreachable
from quay_cred_helper.names import hostname, is_loopback, is_loopback_host
from quay_cred_helper.registry.cache import Token
from quay_cred_helper.registry.challenge import Challenge, bearer
from quay_cred_helper.registry.deadline import Deadline, exceeded
from quay_cred_helper.registry.transport import alarm, caused_by

MAX_BODY = 1 << 20  # a token response is a few KiB; refuse anything over 1 MiB
MAX_RETRY_AFTER = 10.0  # seconds we are willing to wait on a 429 or 503
RETRY_STATUSES = {429, 502, 503, 504}


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
        deadline: Deadline | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.settings = settings
        self.sleep = sleep
        # The whole budget, every request and retry: the command's, shared with its other sessions to
        # this registry (registry/deadline.py), else one of its own.
        self.deadline = deadline or Deadline(settings.deadline)
        self.last_headers: httpx.Headers | None = None  # of the last response: doctor reads the Date

    def remaining(self) -> float:
        return self.deadline.remaining()

    def expired(self) -> DeadlineExceeded:
        return exceeded(self.key, self.settings)

    def send(
        self,
        url: str,
        params: list[tuple[str, str]] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        limit: int = MAX_BODY,
        method: str = "GET",
        data: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """GET with retries on connection errors, 429 and 502-504; never on 401. Returns (response, body).

        Any other method is sent once: it may change something (Quay's regenerate), so it is never repeated."""
        retries = self.settings.retries if method == "GET" else 0
        for attempt in range(retries + 1):
            last = attempt == retries
            response = None
            left = self.remaining()
            if left <= 0:
                raise self.expired()
            # Timeouts bound the wait between bytes; the deadline bounds the whole request: a server
            # that drips its body is caught between chunks, one that drips its headers by the alarm.
            timeout = httpx.Timeout(min(self.settings.timeout, left), connect=min(self.settings.connect_timeout, left))
            try:
                with alarm(left, self.expired):
                    response, body = self._request(
                        method, url, tuple(params) if params else None, auth, headers, timeout, limit, data, content
                    )
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                error, retryable = self._classify(exc, url)
                if last or not retryable:
                    raise error from None
            else:
                log.debug("%s %s -> %s (%d bytes)", method, url, response.status_code, len(body))
                self.last_headers = response.headers
                if response.status_code not in RETRY_STATUSES or last:
                    return response, body
            self._back_off(attempt, response)
        raise AssertionError("unreachable")  # the loop always returns or raises on the last attempt

    def _classify(self, exc: Exception, url: str) -> tuple[Exception, bool]:
        """What an httpx error means, and whether another attempt may help (the error is raised after
        the last attempt, or at once when it may not)."""
        if isinstance(exc, httpx.TimeoutException):
            if self.remaining() <= 0:
                return self.expired(), False
            timeout = f"{self.key} did not answer within {self.settings.timeout:g} s (timeout)"
            return Unreachable(timeout, f"raise it with {self.settings.where('timeout = N', self.key)}"), True
        if isinstance(exc, httpx.ConnectError):
            if caused_by(exc, ssl.SSLCertVerificationError):
                fix = f"set {self.settings.where('ca_bundle = /path/to/ca.pem', self.key)} (or SSL_CERT_FILE)"
                return TLSError(f"TLS verification failed for {self.key}", fix), False
            if url.startswith("https:") and caused_by(
                exc, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError)
            ):
                return _NoTLS(), False
            return _unreachable(self.key, exc), True
        if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
            return Unreachable(f"{self.key} closed the connection before answering"), True
        return RegistryError(f"request to {self.key} failed: {type(exc).__name__}"), False  # anything else

    def _back_off(self, attempt: int, response: httpx.Response | None) -> None:
        """Exponential backoff with jitter, or longer if the server's Retry-After says so; never past
        the deadline."""
        backoff = min(4.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2)
        wait = max(backoff, _retry_after(response) if response is not None else 0.0)
        if wait >= self.remaining():
            raise self.expired()
        self.sleep(wait)

    def _request(
        self,
        method: str,
        url: str,
        params: tuple[tuple[str, str], ...] | None,
        auth: httpx.Auth | tuple[str, str] | None,
        headers: dict[str, str] | None,
        timeout: httpx.Timeout,
        limit: int,
        data: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[httpx.Response, bytes]:
        with self.client.stream(
            method, url, params=params, auth=auth, headers=headers, timeout=timeout, data=data, content=content
        ) as response:
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
                        f"set {self.settings.where('insecure_http = true', self.key)} if it is meant to",
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
                f"set {self.settings.where('insecure_http = true', self.key)} if you accept that",
            )
        host = parts.hostname.lower()
        # Loopback names are one host: a Quay at 127.0.0.1 whose SERVER_HOSTNAME says localhost.
        same = host == hostname(self.key) or (is_loopback_host(host) and is_loopback(self.key))
        if not same and host not in self.settings.realm_hosts:
            raise RegistryError(
                f"refusing to send credentials to {host}: the token realm is not on {hostname(self.key)}",
                f"add {self.settings.where(f'realm_hosts = {host}', self.key)} if you trust it",
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
        return Token.issued(token, data.get("expires_in"))


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the interpreter's stack
        return None


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "").strip()
    # isdigit() alone accepts "²"; Retry-After is ASCII digits (or an HTTP date, which we do not wait for).
    return min(float(value), MAX_RETRY_AFTER) if value.isascii() and value.isdigit() else 0.0


def _unreachable(key: str, exc: BaseException) -> Unreachable:
    if caused_by(exc, socket.gaierror):
        return Unreachable(f"cannot resolve {hostname(key)}", "check the registry name and DNS")
    if caused_by(exc, ConnectionRefusedError):
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
