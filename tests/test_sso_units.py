"""SSO's parts in-process, against the test identity provider (tests/fakes/idp.py): the ID token's checks, the
device grant's polling, the refresh token's keyring entries, Quay's refusals. Fast: no process is started."""

import email.utils
import time

import pytest

from quay_cred_helper.config import Settings
from quay_cred_helper.credentials.index import app_token_expiry
from quay_cred_helper.errors import IdPError, InputError, KeyringError, SessionExpired
from quay_cred_helper.sso import apptoken, flows, idp, idtoken, quay, session
from tests.fakes.idp import CLIENT_ID, IdPUser, TestIdP

CAROL = IdPUser("carol", "pw")


@pytest.fixture
def provider_idp(oidc_ca):
    with TestIdP(oidc_ca, users=[CAROL]) as found:
        yield found


@pytest.fixture
def settings(oidc_ca, tmp_path):
    path = tmp_path / "ca.pem"
    oidc_ca.cert_pem.write_to_path(str(path))
    return Settings({"ca_bundle": str(path)})


def opened(test_idp, settings):
    return lambda: idp.opened(test_idp.url, settings)


def discovered(test_idp, settings):
    with idp.opened(test_idp.url, settings) as s:
        return idp.discover(s, test_idp.url), idp.get_json(s, test_idp.url + "/jwks")


# -- the ID token -------------------------------------------------------------------------------------------------


def test_a_good_id_token_passes_and_each_fault_is_named(provider_idp, settings):
    provider, jwks = discovered(provider_idp, settings)
    good = provider_idp.id_token(CAROL, CLIENT_ID, "n0nce")
    assert idtoken.check(good, jwks, provider.issuer, CLIENT_ID, "n0nce")["sub"] == CAROL.subject
    with pytest.raises(IdPError, match="nonce is not the one this login sent"):
        idtoken.check(good, jwks, provider.issuer, CLIENT_ID, "another")
    with pytest.raises(IdPError, match=r"not for the client other \(aud\)"):
        idtoken.check(good, jwks, provider.issuer, "other")
    with pytest.raises(IdPError, match=r"not from https://elsewhere.example \(iss\)"):
        idtoken.check(good, jwks, "https://elsewhere.example", CLIENT_ID)
    provider_idp.no_typ = True
    with pytest.raises(IdPError, match="has no typ header: Quay refuses it"):
        idtoken.check(provider_idp.id_token(CAROL, CLIENT_ID, ""), jwks, provider.issuer, CLIENT_ID)
    provider_idp.no_typ = False
    expired = provider_idp.id_token(CAROL, CLIENT_ID, "", lifetime=-31 - 5)
    with pytest.raises(IdPError, match="sent an expired ID token"):
        idtoken.check(expired, jwks, provider.issuer, CLIENT_ID)
    within_leeway = provider_idp.id_token(CAROL, CLIENT_ID, "", lifetime=-20)  # Quay's 30 s, ours too
    assert idtoken.check(within_leeway, jwks, provider.issuer, CLIENT_ID)
    provider_idp.rotate()  # the key that signed `good` is gone from the JWKS
    _, fresh = discovered(provider_idp, settings)
    with pytest.raises(IdPError, match=r"key \(key-1\) is not in the identity provider's JWKS"):
        idtoken.check(good, fresh, provider.issuer, CLIENT_ID)


def test_discovery_needs_a_document_and_an_https_issuer(provider_idp, settings):
    with idp.opened(provider_idp.url, settings) as s, pytest.raises(IdPError, match="answered HTTP 404: check"):
        idp.discover(s, provider_idp.url + "/nothing")
    with pytest.raises(InputError, match="not an https issuer URL"):
        idp.check_issuer("http://sso.example.com")


# -- the device grant ---------------------------------------------------------------------------------------------


def test_device_polling_follows_interval_and_slow_down(provider_idp, settings):
    provider, _ = discovered(provider_idp, settings)
    provider_idp.slow_down = 2
    said, slept = [], []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 4:  # the person approves after a few polls
            code = said[0].split()[-1]
            provider_idp.approve_device(code, "carol")

    answer = flows.device(
        opened(provider_idp, settings), provider, CLIENT_ID, "openid offline_access", said.append, sleep
    )
    assert answer["refresh_token"] and answer["id_token"]
    assert slept == [1, 6, 11, 11]  # the IdP's interval, 5 s more at each slow_down (RFC 8628 3.5)
    polls = [e["error"] for e in provider_idp.token_log]
    assert polls == ["slow_down", "slow_down", "authorization_pending", None]


def test_device_access_denied_and_expiry(provider_idp, settings):
    provider, _ = discovered(provider_idp, settings)
    said = []

    def deny(seconds):
        provider_idp.approve_device(said[0].split()[-1], "carol", deny=True)

    with pytest.raises(IdPError, match=r"refused at the identity provider \(access_denied\)"):
        flows.device(opened(provider_idp, settings), provider, CLIENT_ID, "openid", said.append, deny)
    provider_idp.device_lifetime = 2  # expires before the second poll
    with pytest.raises(IdPError, match="the device code expired before it was approved"):
        flows.device(opened(provider_idp, settings), provider, CLIENT_ID, "openid", print, lambda s: None)


def test_the_browser_flow_times_out_and_refuses_a_wrong_state(provider_idp, settings):
    import threading
    import urllib.error
    import urllib.request

    provider, _ = discovered(provider_idp, settings)
    seen = []

    def browse(url):
        redirect = url.split("redirect_uri=")[1].split("&")[0]
        callback = urllib.parse.unquote(redirect) + "?code=x&state=forged"

        def visit():
            try:
                urllib.request.urlopen(callback, timeout=5)
            except urllib.error.HTTPError as exc:
                seen.append(exc.code)

        threading.Thread(target=visit).start()
        return True

    started = time.monotonic()
    with pytest.raises(IdPError, match=r"no sign-in came back within 0.8 s"):
        flows.authorization_code(opened(provider_idp, settings), provider, CLIENT_ID, "openid", 0, browse, print, 0.8)
    assert seen == [400] and time.monotonic() - started < 5


# -- the refresh token in the keyring -----------------------------------------------------------------------------


class DictKeyring:
    """The Keyring methods session.py uses, over a dict (keyring_backend.Keyring's own tests cover the backends)."""

    def __init__(self):
        self.entries = {}

    def backend(self):
        return self

    def get(self, service, username):
        return self.entries.get((service, username))

    def set(self, service, username, password):
        assert len(password.encode("utf-16-le")) <= 2560, "over Windows Credential Manager's limit"
        self.entries[(service, username)] = password

    def delete(self, service, username):
        return self.entries.pop((service, username), None) is not None


def test_a_long_refresh_token_spans_entries_and_a_new_one_replaces_every_part():
    keyring = DictKeyring()
    long_token = "R" * 2500
    session.write_refresh(keyring, "quay.example.com", long_token)
    assert len(keyring.entries) == 3
    assert session.read_refresh(keyring, "quay.example.com") == long_token
    session.write_refresh(keyring, "quay.example.com", "short")
    assert len(keyring.entries) == 1  # the old parts erased after the main entry named the new token
    assert session.read_refresh(keyring, "quay.example.com") == "short"


def test_a_credential_stored_over_a_session_leaves_none_of_its_parts():
    keyring = DictKeyring()
    session.write_refresh(keyring, "quay.example.com", "R" * 2500)
    session.replace(keyring, "quay.example.com", lambda: keyring.set("quay-cred-helper", "quay.example.com", "{}"))
    assert list(keyring.entries) == [("quay-cred-helper", "quay.example.com")]
    assert keyring.entries[("quay-cred-helper", "quay.example.com")] == "{}"


def test_a_missing_or_incomplete_refresh_token_is_an_expired_session():
    keyring = DictKeyring()
    with pytest.raises(SessionExpired, match="SSO session expired"):
        session.read_refresh(keyring, "quay.example.com")
    session.write_refresh(keyring, "quay.example.com", "x" * 1500)
    part = next(name for (_, name) in keyring.entries if "#sso." in name)
    keyring.delete("quay-cred-helper", part)
    with pytest.raises(SessionExpired, match=r"incomplete\): run quay-cred-helper login quay.example.com --sso"):
        session.read_refresh(keyring, "quay.example.com")
    keyring.set("quay-cred-helper", "quay.example.com", "not ours")
    with pytest.raises(KeyringError, match="not ours or is damaged"):
        session.read_refresh(keyring, "quay.example.com")


# -- Quay's refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "fix"),
    [
        (
            "Audience doesn't match",
            "Quay 3.18 and later check the ID token's aud: ask the Quay admin to add OIDC_AUDIENCES: [quay-cli]",
        ),
        ("Issuer https://sso.example not configured", "Quay has no OIDC login for https://sso.example"),
        (
            "Client 'quay-cli' is not in the allowed clients list",
            "ask the Quay admin to add quay-cli to OIDC_ALLOWED_CLIENTS",
        ),
        ("something new", "check sso_issuer and sso_client_id"),
    ],
)
def test_each_quay_refusal_gets_its_fix(message, fix):
    error = quay.refusal("quay.example.com", message, CLIENT_ID, "https://sso.example")
    assert error.problem == f"quay.example.com refused the SSO login: {message}"
    assert error.fix.startswith(fix)


@pytest.mark.slow  # waits out the listener's 3 s read timeout
def test_a_silent_connection_does_not_hold_the_listener(provider_idp, settings):
    """Browsers preconnect: a connection that sends nothing times out, and the real visit still gets through."""
    import socket
    import ssl
    import threading
    import urllib.parse
    import urllib.request

    provider, _ = discovered(provider_idp, settings)
    silent = []

    def browse(url):
        port = int(urllib.parse.unquote(url.split("redirect_uri=")[1].split("&")[0]).split(":")[2].split("/")[0])
        silent.append(socket.create_connection(("127.0.0.1", port)))  # first, and never a byte

        def visit():
            # The login form posted as a person would; the IdP's 302 to the listener followed.
            form = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query), username="carol", password="pw")
            context = ssl.create_default_context(cafile=settings.ca_bundle)
            opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
            opener.open(provider_idp.url + "/login", urllib.parse.urlencode(form).encode(), timeout=20).read()

        threading.Thread(target=visit, daemon=True).start()
        return True

    try:
        answer, nonce = flows.authorization_code(
            opened(provider_idp, settings), provider, CLIENT_ID, "openid offline_access", 0, browse, print, 30
        )
    finally:
        for sock in silent:
            sock.close()
    assert idtoken.check(answer["id_token"], discovered(provider_idp, settings)[1], provider.issuer, CLIENT_ID, nonce)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_quays_app_token_dates_are_read_as_utc_in_any_time_zone(monkeypatch, zone):
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        when = 1_765_000_000
        # Quay's format_date: formatdate of a UTC time, written with "-0000"; a GMT form reads the same.
        assert apptoken._unix(email.utils.formatdate(when)) == str(when)
        assert apptoken._unix(email.utils.formatdate(when, usegmt=True)) == str(when)
        assert apptoken._unix(None) == "" and apptoken._unix("not a date") == ""
    finally:
        monkeypatch.undo()
        time.tzset()
    # Due in the last tenth of its life, as Quay's ?expiring=true; never for a token without expiry.
    record = {"created": "1000", "expires": "2000"}
    assert app_token_expiry(record, 1899) == (2000, False) and app_token_expiry(record, 1900) == (2000, True)
    assert app_token_expiry({"created": "1000"}, 10**10) == (0, False)
