"""How bytes reach a registry: the httpx client, the proxy route, and the wall-clock alarm.

The transport layer under registry/session.py, as httpx keeps its transports
apart from its client: what a connection is made of (a CA bundle, timeouts,
no redirects, a proxy only where it is safe) and the two helpers that look
under httpx's exceptions (`causes`) and past its timeouts (`alarm`).
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import ssl
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import certifi
import httpx

from quay_cred_helper.config import Settings
from quay_cred_helper.names import is_loopback_host


def make_client(settings: Settings) -> httpx.Client:
    """An httpx client for one registry: its CA bundle, timeouts, no redirects, proxies routed safely."""
    if settings.ca_data:  # the CA bundle as the entry point read it from the file it checked
        context = ssl.create_default_context(cadata=settings.ca_data)
    else:
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


def caused_by(exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(cause, kinds) for cause in causes(exc))


class _Expiry:
    """An armed alarm: when it rings (monotonic), what it raises, and whether it has rung."""

    __slots__ = ("when", "error", "rang")

    def __init__(self, when: float, error: Callable[[], Exception]) -> None:
        self.when, self.error, self.rang = when, error, False


_armed: list[_Expiry] = []  # the alarms in force in the main thread, outermost first


def _arm(expiry: _Expiry) -> None:
    if sys.platform == "win32":  # no SIGALRM there: alarm() uses _interrupting
        return

    def ring(signum: int, frame: object) -> None:
        expiry.rang = True
        raise expiry.error()

    signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(expiry.when - time.monotonic(), 0.001))


@contextlib.contextmanager
def alarm(seconds: float, error: Callable[[], Exception]) -> Iterator[None]:
    """Raise `error()` in this thread when `seconds` pass: the wall-clock backstop for a server that
    keeps a read alive byte by byte. Re-entrant: an alarm armed inside another (a token fetched in the
    middle of a request) rings at the earlier of the two, and the outer one is armed again when the
    inner one ends. Only the main thread can take signals; elsewhere the timeouts and the checks
    between chunks are the bound. Where there is no SIGALRM (Windows), a timer thread does it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if sys.platform == "win32" or not hasattr(signal, "setitimer"):
        with _interrupting(seconds, error):
            yield
        return
    outer = _armed[-1] if _armed else None
    when = time.monotonic() + max(seconds, 0.001)
    expiry = outer if outer is not None and outer.when <= when else _Expiry(when, error)
    previous = signal.getsignal(signal.SIGALRM)
    _armed.append(expiry)
    _arm(expiry)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _armed.pop()
        signal.signal(signal.SIGALRM, previous)
        if outer is not None and not outer.rang:
            _arm(outer)  # the outer request's deadline still holds


@contextlib.contextmanager
def _interrupting(seconds: float, error: Callable[[], Exception]) -> Iterator[None]:
    """The alarm where there is no SIGALRM (Windows): at the deadline a timer thread interrupts the main
    thread as Ctrl+C would. The interruption lands when the read in progress returns, which the read
    timeout bounds, so a server dripping its headers is stopped within one of its drips. Nested ones
    each keep their own timer; the innermost that rang raises its error."""
    guard = threading.Lock()
    state = {"armed": True, "rang": False}

    def ring() -> None:
        with guard:
            if state["armed"]:
                state["rang"] = True
                _thread.interrupt_main()

    timer = threading.Timer(max(seconds, 0.001), ring)
    timer.daemon = True
    timer.start()
    try:
        yield
    except KeyboardInterrupt:
        if state["rang"]:
            raise error() from None
        raise
    finally:
        with guard:
            state["armed"] = False
        timer.cancel()
