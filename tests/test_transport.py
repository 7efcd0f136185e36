"""The transport: proxies (never for loopback or plain-http credentials) and the deadline's alarms."""

import json
import time

import httpx
import pytest

from quay_cred_helper.config import Settings
from tests.fakes.hostile import LoggingProxy, TLSHangup
from tests.support import ROBOT, ROBOT_TOKEN, helper, login, store

# -- proxies never see loopback credentials ---------------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_loopback_registries_never_go_through_a_proxy(file_keyring, quay):
    with LoggingProxy() as proxy:
        url = f"http://{proxy.host}"
        env = dict(file_keyring, HTTP_PROXY=url, HTTPS_PROXY=url, http_proxy=url, https_proxy=url)
        assert login(env, quay.host).returncode == 0
        store(env, quay.host, ROBOT, ROBOT_TOKEN)
        assert json.loads(helper(env, "get", quay.host).stdout)["Secret"] != ROBOT_TOKEN  # the exchange worked
    assert proxy.seen == []


def test_remote_https_goes_through_connect_and_plain_http_credentials_never_through_a_proxy(monkeypatch):
    from quay_cred_helper.registry.transport import make_client

    with LoggingProxy() as proxy:
        for name in ("HTTPS_PROXY", "HTTP_PROXY"):
            monkeypatch.setenv(name, f"http://{proxy.host}")
        monkeypatch.setenv("NO_PROXY", "internal.example")
        client = make_client(Settings())
        route = client._transport.route
        assert route(httpx.Request("GET", "https://quay.example.com/v2/")) is client._transport.via["https"]
        assert route(httpx.Request("GET", "http://quay.example.com/v2/")) is client._transport.via["http"]
        with_password = httpx.Request("GET", "http://quay.example.com/v2/auth", headers={"Authorization": "Basic x"})
        assert route(with_password) is client._transport.direct
        assert route(httpx.Request("GET", "https://internal.example/v2/")) is client._transport.direct
        assert route(httpx.Request("GET", "https://localhost:5000/v2/")) is client._transport.direct
        # For real: the proxy gets a CONNECT (and, forwarding nothing, refuses it).
        with pytest.raises(httpx.ProxyError):
            client.get("https://registry.example/v2/")
        client.close()
    assert proxy.seen and proxy.seen[0].startswith("CONNECT registry.example:443 ")


# -- an alarm inside another keeps the outer one ------------------------------------------------------


@pytest.mark.slow  # over half a second: the full suite
def test_an_alarm_inside_another_keeps_the_outer_one():
    from quay_cred_helper.registry.transport import alarm

    class Outer(Exception):
        pass

    class Inner(Exception):
        pass

    start = time.monotonic()
    with pytest.raises(Outer), alarm(0.5, Outer):
        with alarm(5, Inner):
            pass  # the inner alarm ends first: the outer one must still ring
        time.sleep(3)
    assert time.monotonic() - start < 1.5
    start = time.monotonic()
    with pytest.raises(Outer), alarm(0.3, Outer), alarm(5, Inner):
        time.sleep(3)  # the earlier of the two rings, with its own error
    assert time.monotonic() - start < 1.5


# -- plain-http fallback by exception type --------------------------------------------------------


def test_plain_http_registry_that_hangs_up_on_the_tls_client_hello(file_keyring, quay):
    with TLSHangup(quay.host) as front:
        r = login(file_keyring, front.host)
        assert r.returncode == 0, r.stderr
        assert front.hangups >= 1
